"""Kafka I/O behind a narrow interface (see :mod:`.interface`).

``open_consumer``, ``open_producer`` and ``read_to_end`` pick the backend named by
``KafkaConfig.backend``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pipeline.config import KafkaConfig
from pipeline.kafka_io.interface import Consumer, Header, Producer, Record, TopicPartition
from pipeline.kafka_io.kafkapython import delete_topics, ensure_topic, partitions_for

__all__ = [
    "Consumer",
    "Header",
    "Producer",
    "Record",
    "delete_topics",
    "TopicPartition",
    "ensure_topic",
    "open_consumer",
    "open_producer",
    "partitions_for",
    "read_to_end",
]


def open_consumer(config: KafkaConfig, topics: list[str], group: str, **options: Any) -> Consumer:
    """A group consumer with manual commits on the configured backend."""
    if config.backend == "confluent-kafka":
        from pipeline.kafka_io.confluent import ConfluentConsumer

        return ConfluentConsumer(config, topics, group, **options)
    from pipeline.kafka_io.kafkapython import KafkaPythonConsumer

    return KafkaPythonConsumer(config, topics, group, **options)


def open_producer(config: KafkaConfig, **options: Any) -> Producer:
    """An acks=all, idempotent producer on the configured backend."""
    if config.backend == "confluent-kafka":
        from pipeline.kafka_io.confluent import ConfluentProducer

        return ConfluentProducer(config, **options)
    from pipeline.kafka_io.kafkapython import KafkaPythonProducer

    return KafkaPythonProducer(config, **options)


def read_to_end(
    config: KafkaConfig,
    topic: str,
    partitions: Iterable[int],
    *,
    read_committed: bool = False,
    max_message_bytes: int = 1 << 20,
    timeout_s: float = 120.0,
    start: Mapping[int, int] | None = None,
) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """``(partition, offset, key, value)`` of every record of the given partitions, from their
    start (or ``start[p]``) to their end as of the call, on the configured backend (no
    consumer group)."""
    if config.backend == "confluent-kafka":
        from pipeline.kafka_io.confluent import read_to_end as read
    else:
        from pipeline.kafka_io.kafkapython import read_to_end as read
    return read(
        config,
        topic,
        partitions,
        read_committed=read_committed,
        max_message_bytes=max_message_bytes,
        timeout_s=timeout_s,
        start=start,
    )
