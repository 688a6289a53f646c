"""``statecast demo`` (``make demo``): the whole pipeline on one machine, in about a minute.

1. start the managed Kafka broker (or reuse a running one);
2. make sure a model is promoted (the shipped default; trains a small one if missing);
   in a private copy of the registry, an earlier version (another network) serves first
   and the current one is promoted a third of the way through the feed, as a nightly
   refresh would: the scorer swaps live and judges the new version against the previous
   one running beside it on the same events (rollback on live evidence);
3. start ``statecast score`` as its own process, with metrics on ``--metrics-port``;
4. replay a realistic multi-sensor feed with injected anomalies at a steady rate;
5. show a live terminal view: events/s, lag, anomalies as they fire;
6. write a Markdown report with one PNG per sensor (signal, 90% forecast interval, anomaly
   score, flagged points, injected anomalies, the live swap) and the live evidence the
   new version was judged on, and say where it is;
7. stop what it started.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kafka as kp
import numpy as np
import orjson

from pipeline.commands.flags import add_model_flags, models_config
from pipeline.commands.replay import replay
from pipeline.commands.score import score_argv
from pipeline.config import KafkaConfig, LocalKafkaConfig, load
from pipeline.engine.registry import Registry
from pipeline.kafka_io.kafkapython import await_partitions, client_settings
from pipeline.localkafka import LocalBroker
from training.synthetic import SyntheticStream, generate

__all__ = ["DemoOptions", "add_parser", "run", "run_demo"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoOptions:
    registry: Path = Path("exported_models")
    model: str = "default"
    sensors: int = 12
    points: int = 600
    rate: float = 120.0
    metrics_port: int = 9108
    reports: Path = Path("reports")
    seed: int = 7
    # Live events the new and the previous version must both forecast before the
    # rollback judgement (0: no live swap; the promoted version serves throughout).
    swap_after: int = 1200


def _interval(doc: dict[str, object]) -> str:
    lo, hi = doc.get("expected_lo"), doc.get("expected_hi")
    if isinstance(lo, float) and isinstance(hi, float):
        return f"[{lo:.2f}, {hi:.2f}]"
    return "n/a"


def _ensure_model(opts: DemoOptions) -> str:
    reg = Registry(opts.registry)
    if reg.current(opts.model) is None:
        print(f"no promoted model {opts.model!r} in {opts.registry}: training a small one (~30 s)")
        from training.config import TrainConfig
        from training.synthetic import generate, write_csv
        from training.trainer import Trainer, TrainJob

        folder = Path(".statecast/demo-train")
        data = write_csv(generate(streams=12, length=2000, seed=1), folder)
        job = TrainJob(data=tuple(data), registry=opts.registry, model=opts.model, promote="always")
        Trainer(job, TrainConfig(max_epochs=10)).run()
    meta = reg.meta(opts.model)
    return meta.version


def _lifecycle_registry(opts: DemoOptions, run: str, version: str) -> tuple[Path, str | None]:
    """A private copy of the model's registry where the last version promoted before
    ``version`` with another network (ONNX) serves; returns (registry, that version)."""
    reg = Registry(opts.registry)
    ours = reg.meta(opts.model, version, verify=False).sha256
    earlier = [
        v
        for v in reg.history(opts.model)
        if v in reg.versions(opts.model) and reg.meta(opts.model, v, verify=False).sha256 != ours
    ]
    if not opts.swap_after or not earlier:
        return opts.registry, None
    private = Path(".statecast") / f"demo-{run}" / "registry"
    shutil.copytree(opts.registry / opts.model, private / opts.model)
    mine = Registry(private)
    mine.promote(opts.model, earlier[-1])
    return private, earlier[-1]


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_demo(opts: DemoOptions) -> Path:
    """Run the demo; returns the report path."""
    broker = LocalBroker(load(LocalKafkaConfig, {}))
    started_broker = not broker.status().running
    t0 = time.monotonic()
    status = broker.up()
    print(
        f"kafka: {status.bootstrap} ({'started' if started_broker else 'already running'} "
        f"in {time.monotonic() - t0:.1f}s)"
    )
    kafka = KafkaConfig(bootstrap=status.bootstrap)
    version = _ensure_model(opts)
    print(f"model: {opts.model}/{version}")
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    inp, out, dlq = f"demo-{run}.readings", f"demo-{run}.scores", f"demo-{run}.dlq"
    registry, first = _lifecycle_registry(opts, run, version)
    if first:
        print(
            f"lifecycle: {first} serves first; {version} is promoted a third of the way "
            f"through, then judged against it on {opts.swap_after} live events"
        )
    scorer_log = Path(".statecast") / f"demo-scorer-{run}.log"
    with open(scorer_log, "wb") as log:  # the child keeps its own descriptor
        scorer = subprocess.Popen(
            score_argv(
                status.bootstrap,
                inp,
                out,
                f"demo-{run}",
                "--registry",
                str(registry),
                "--model",
                opts.model,
                "--metrics-port",
                str(opts.metrics_port),
                "--max-poll-records",
                "500",
                "--rollback-after",
                str(opts.swap_after if first else 0),
                dlq_topic=dlq,
            ),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    feed = generate(
        streams=opts.sensors,
        length=opts.points,
        seed=opts.seed,
        step_s=60.0,
        start=datetime.now(UTC).replace(microsecond=0),
        prefix="machine",
        anomalies_per_stream=1,
        clean_fraction=0.35,
    )
    streams = [s.series() for s in feed]
    try:
        replayer = threading.Thread(
            target=replay,
            args=(kafka, inp, streams),
            kwargs={"rate": opts.rate, "progress": False},
            daemon=True,
        )
        total = opts.sensors * opts.points
        print(
            f"feed: {opts.sensors} sensors x {opts.points} points at {opts.rate:.0f} events/s "
            f"(~{total / opts.rate:.0f}s), anomalies injected: "
            + ", ".join(f"{s.name}:{s.anomalies[0].kind}" for s in feed if s.anomalies)
        )
        replayer.start()
        if first:
            promote = threading.Timer(
                total / opts.rate / 3, Registry(registry).promote, (opts.model, version)
            )
            promote.daemon = True
            promote.start()
        results = _live_view(kafka, out, total, opts.metrics_port, replayer)
    finally:
        scorer.send_signal(signal.SIGTERM)
        scorer.wait(60)
        if started_broker:
            broker.down()
    evidence = Registry(registry).meta(opts.model, version).raw.get("live_rollback") or {}
    report = _report(opts, run, feed, results, version, evidence if first else None)
    print(f"\nreport: {report}")
    print(
        "next: open the report; `make test` runs the suite; `statecast detect ../shared/data/nab-dev "
        "--output /tmp/nab` scores NAB; `docker compose up` gives the Grafana stack."
    )
    if started_broker:
        print("kafka: stopped (it was started by the demo)")
    return report


def _live_view(
    kafka: KafkaConfig, topic: str, total: int, metrics_port: int, replayer: threading.Thread
) -> dict[str, list[dict[str, Any]]]:
    consumer = kp.KafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **client_settings(kafka)
    )
    # The scorer creates its output topic as it starts: subscribed before that, kafka-python
    # logs an ERROR ("not found in cluster metadata") that reads like a failed demo.
    await_partitions(consumer, topic, 120.0)
    consumer.subscribe([topic])
    results: dict[str, list[dict[str, Any]]] = {}
    seen = 0
    last_print = time.monotonic()
    last_seen = 0
    idle_since = time.monotonic()
    flagged = 0
    while seen < total:
        got = consumer.poll(timeout_ms=250, max_records=5000)
        for recs in got.values():
            for r in recs:
                d = orjson.loads(r.value)
                results.setdefault(d["stream_id"], []).append(d)
                seen += 1
                if d["is_anomaly"]:
                    flagged += 1
                    print(
                        f"  ANOMALY {d['stream_id']:<12} ts={d['ts']} value={d['value']:.2f} "
                        f"forecast={d['forecast'][0]:.2f} score={d['anomaly_score']:.3f} "
                        f"reason={d.get('anomaly_reason')} expected={_interval(d)}"
                    )
        now = time.monotonic()
        if got:
            idle_since = now
        elif not replayer.is_alive() and now - idle_since > 20:
            break
        if now - last_print >= 2.0:
            lag = "?"
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}/metrics", timeout=2
                ) as resp:
                    lag = f"{_metric(resp.read().decode(), 'statecast_consumer_lag_events'):.0f}"
            except OSError:
                pass
            rate = (seen - last_seen) / (now - last_print)
            print(f"[{seen:>6}/{total}] {rate:7.0f} scored/s  lag {lag:>5}  anomalies {flagged}")
            last_print, last_seen = now, seen
    consumer.close()
    return results


def _report(
    opts: DemoOptions,
    run: str,
    feed: list[SyntheticStream],
    results: dict[str, list[dict[str, Any]]],
    version: str,
    evidence: dict[str, Any] | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = opts.reports / f"demo-{run}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Statecast demo {run}",
        "",
        f"Model `{opts.model}`, versions serving: "
        + ", ".join(
            f"`{v}` ({n} events)"
            for v, n in collections.Counter(
                d.get("model_version") for docs in results.values() for d in docs
            ).items()
        )
        + f"; {len(feed)} sensors.",
        "",
        "| sensor | injected anomaly | flagged inside (or within 10 steps after) | false alarms "
        "| reasons given |",
        "|---|---|---|---|---|",
    ]
    hits = 0
    false_alarms = 0
    for s in feed:
        docs = results.get(s.name, [])
        v = np.array([d["value"] for d in docs], float)
        fc = np.array([d["forecast"][0] for d in docs], float)
        score = np.array([d["anomaly_score"] for d in docs], float)
        flag = np.array([d["is_anomaly"] for d in docs], bool)
        t = np.arange(len(v))
        inside = np.zeros(len(v), bool)
        for a in s.anomalies:
            inside[a.start : a.end + 11] = True
        found = bool((flag & inside).any())
        fa = int((flag & ~inside).sum())
        hits += found
        false_alarms += fa
        kinds = ", ".join(f"{a.kind} @{a.start}" for a in s.anomalies) or "none"
        why = collections.Counter(str(d.get("anomaly_reason")) for d in docs if d["is_anomaly"])
        reasons = ", ".join(f"{r} {n}" for r, n in why.most_common()) or "-"
        lines.append(f"| {s.name} | {kinds} | {'yes' if found else 'no'} | {fa} | {reasons} |")
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True, height_ratios=[3, 1])
        pred = np.r_[np.nan, fc[:-1]]
        if docs and "forecast_lo" in docs[0]:
            # The model's own interval for each value, made one step before it.
            lo, hi = (
                np.array([np.nan if d[k][0] is None else d[k][0] for d in docs], float)
                for k in ("forecast_lo", "forecast_hi")
            )
            ax.fill_between(
                t,
                np.r_[np.nan, lo[:-1]],
                np.r_[np.nan, hi[:-1]],
                color="tab:blue",
                alpha=0.15,
                label="90% interval",
            )
        ax.plot(t, v, color="black", lw=0.9, label="signal")
        ax.plot(t, pred, color="tab:blue", lw=0.8, label="forecast (t+1)")
        ax.scatter(t[flag], v[flag], color="red", s=18, zorder=3, label="flagged")
        for a in s.anomalies:
            ax.axvspan(a.start, a.end, color="orange", alpha=0.25, label=f"injected {a.kind}")
        served = [d.get("model_version") for d in docs]
        for i in range(1, len(served)):
            if served[i] != served[i - 1]:
                for a_ in (ax, ax2):
                    a_.axvline(i, color="tab:green", ls=":", lw=1.2)
                ax.annotate(f"live swap to {served[i]}", (i, 1.0), xycoords=("data", "axes fraction"),
                            fontsize=7, color="tab:green", va="top")  # fmt: skip
        ax.set_title(s.name)
        ax.legend(loc="upper left", fontsize=7, ncol=3)
        ax2.plot(t, score, color="tab:red", lw=0.8)
        ax2.axhline(docs[0]["threshold"] if docs else 0.5, color="gray", ls="--", lw=0.8)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("score")
        fig.tight_layout()
        png = f"{s.name}.png"
        fig.savefig(folder / png, dpi=80)
        plt.close(fig)
    with_anomaly = sum(1 for s in feed if s.anomalies)
    lines[3:3] = [
        f"**Injected anomalies flagged: {hits}/{with_anomaly}; false alarms: {false_alarms} "
        f"over {sum(len(r) for r in results.values())} scored events.**",
        "",
    ]
    fed = sum(len(s.ts) for s in feed)
    lines += ["", *_lifecycle_lines(results, version, evidence, fed)]
    lines += ["", *[f"![{s.name}]({s.name}.png)" for s in feed]]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    return folder / "report.md"


def _nats(x: float) -> str:
    return "n/a (no scale head)" if x != x else f"{x:.3f}"


def _lifecycle_lines(
    results: dict[str, list[dict[str, Any]]],
    version: str,
    evidence: dict[str, Any] | None,
    fed: int,
) -> list[str]:
    """The report's account of the live swap: who served how many events, and why."""
    if evidence is None:
        return [f"All events scored by `{version}` (no live swap in this run)."]
    served = collections.Counter(d.get("model_version") for docs in results.values() for d in docs)
    distinct = len({(sid, d["ts"]) for sid, docs in results.items() for d in docs})
    if not evidence:
        return [f"`{version}` was promoted mid-feed; no judgement by the end of the feed."]
    prev, new = evidence["previous"], evidence["this"]
    verdict = "rolled back" if evidence["rolled_back"] else "kept"
    return [
        "## Live swap",
        "",
        f"`{prev['version']}` served first; `{version}` was promoted a third of the way "
        "through the feed (as a nightly refresh would), and the scorer swapped to it live, "
        "rebuilding every sensor's state in the new network from its recent inputs (the "
        "plots mark the swap with a dotted green line). The previous version kept running "
        f"beside it on the same events; after {new['events']} live events both forecast, "
        f"the new version was **{verdict}**: {evidence['reason']}.",
        "",
        "| version | live MAE (stream spreads) | mean NLL | alarms | events served |",
        "|---|---:|---:|---:|---:|",
        f"| `{prev['version']}` (previous, beside it) | {prev['mae']:.4f} | {_nats(prev['nll'])} | "
        f"{prev['alarms']} | {served.get(prev['version'], 0)} |",
        f"| `{version}` (new champion) | {new['mae']:.4f} | {_nats(new['nll'])} | {new['alarms']} | "
        f"{served.get(version, 0)} |",
        "",
        f"{sum(served.values())} outputs for {distinct} distinct events (sensor, time) of the "
        f"{fed} fed: nothing skipped or scored twice across the swap.",
    ]


# -- the subcommand ------------------------------------------------------------


def run(ns: argparse.Namespace) -> int:
    from pipeline.commands.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            registry=models_config(ns).registry,
            model=models_config(ns).model,
            metrics_port=ns.metrics_port,
            rate=ns.rate,
            sensors=ns.sensors,
            points=ns.points,
        )
    )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="end-to-end demo: broker, scorer, replayed feed, report")
    add_model_flags(p)
    p.add_argument("--metrics-port", dest="metrics_port", type=int, default=9108)
    p.add_argument("--rate", type=float, default=120.0, help="events per second")
    p.add_argument("--sensors", type=int, default=12)
    p.add_argument("--points", type=int, default=600)
    p.set_defaults(func=run)
