"""What the broker does with a transactional offset commit from a member the group has
dropped: kafka-python (as librdkafka) sends a lost member's group metadata as generation
-1 and no member id, and the broker accepts such a TxnOffsetCommit in a group that has
other members (older clients send no generation; only a generation or member id given is
checked). So a member must not commit a transaction after losing its partitions: the
scorer aborts it instead (``Scorer._on_lost``). This test pins the broker's behaviour
the scorer relies on knowing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import TopicPartition
from pipeline.kafka_io.kafkapython import KafkaPythonConsumer, KafkaPythonProducer

pytestmark = pytest.mark.integration


def test_a_dropped_members_transactional_commit_is_not_fenced(
    kafka_config: KafkaConfig,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    unique_name: Callable[[str], str],
) -> None:
    topic = topic_factory("lost-commit", partitions=2)
    group = group_factory()
    dropped = KafkaPythonConsumer(kafka_config, [topic], group)
    other = KafkaPythonConsumer(kafka_config, [topic], group)
    producer = KafkaPythonProducer(kafka_config, transactional_id=unique_name("lost-commit"))
    try:
        deadline = time.monotonic() + 30.0
        while not (dropped.assignment() and other.assignment()):
            assert time.monotonic() < deadline, "the group never split the partitions"
            dropped.poll(100, 10)
            other.poll(100, 10)
        # What kafka-python does to a member the group dropped (session expired, or a
        # refused heartbeat or join): its generation is reset.
        dropped._consumer._coordinator.reset_generation()
        metadata = dropped.group_metadata()
        assert (metadata.generation_id, metadata.member_id) == (-1, "")  # type: ignore[attr-defined]
        tp = TopicPartition(topic, 0)
        producer.begin()
        producer.commit({tp: 42}, metadata)  # not refused
        deadline = time.monotonic() + 10.0
        while other.committed({tp})[tp] != 42:  # once the commit's markers are written
            assert time.monotonic() < deadline, other.committed({tp})
            time.sleep(0.2)
    finally:
        producer.close()
        dropped.close()
        other.close()
