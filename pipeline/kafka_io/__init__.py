"""Kafka I/O behind a narrow interface (see :mod:`.interface`).

``open_consumer`` and ``open_producer`` pick the backend named by ``KafkaConfig.backend``.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import KafkaConfig
from pipeline.kafka_io.interface import Consumer, Header, Producer, Record, TopicPartition
from pipeline.kafka_io.kafkapython import ensure_topic, partitions_for

__all__ = [
    "Consumer",
    "Header",
    "Producer",
    "Record",
    "TopicPartition",
    "ensure_topic",
    "open_consumer",
    "open_producer",
    "partitions_for",
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
