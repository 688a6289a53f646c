"""The consumer's lag per partition, the same through either backend (the scorer's
``statecast_consumer_lag_events`` gauge): the records between the position and the end of
each assigned partition, following appends made after the consumer started."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import Consumer, open_consumer, open_producer

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_config(backend_config: KafkaConfig) -> KafkaConfig:
    return backend_config


def _append(config: KafkaConfig, topic: str, counts: dict[int, int]) -> None:
    producer = open_producer(config)
    for part, n in counts.items():
        for i in range(n):
            producer.send(topic, f"k{i}".encode(), b"v", partition=part)
    producer.flush()
    producer.close()


def _poll_until(
    consumer: Consumer, seen: dict[int, int], done: Callable[[], bool], batch: int
) -> None:
    deadline = time.monotonic() + 30.0
    while not done():
        assert time.monotonic() < deadline, f"timed out: seen {seen}, lag {consumer.lag()}"
        for rec in consumer.poll(200, batch):
            seen[rec.partition] += 1


def test_lag_is_the_records_between_position_and_end_and_follows_new_appends(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str], group_factory: Callable[[], str]
) -> None:
    topic = topic_factory("lag", partitions=2)
    _append(kafka_config, topic, {0: 100, 1: 40})
    consumer = open_consumer(kafka_config, [topic], group_factory())
    try:
        seen = {0: 0, 1: 0}

        def lag_is(end: dict[int, int]) -> bool:
            got = {tp.partition: n for tp, n in consumer.lag().items()}
            return got == {p: end[p] - seen[p] for p in end}

        # Both partitions read from, one of them only in part: which one is the client's
        # fetch order (kafka-python may hand out all of partition 0 first), but the poll
        # that lifts the second past 20 leaves it at most 26 (< 40) records in.
        _poll_until(consumer, seen, lambda: min(seen.values()) >= 20, batch=7)
        assert lag_is({0: 100, 1: 40})
        assert sum(consumer.lag().values()) > 0
        # Appends after the start show while the consumer goes on reading (it must still
        # be behind when they do: a lag measured against a stale end would read 100 - seen).
        _append(kafka_config, topic, {0: 50})
        _poll_until(consumer, seen, lambda: seen[0] < 150 and lag_is({0: 150, 1: 40}), batch=5)
        assert {tp.partition: n for tp, n in consumer.lag().items()}[0] > 0
    finally:
        consumer.close()
