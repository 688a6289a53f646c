"""Helpers for integration tests: produce events, read a topic back, run a scorer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable

import kafka

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.kafka_io import Record, open_producer
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
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=config.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    parts = [
        kafka.TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
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
