"""The real broker round-trips keyed events in per-key order, through each backend."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import TopicPartition, open_consumer, open_producer

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_config(backend_config: KafkaConfig) -> KafkaConfig:
    """Every test here runs once per Kafka client backend."""
    return backend_config


def test_keyed_events_come_back_in_per_key_order(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str], group_factory: Callable[[], str]
) -> None:
    topic = topic_factory(partitions=4)
    rng = random.Random(7)
    keys = [f"sensor-{i}" for i in range(25)]
    sent: dict[str, list[int]] = defaultdict(list)
    producer = open_producer(kafka_config)
    batch: list[tuple[bytes, bytes]] = []
    for seq in range(1000):
        key = rng.choice(keys)
        sent[key].append(seq)
        if seq < 500:
            producer.send(topic, key.encode(), str(seq).encode())
        else:  # the second half through the batch call
            batch.append((key.encode(), str(seq).encode()))
    producer.send_many(topic, [k for k, _ in batch], [v for _, v in batch])
    producer.flush()
    producer.close()

    consumer = open_consumer(kafka_config, [topic], group_factory())
    got: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    total = 0
    for _ in range(200):
        for rec in consumer.poll(timeout_ms=500, max_records=500):
            assert rec.key is not None and rec.value is not None
            got[rec.key.decode()].append(int(rec.value))
            partitions_of_key[rec.key.decode()].add(rec.partition)
            total += 1
        if total >= 1000:
            break
    consumer.commit({TopicPartition(topic, p): 0 for p in range(4)})
    consumer.close()

    assert total == 1000
    assert dict(got) == dict(sent)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({p for ps in partitions_of_key.values() for p in ps}) > 1
