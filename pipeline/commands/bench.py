"""``statecast bench``: the scorer side by side with the obvious alternatives, in one run.

Systems, each in its own process (CPU time and peak RSS come from ``wait4``), all
reading the same pre-filled input topic with a fresh consumer group:

* ``statecast``   the real :class:`~pipeline.scorer.Scorer`, once per installed Kafka
  backend (kafka-python, confluent-kafka), with and without its changelog, and once
  over ``memory_streams`` streams: the RSS slope between the two is the cost of a stream;
* ``naive``       benchmarks/naive_consumer.py: per-event loop, torch at batch 1, dict state;
* ``passthrough`` consume → produce, flush and commit every second as the scorer does, with
  the scorer's client and settings, no decoding, no model: the I/O ceiling per backend;
* ``model-only``  the scorer's compute path (gather, batched ONNX step, scatter) at the
  batch sizes the scorer sees: the compute ceiling.

Then end-to-end latency of the scorer at a fixed offered load (50% of its measured
maximum): broker append time of each input to broker append time of its output
(both topics use LogAppendTime), joined through the input partition/offset that every
output carries.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.commands.bench_restore import RestoreScenario, measure_restores
from pipeline.commands.flags import add_kafka_flags, add_model_flags, kafka_for, models_config
from pipeline.commands.score import score_argv
from pipeline.config import BACKENDS, KafkaConfig, ScorerConfig
from pipeline.kafka_io import Producer, ensure_topic, open_producer
from pipeline.kafka_io.binary_events import encode_event_binary
from pipeline.kafka_io.codec import encode_event

__all__ = ["BenchOptions", "add_parser", "run", "run_bench"]

REPO = Path(__file__).resolve().parents[2]
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}
# The latency runs' start-up, left out of their steady-state percentile (steady_p99).
WARMUP_S = 3.0
_MODULES = {"kafka-python": "kafka", "confluent-kafka": "confluent_kafka"}
# Goals for the numbers, printed beside them: issue #8's, and for confluent-kafka the
# throughput, share of passthrough and tail of issue #18 ("Performance II").
TARGETS = {
    "kafka-python": {"speedup_vs_naive": 4.0, "fraction_of_passthrough": 0.7},
    "confluent-kafka": {
        "speedup_vs_naive": 20.0,
        "fraction_of_passthrough": 0.5,
        "events_per_s": 200_000.0,
        "p99_ms": 50.0,
    },
}
MEMORY_TARGET_BYTES_PER_STREAM = 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchOptions:
    kafka: KafkaConfig
    registry: Path = Path("exported_models")
    model: str = "default"
    events: int = 1_000_000
    streams: int = 10_000
    partitions: int = 4
    runs: int = 3
    naive_events: int = 20_000
    latency_seconds: float = 30.0
    backends: tuple[str, ...] = ()  # empty: every installed backend
    memory_streams: int = 100_000  # second statecast run: RSS per stream from the slope
    # Offered loads of the latency runs, as fractions of each backend's measured maximum.
    loads: tuple[float, ...] = (0.5,)
    # Restores of memory_streams streams after this many checkpoints, each touching 15%
    # of them (pipeline.commands.bench_restore); 0: not measured.
    restore_checkpoints: int = 30

    @classmethod
    def quick(cls, kafka: KafkaConfig, **kw: Any) -> BenchOptions:
        return cls(
            kafka=kafka,
            events=60_000,
            streams=2_000,
            runs=3,
            naive_events=4_000,
            latency_seconds=8.0,
            memory_streams=20_000,
            restore_checkpoints=10,
            **kw,
        )


def installed_backends() -> tuple[str, ...]:
    """The Kafka backends importable here (confluent-kafka is an optional extra)."""
    return tuple(b for b in BACKENDS if importlib.util.find_spec(_MODULES[b]) is not None)


def _fill(
    opts: BenchOptions, topic: str, events: int, streams: int | None = None, binary: bool = False
) -> None:
    """``events`` over ``streams`` (default: the options'), as JSON or (``binary``) in the
    binary event layout: the same events either way."""
    streams = streams or opts.streams
    rng = np.random.default_rng(0)
    base = rng.uniform(10, 100, streams)
    # The fastest installed client fills the topic: the fill is not measured.
    fill = dataclasses.replace(opts.kafka, backend=installed_backends()[-1])
    producer = open_producer(fill, linger_ms=20)
    for i in range(events):
        s = i % streams
        t = i // streams
        sid = f"sensor-{s:06d}"
        v = float(base[s] * (1 + 0.1 * np.sin(t / 7 + s)) + rng.normal())
        ts, v = 1_764_000_000 + 60 * t, round(v, 4)
        if binary:
            producer.send(topic, *encode_event_binary(sid, float(ts), [v]))
        else:
            producer.send(topic, sid.encode(), encode_event(sid, ts, v))
    producer.flush()
    producer.close()


def _run_worker(system: str, args: dict[str, Any]) -> dict[str, Any]:
    """One measured run in a child process; adds cpu_us_per_event and peak_rss_bytes."""
    return _finish_worker(system, _start_worker(system, args))


def _run_group(system: str, args: dict[str, Any], members: int) -> dict[str, Any]:
    """``members`` workers in one consumer group at once (scale-out on one machine): the
    events of all over the time from the first one's first batch to the last one's last.
    They join together (each waits, model loaded, for the others), so the group's first
    assignment already has them all."""
    with tempfile.TemporaryDirectory() as barrier:
        procs = [_start_worker(system, {**args, "barrier": barrier}) for _ in range(members)]
        deadline = time.monotonic() + 120.0
        while len(list(Path(barrier).glob("*.ready"))) < members:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                break  # a worker died or hangs: _finish_worker reports it
            time.sleep(0.05)
        (Path(barrier) / "go").touch()
        results = [_finish_worker(system, p) for p in procs]
    events = sum(int(r["events"]) for r in results)
    busy = [r for r in results if r.get("first") is not None]
    seconds = max(r["last"] for r in busy) - min(r["first"] for r in busy)
    return {
        "events": events,
        "seconds": seconds,
        "events_per_s": events / max(seconds, 1e-9),
        "cpu_us_per_event": sum(r["cpu_us_per_event"] * int(r["events"]) for r in results)
        / max(events, 1),
        "peak_rss_bytes": sum(r["peak_rss_bytes"] for r in results),
        "members": members,
    }


def _start_worker(system: str, args: dict[str, Any]) -> subprocess.Popen[bytes]:
    if system == "naive":
        cmd = [
            sys.executable,
            str(REPO / "benchmarks/naive_consumer.py"),
            args["bootstrap"],
            args["input"],
            args["output"],
            args["group"],
            str(args["events"]),
        ]
    else:
        cmd = [sys.executable, "-m", "pipeline.commands.bench", "worker", system, json.dumps(args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)


def _finish_worker(system: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    # Reading the pipes first: a worker blocked on a full pipe would never exit.
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{system} worker failed: {err.decode()[-1500:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    events = max(1, int(result["events"]))
    result["events_per_s"] = events / max(result["seconds"], 1e-9)
    result["cpu_us_per_event"] = (usage.ru_utime + usage.ru_stime) * 1e6 / events
    # The worker reports its own VmHWM: wait4's ru_maxrss would include the pages of
    # this (forked) parent before the exec.
    result["peak_rss_bytes"] = result.get("peak_rss_bytes") or usage.ru_maxrss * 1024
    return result


def _worker(system: str, args: dict[str, Any]) -> dict[str, Any]:
    backend = args.get("backend", "kafka-python")
    kafka = KafkaConfig(
        bootstrap=args["bootstrap"], backend=backend if backend in BACKENDS else "kafka-python"
    )
    if system == "statecast":
        from pipeline.scorer import Scorer, tune_gc

        cfg = ScorerConfig(
            kafka=kafka,
            input_topic=args["input"],
            output_topic=args["output"],
            dlq_topic=args["output"] + ".dlq",
            group=args["group"],
            registry=Path(args["registry"]),
            model=args["model"],
            until_idle=3.0,
            state_capacity=args["streams"],
            changelog=args.get("changelog", True),
            guarantee=args.get("guarantee", "at-least-once"),
            # Side-by-side runs of the loop's linger (benchmarks/linger.py).
            poll_linger_ms=int(args.get("poll_linger_ms", ScorerConfig.poll_linger_ms)),
            # ... and of the score records' format (benchmarks/output_format.py).
            output_format=args.get("output_format", ScorerConfig.output_format),
            # ... and of the batch size bound (benchmarks/poll_batch.py).
            max_poll_records=int(args.get("max_poll_records", ScorerConfig.max_poll_records)),
        )
        scorer = Scorer(cfg)
        tune_gc()
        if "barrier" in args:  # scale-out: join the group together with the others
            barrier = Path(args["barrier"])
            (barrier / f"{os.getpid()}.ready").touch()
            while not (barrier / "go").exists():
                time.sleep(0.01)
        scorer.run()
        seconds = (scorer.last_batch_at or 0) - (scorer.first_batch_at or 0)
        # Monotonic times are system-wide: a scale-out run compares its members' times.
        return {
            "events": scorer.processed,
            "seconds": seconds,
            "first": scorer.first_batch_at,
            "last": scorer.last_batch_at,
        }
    if system == "passthrough":
        from pipeline.kafka_io import TopicPartition, open_consumer

        consumer = open_consumer(kafka, [args["input"]], args["group"], max_poll_records=2000)
        producer = open_producer(kafka)
        n, started, idle = 0, None, time.monotonic()
        end = last_checkpoint = 0.0
        offsets: dict[TopicPartition, int] = {}
        while time.monotonic() - idle < 3.0:
            records = consumer.poll(200, 2000)
            if not records:
                continue
            started = started or time.monotonic()
            for r in records:
                producer.send(args["output"], r.key, r.value)
                offsets[TopicPartition(r.topic, r.partition)] = r.offset + 1
            n += len(records)
            idle = end = time.monotonic()
            # Checkpoints as the scorer's (every commit_interval_s = 1 s): flush, commit.
            if end - last_checkpoint >= ScorerConfig.commit_interval_s:
                producer.flush()
                consumer.commit(offsets)
                offsets, last_checkpoint = {}, time.monotonic()
        producer.flush()
        consumer.commit(offsets)
        consumer.close()
        producer.close()
        return {"events": n, "seconds": end - (started or end)}
    if system == "model-only":
        from pipeline.engine.registry import Registry

        meta = Registry(Path(args["registry"])).meta(args["model"])
        n, seconds = model_only_steps(meta, int(args["streams"]), int(args["batch"]), 2.0)
        return {"events": n, "seconds": seconds}
    raise ValueError(system)


def model_only_steps(
    meta: Any, streams: int, batch: int, seconds: float, seasonal: bool = True
) -> tuple[int, float]:
    """The scorer's compute path for ``batch`` of ``streams`` streams at a time (gather,
    covariates, one batched ONNX step with scoring, gain and intervals, the daily profile
    and its blend unless ``seasonal`` is false, scatter), for about ``seconds``; returns
    ``(events, seconds taken)``. The streams are as a long-running scorer's mostly are:
    their profiles older than two days, so that every channel that needs the day is in
    use (a young stream's step skips them)."""
    from pipeline.engine.covariates import covariates
    from pipeline.engine.inference import StepSession
    from pipeline.engine.interval import Band, IntervalParams
    from pipeline.engine.state import StateStore
    from pipeline.engine.stepper import advance

    session = StepSession(meta)
    # Intervals are part of the step's cost for a model with a scale head.
    band = None if meta.distribution is None else Band.of(meta.distribution, IntervalParams())
    store = StateStore.for_model(meta, capacity=streams, ring=0)
    slots_all = store.slots_for([f"s{i}" for i in range(streams)], now=0.0)
    rng = np.random.default_rng(0)
    ts = 1_764_000_000.0

    def step(sl: npt.NDArray[np.int64]) -> None:
        st = store.gather(sl)
        # The covariates are part of the step's cost for a model that has them.
        times = np.full(len(sl), ts)
        cov = covariates(times, times - 60.0, meta.covariates) if meta.covariates else None
        x = rng.normal(50, 5, (len(sl), 1))
        when = (times, times - 60.0) if seasonal else (None, None)
        advance(session, meta.normalisation, meta.anomaly, st, x, cov, band, *when)
        if band is not None:
            band.bounds(st.fc, st.fs, st.qlog)
        store.scatter(sl, st)

    # Every stream's first step starts its profile (in large batches whatever ``batch``
    # is: only the state matters here); then it is made three days old.
    chunk = max(batch, 1024)
    for start in range(0, streams, chunk):
        step(slots_all[start : start + chunk])
    store.st0[slots_all] -= 3 * 86_400.0
    ts += 60.0
    n, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        step(rng.choice(slots_all, size=batch, replace=False))
        n += batch
        ts += 60.0
    return n, time.monotonic() - started


def _measure_latency(
    opts: BenchOptions,
    rate: float,
    run: str,
    backend: str,
    tag: str = "",
    scorer_cpus: frozenset[int] | None = None,
) -> dict[str, float]:
    """One latency run at ``rate`` offered events/s; ``scorer_cpus``: the CPUs the scorer
    process (and every thread it starts) may run on (None: any)."""
    inp, out = f"bench-{run}-{backend}{tag}-lat-in", f"bench-{run}-{backend}{tag}-lat-out"
    ensure_topic(opts.kafka, inp, opts.partitions, LOG_APPEND)
    ensure_topic(opts.kafka, out, opts.partitions, LOG_APPEND)
    # The load is encoded before it starts and sent in 1-ms ticks: a generator that
    # encodes and sleeps per event took half a core at 10k events/s, on the cores the
    # scorer and the broker share, and its cost showed up as the scorer's latency. It is
    # encoded before the scorer starts: encoding a million events takes ~5 s, and a
    # scorer that had joined and seen nothing for its --until-idle left before the load.
    keys, values = paced_load(opts.streams, int(rate * opts.latency_seconds))
    # The scorer runs in its own process: a load generator in the same interpreter would
    # compete with it for the GIL and inflate the latency it measures. Its log is kept
    # for the error a failed run raises.
    with tempfile.TemporaryFile() as log:
        spawned = time.monotonic()
        scorer = subprocess.Popen(
            score_argv(
                opts.kafka.bootstrap,
                inp,
                out,
                f"bench-{run}-{backend}{tag}-lat",
                "--registry",
                str(opts.registry),
                "--model",
                opts.model,
                "--until-idle",
                "5",
                backend=backend,
            ),
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=REPO,
            # Before exec, so that the threads it starts (onnxruntime's, librdkafka's) inherit it.
            preexec_fn=None
            if scorer_cpus is None
            else lambda: os.sched_setaffinity(0, scorer_cpus),
        )
        time.sleep(max(0.0, 4.0 - (time.monotonic() - spawned)))  # start up and join first
        producer = open_producer(dataclasses.replace(opts.kafka, backend=backend), linger_ms=1)
        # The first event alone: until the producer has the topic's metadata it holds what it
        # is given, then appends it at once, a burst the scorer did not cause.
        producer.send(inp, keys[0], values[0])
        producer.flush()
        cpu_before = _cpu_ticks(scorer.pid)
        send_paced(producer, inp, keys, values, rate, sent=1)
        cpu = _cpu_share(cpu_before, _cpu_ticks(scorer.pid))
        producer.flush()
        producer.close()
        code = scorer.wait(180)
        log.seek(0)
        scorer_log = log.read().decode(errors="replace")

    appended = {
        (r.partition, r.offset): r.timestamp for r in read_records(opts.kafka, inp, opts.partitions)
    }
    lat, t_ins = [], []
    for r in read_records(opts.kafka, out, opts.partitions):
        d = json.loads(r.value)
        t_in = appended.get((d["partition"], d["offset"]))
        if t_in is not None:
            lat.append(r.timestamp - t_in)
            t_ins.append(t_in)
    if not lat:
        raise RuntimeError(
            f"no scored outputs in {out}: the latency run failed (the scorer exited with "
            f"{code}; the end of its log:)\n{scorer_log[-3000:]}"
        )
    arr, t = np.asarray(lat, float), np.asarray(t_ins, float)
    # A pause in the input's appends (the load generator's producer or the broker
    # descheduled on a saturated machine) arrives as a burst: the tail it makes is the
    # machine's, not the scorer's.
    appends = np.sort(np.asarray(list(appended.values()), float))
    gap = float(np.diff(appends).max()) if len(appends) > 1 else float("nan")
    # Also without the first seconds, where a fresh process's first batches (ONNX and
    # allocator warm-up, the producer's first metadata request) set the tail.
    steady = arr[t >= t.min() + 1000.0 * WARMUP_S]
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "p999": float(np.percentile(arr, 99.9)),
        "steady_p99": float(np.percentile(steady, 99)) if len(steady) else float("nan"),
        "count": len(arr),
        "offered_events_per_s": rate,
        "largest_input_gap_ms": gap,
        **cpu,
    }


