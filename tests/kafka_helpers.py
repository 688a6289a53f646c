"""Helpers for integration tests: produce events, read a topic back, run a scorer."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import kafka as kafka_client
import orjson

from pipeline.commands.score import score_argv
from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.kafka_io import Record, open_producer
from pipeline.kafka_io.kafkapython import await_partitions
from pipeline.scorer import Scorer


def produce(config: KafkaConfig, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = open_producer(config)
    n = 0
    for key, value in items:
        producer.send(topic, key, value)
        n += 1
    producer.flush()
    producer.close()
    return n


def read_all(
    config: KafkaConfig,
    topic: str,
    expect: int | None = None,
    timeout_s: float = 30.0,
    isolation_level: str = "read_uncommitted",
) -> list[Record]:
    """Every record of ``topic`` from the beginning (until ``expect`` or the end/timeout)."""
    consumer = kafka_client.KafkaConsumer(
        bootstrap_servers=config.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    deadline = time.monotonic() + timeout_s
    # A topic the scorer has not created yet has no partitions: wait for it like for records.
    parts = await_partitions(consumer, topic, timeout_s)
    if not parts:
        consumer.close()
        return []
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out: list[Record] = []
    while time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=300, max_records=5000).values():
            out.extend(
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, r.headers)
                for r in recs
            )
        if expect is not None and len(out) >= expect:
            break
        if expect is None:
            ends = consumer.end_offsets(parts)
            if all(consumer.position(tp) >= ends[tp] for tp in parts):
                break
    consumer.close()
    return out


def read_scores(config: KafkaConfig, topic: str, expect: int) -> list[dict[str, Any]]:
    """The score records of ``topic`` as JSON documents, in the order read back."""
    return [orjson.loads(r.value or b"") for r in read_all(config, topic, expect=expect)]


def ts_per_stream(outputs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each stream's output event times, in the order they were read back."""
    out: dict[str, list[float]] = defaultdict(list)
    for o in outputs:
        out[o["stream_id"]].append(o["ts"])
    return out


class ScorerThread:
    """A real :class:`Scorer` on a background thread (stops at --until-idle or on stop())."""

    def __init__(self, config: ScorerConfig) -> None:
        self.scorer = Scorer(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.scorer.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> ScorerThread:
        self.thread.start()
        return self

    def join(self, timeout: float = 120.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "scorer did not stop"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.scorer.stop()
        self.join()


def ports_free(port: int) -> bool:
    """Both ``port`` and ``port + 1`` (a broker's client and controller ports) are free."""
    for p in (port, port + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def free_port_pair() -> int:
    """A port whose successor is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port < 65000 and ports_free(port):
            return port
    raise RuntimeError("no free pair of TCP ports for the test broker")


# -- one builder for the scorer set-up of the integration, durability and chaos tests ------

REPO = Path(__file__).resolve().parents[1]


def scorer_config(
    kafka: KafkaConfig,
    registry: Path,
    inp: str,
    group: str,
    *,
    out: str | None = None,
    model: str = "tiny",
    **overrides: object,
) -> ScorerConfig:
    """A scorer over ``inp`` writing ``out`` (default ``<inp>.scores``, DLQ ``<out>.dlq``),
    that exits after 4 s without input unless ``until_idle`` says otherwise."""
    out = out or inp + ".scores"
    return ScorerConfig(
        kafka=kafka,
        input_topic=inp,
        output_topic=out,
        dlq_topic=out + ".dlq",
        group=group,
        registry=registry,
        model=model,
        **{"until_idle": 4.0, **overrides},  # type: ignore[arg-type]
    )


def spawn_scorer(
    kafka: KafkaConfig,
    registry: Path,
    inp: str,
    out: str,
    group: str,
    *extra: str,
    model: str = "tiny",
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`statecast score` as its own process (so it can be killed, paused, restarted); its
    stderr goes to ``log`` if given, else to a pipe."""
    cmd = score_argv(
        kafka.bootstrap,
        inp,
        out,
        group,
        "--registry",
        str(registry),
        "--model",
        model,
        *extra,
        backend=kafka.backend,
    )
    if log is None:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=sink)


def wait_committed(
    kafka: KafkaConfig,
    group: str,
    topic: str,
    at_least: int | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Until ``group`` has committed ``at_least`` offsets of ``topic`` in total (None: up to
    the end of every partition)."""
    probe = kafka_client.KafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        deadline = time.monotonic() + timeout_s
        parts = await_partitions(probe, topic, timeout_s)
        # No partitions would make "every partition committed to its end" vacuously true.
        while parts and time.monotonic() < deadline:
            done = {tp: probe.committed(tp) or 0 for tp in parts}
            if at_least is None:
                ends = probe.end_offsets(parts)
                if all(done[tp] >= ends[tp] for tp in parts):
                    return
            elif sum(done.values()) >= at_least:
                return
            time.sleep(0.2)
    finally:
        probe.close(autocommit=False)
    raise AssertionError(f"group {group} did not commit {at_least or 'all'} offsets of {topic}")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Block until ``condition()`` holds: tests wait for events, never for a guessed time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def wait_records(kafka: KafkaConfig, topic: str, at_least: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(read_all(kafka, topic, timeout_s=2)) >= at_least:
            return
        time.sleep(0.3)
    raise AssertionError(f"{topic} never reached {at_least} records")