def paced_load(streams: int, total: int) -> tuple[list[bytes], list[bytes]]:
    """A latency run's events, encoded before it starts: keys and JSON values of
    ``total`` events over ``streams`` streams, a minute apart per stream."""
    rng = np.random.default_rng(1)
    keys, values = [], []
    for i, v in enumerate(rng.normal(50, 5, total).tolist()):
        sid = f"sensor-{i % streams:06d}"
        keys.append(sid.encode())
        values.append(encode_event(sid, 1_764_000_000 + 60 * (i // streams), v))
    return keys, values


def send_paced(
    producer: Producer,
    topic: str,
    keys: list[bytes],
    values: list[bytes],
    rate: float,
    sent: int = 0,
) -> None:
    """Sends the events from ``sent`` on at ``rate`` a second from now, in 1-ms ticks."""
    started, total = time.monotonic(), len(keys)
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        for i in range(sent, due):
            producer.send(topic, keys[i], values[i])
        sent = due
        time.sleep(0.001)


def read_records(kafka: KafkaConfig, topic: str, partitions: int) -> list[Any]:
    """Every record of ``topic`` (kafka-python's records: offsets and timestamps)."""
    import kafka as kp

    from pipeline.kafka_io.kafkapython import client_settings

    # kafka-python warns of each I/O task over 100 ms ("blocking the event loop"): decoding
    # a large fetch here on a busy machine, with no other poller to starve. Quiet while
    # reading, so that a bench's output shows its own warnings, not these.
    selector_log = logging.getLogger("kafka.net.selector")
    level = selector_log.level
    selector_log.setLevel(logging.ERROR)
    try:
        consumer = kp.KafkaConsumer(enable_auto_commit=False, **client_settings(kafka))
        parts = [kp.TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        recs: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=500, max_records=10000).values():
                recs.extend(batch)
        consumer.close()
    finally:
        selector_log.setLevel(level)
    return recs


def _cpu_ticks(pid: int) -> tuple[float, float, float] | None:
    """(machine busy, machine total, process ``pid``) CPU ticks so far; None without
    /proc (not Linux)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        own = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = [float(v) for v in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks), float(own[11]) + float(own[12])  # utime, stime


def _cpu_share(
    before: tuple[float, float, float] | None, after: tuple[float, float, float] | None
) -> dict[str, float]:
    """``machine_busy``: the share of all cores busy between the two readings;
    ``scorer_cores``: the cores the scorer process used (its threads together)."""
    if before is None or after is None or after[1] <= before[1]:
        return {}
    cores = os.cpu_count() or 1
    total = after[1] - before[1]
    return {
        "machine_busy": (after[0] - before[0]) / total,
        "scorer_cores": (after[2] - before[2]) / total * cores,
    }


def run_bench(opts: BenchOptions, progress: bool = True) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    backends = opts.backends or installed_backends()
    inp = f"bench-{run}-in"
    naive_in = f"bench-{run}-naive-in"
    wide_in = f"bench-{run}-wide-in"
    binary_in = f"bench-{run}-binary-in"
    say = print if progress else (lambda *a, **k: None)
    for topic in (inp, naive_in, wide_in, binary_in):
        ensure_topic(opts.kafka, topic, opts.partitions)
    t0 = time.monotonic()
    _fill(opts, inp, opts.events)
    _fill(opts, naive_in, opts.naive_events)
    _fill(opts, wide_in, opts.events, streams=opts.memory_streams)
    _fill(opts, binary_in, opts.events, binary=True)  # the same events as `inp`
    say(f"pre-filled {opts.events} events ({opts.streams} streams) in {time.monotonic() - t0:.1f}s")
    base = {
        "bootstrap": opts.kafka.bootstrap,
        "registry": str(opts.registry),
        "model": opts.model,
        "streams": opts.streams,
    }
    runs: list[dict[str, Any]] = []

    def measure(
        system: str, topic: str, events: int, repeats: int, backend: str, **extra: Any
    ) -> dict[str, Any]:
        results = []
        for i in range(repeats):
            tag = "-".join([system, backend, *(str(v) for v in extra.values()), str(i)])
            args = {
                **base,
                **extra,
                "backend": backend,
                "input": topic,
                "output": f"bench-{run}-{tag}-out",
                "group": f"bench-{run}-{tag}",
                "events": events,
            }
            r = _run_worker(system, args)
            say(
                f"  {system:<12} {backend:<15} run {i + 1}: {r['events_per_s']:>9.0f} events/s "
                f"{r['cpu_us_per_event']:6.1f} CPU us/event  RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB"
            )
            results.append(r)
        med = sorted(results, key=lambda r: r["events_per_s"])[len(results) // 2]
        return {
            "system": system,
            "backend": backend,
            "events_per_s": statistics.median(r["events_per_s"] for r in results),
            "cpu_us_per_event": med["cpu_us_per_event"],
            "peak_rss_bytes": med["peak_rss_bytes"],
            "streams": extra.get("streams", opts.streams),
            "events": med["events"],
            "runs": len(results),
            **{k: v for k, v in extra.items() if k != "streams"},
        }

    say("measuring (each run in its own process):")
    scorers: dict[str, dict[str, Any]] = {}
    passthrough: dict[str, dict[str, Any]] = {}
    binaries: dict[str, dict[str, Any]] = {}
    for backend in backends:
        scorers[backend] = measure("statecast", inp, opts.events, opts.runs, backend)
        runs.append(scorers[backend])
        no_log = measure("statecast", inp, opts.events, opts.runs, backend, changelog=False)
        no_log["variant"] = "no-changelog"
        runs.append(no_log)
        # The cost of exactly-once: transactions of a checkpoint's outputs, frames and offsets.
        eos = measure("statecast", inp, opts.events, opts.runs, backend, guarantee="exactly-once")
        eos["variant"] = "exactly-once"
        runs.append(eos)
        # The same events and scores in the binary layouts (pipeline.kafka_io.binary_events,
        # binary_scores): the scorer's fastest wire formats.
        binary = measure(
            "statecast", binary_in, opts.events, opts.runs, backend, output_format="binary"
        )
        binary["variant"] = "binary"
        runs.append(binary)
        binaries[backend] = binary
        passthrough[backend] = measure("passthrough", inp, opts.events, opts.runs, backend)
        runs.append(passthrough[backend])
    naive = measure("naive", naive_in, opts.naive_events, 1, "kafka-python")
    runs.append(naive)
    for batch in (1, 256, 2000):
        r = measure("model-only", inp, 0, 1, "onnxruntime", batch=batch)
        runs.append(r)
    # Memory: the same scorer over many more streams; the RSS slope is the cost of a stream.
    fastest = backends[-1]
    wide = measure("statecast", wide_in, opts.events, 1, fastest, streams=opts.memory_streams)
    wide["variant"] = "many-streams"
    runs.append(wide)
    # Scale-out: two scorers in one group on this machine against the one above.
    pair = _run_group(
        "statecast",
        {
            **base,
            "backend": fastest,
            "input": inp,
            "output": f"bench-{run}-pair-out",
            "group": f"bench-{run}-pair",
            "events": opts.events,
        },
        members=2,
    )
    say(f"  statecast x2  {fastest:<15}       : {pair['events_per_s']:>9.0f} events/s (one group)")
    runs.append(
        {
            "system": "statecast",
            "backend": fastest,
            "variant": "two-members",
            "streams": opts.streams,
            "runs": 1,
            **{k: pair[k] for k in ("events_per_s", "cpu_us_per_event", "peak_rss_bytes")},
            "events": pair["events"],
        }
    )
    per_stream = (wide["peak_rss_bytes"] - scorers[fastest]["peak_rss_bytes"]) / max(
        1, opts.memory_streams - opts.streams
    )
    summary: dict[str, Any] = {
        "rss_bytes_per_stream": per_stream,
        "rss_per_stream_bytes": per_stream,
        "by_backend": {},
    }
    latency: list[dict[str, Any]] = []
    for backend in backends:
        sc = scorers[backend]
        for fraction in sorted(opts.loads):
            rate = fraction * sc["events_per_s"]
            say(
                f"latency with {backend} at {fraction:.0%} of max ({rate:.0f} events/s "
                f"for {opts.latency_seconds:.0f}s)..."
            )
            entry: dict[str, Any] = {
                "backend": backend,
                "load_fraction": fraction,
                "events_per_s": rate,
            }
            try:
                ms = _measure_latency(opts, rate, run, backend, f"-{fraction:g}")
            except RuntimeError as exc:
                # One failed run is reported (and fails the command), not the whole
                # bench's half hour of results.
                say(f"  failed: {exc}")
                entry["error"] = str(exc)
                ms = {k: float("nan") for k in ("p50", "p99", "p999")}
            latency.append({**entry, **ms})
            if fraction == 0.5 or "latency_ms" not in sc:
                sc["latency_ms"] = ms
        summary["by_backend"][backend] = {
            "events_per_s": sc["events_per_s"],
            "speedup_vs_naive": sc["events_per_s"] / naive["events_per_s"],
            "fraction_of_passthrough": sc["events_per_s"] / passthrough[backend]["events_per_s"],
            "p99_ms": sc["latency_ms"]["p99"],
            "binary_events_per_s": binaries[backend]["events_per_s"],
            "binary_fraction_of_passthrough": binaries[backend]["events_per_s"]
            / passthrough[backend]["events_per_s"],
        }
    restore: list[dict[str, Any]] = []
    if opts.restore_checkpoints:
        say(
            f"restores of {opts.memory_streams} streams (warm: local snapshot and delta; "
            "warm-no-delta: the snapshot alone; cold: changelog; standby: another member's "
            "standby snapshots)..."
        )
        restore = measure_restores(
            dataclasses.replace(opts.kafka, backend=fastest),
            opts.registry,
            opts.model,
            RestoreScenario(
                streams=opts.memory_streams,
                partitions=opts.partitions,
                touched=max(1, opts.memory_streams * 15 // 100),
                checkpoints=opts.restore_checkpoints,
                # A snapshot before the kill stop's last few checkpoints (its tail).
                snapshot_interval=max(1, min(10, opts.restore_checkpoints // 2)),
            ),
        )
    return {
        "runs": runs,
        "latency": latency,
        "restore": restore,
        "summary": summary,
        "targets": {"by_backend": TARGETS, "rss_bytes_per_stream": MEMORY_TARGET_BYTES_PER_STREAM},
        "options": {k: str(v) for k, v in dataclasses.asdict(opts).items()},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{'system':<28} {'backend':<15} {'streams':>8} {'events/s':>10} {'CPU us/ev':>10} "
        f"{'peak RSS MiB':>13} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8}"
    )
    for r in report["runs"]:
        lat = r.get("latency_ms", {})
        name = r["system"] + (f"[B={r['batch']}]" if "batch" in r else "")
        name += f" ({r['variant']})" if r.get("variant") else ""
        print(
            f"{name:<28} {r['backend']:<15} {r['streams']:>8} {r['events_per_s']:>10.0f} "
            f"{r['cpu_us_per_event']:>10.1f} {r['peak_rss_bytes'] / 2**20:>13.0f} "
            f"{lat.get('p50', float('nan')):>8.1f} {lat.get('p99', float('nan')):>8.1f} "
            f"{lat.get('p999', float('nan')):>8.1f}"
        )
    if report.get("latency"):
        print(
            f"\n{'latency vs offered load':<28} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'p999 ms':>8} {f'p99 after {WARMUP_S:.0f} s':>14} {'machine busy':>12} "
            f"{'scorer cores':>12} {'input gap ms':>12}"
        )
        nan = float("nan")
        for e in report["latency"]:
            name = f"{e['backend']} at {e['load_fraction']:.0%}"
            if "error" in e:
                print(f"{name:<28} {e['events_per_s']:>10.0f}   failed: {e['error'][:60]}")
                continue
            print(
                f"{name:<28} {e['events_per_s']:>10.0f} {e['p50']:>8.1f} {e['p99']:>8.1f} "
                f"{e['p999']:>8.1f} {e.get('steady_p99', nan):>14.1f} "
                f"{e.get('machine_busy', nan):>12.0%} {e.get('scorer_cores', nan):>12.2f} "
                f"{e.get('largest_input_gap_ms', nan):>12.0f}"
            )
    if report.get("restore"):
        head = f"{'restore':<36} {'streams':>8} {'changelog read':>15} {'delta read':>11}"
        print(f"\n{head} {'seconds':>8}")
        for e in report["restore"]:
            name = f"{e['mode']} after a {e['stop']} stop"
            print(
                f"{name:<36} {e['streams']:>8} {e['changelog_records']:>15} "
                f"{e.get('local_records', 0):>11} {e['seconds']:>8.2f}"
            )
    s = report["summary"]
    print()
    for backend, got in s["by_backend"].items():
        want = TARGETS.get(backend, {})
        parts = [
            f"{got['speedup_vs_naive']:.1f}x naive (target >= {want.get('speedup_vs_naive', 0):.0f}x)",
            f"{100 * got['fraction_of_passthrough']:.0f}% of passthrough "
            f"(target >= {100 * want.get('fraction_of_passthrough', 0):.0f}%)",
        ]
        if "events_per_s" in want:
            parts.append(
                f"{got['events_per_s']:.0f} events/s (target >= {want['events_per_s']:.0f})"
            )
        if "p99_ms" in want:
            parts.append(f"p99 {got['p99_ms']:.0f} ms (target <= {want['p99_ms']:.0f})")
        print(f"statecast {backend}: " + "; ".join(parts))
        if "binary_events_per_s" in got:
            print(
                f"statecast {backend}, binary events and score records: "
                f"{got['binary_events_per_s']:.0f} events/s, "
                f"{100 * got['binary_fraction_of_passthrough']:.0f}% of passthrough"
            )
    print(
        f"scorer RSS per stream beyond the base: {s['rss_bytes_per_stream']:.0f} bytes "
        f"(target <= {MEMORY_TARGET_BYTES_PER_STREAM})"
    )


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), reset by exec unlike ru_maxrss."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "worker":
    print(
        json.dumps(
            {**_worker(sys.argv[2], json.loads(sys.argv[3])), "peak_rss_bytes": peak_rss_bytes()}
        )
    )


# -- the subcommand ------------------------------------------------------------


def run(ns: argparse.Namespace) -> int:
    with kafka_for(ns) as kafka:
        m = models_config(ns)
        opts = (
            BenchOptions.quick(kafka, registry=m.registry, model=m.model)
            if ns.quick
            else BenchOptions(kafka=kafka, registry=m.registry, model=m.model)
        )
        sizes = {"events": ns.events, "streams": ns.streams, "runs": ns.runs}
        opts = dataclasses.replace(opts, **{k: v for k, v in sizes.items() if v})
        if ns.backend:  # measure this backend only (default: every installed one)
            opts = dataclasses.replace(opts, backends=(ns.backend,))
        if ns.loads:
            loads = tuple(float(x) for x in ns.loads.split(","))
            if not all(0.0 < x < 1.0 for x in loads):
                raise SystemExit("statecast bench: --loads are fractions in (0, 1), e.g. 0.1,0.5")
            opts = dataclasses.replace(opts, loads=loads)
        report = run_bench(opts)
    print_table(report)
    if ns.json:
        Path(ns.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {ns.json}")
    failed = [e for e in report["latency"] if "error" in e]
    if failed:
        print(f"{len(failed)} latency run(s) failed (their errors above)", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="scorer vs naive vs passthrough vs model-only, side by side")
    p.add_argument("--quick", action="store_true", help="a small version (about a minute)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--events", type=int)
    p.add_argument("--streams", type=int)
    p.add_argument("--runs", type=int)
    p.add_argument(
        "--loads",
        help="offered loads of the latency runs, as fractions of the measured maximum "
        "(default 0.5; e.g. 0.1,0.25,0.5,0.75 for the latency-vs-load table)",
    )
    add_model_flags(p)
    add_kafka_flags(p)
    p.set_defaults(func=run)
