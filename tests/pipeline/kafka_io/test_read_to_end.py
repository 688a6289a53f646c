"""Reading partitions to their end, the same through either backend (a restore does it):
every record from the start or from a given offset, and nothing at all for no partitions
or a start at the end (a restore whose local snapshots and deltas already hold it all); read
committed, not before a transaction open at the end has committed or aborted."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import open_producer, read_to_end
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_config(backend_config: KafkaConfig) -> KafkaConfig:
    return backend_config


def _read(config: KafkaConfig, topic: str, parts: list[int], **kw: object) -> list[bytes]:
    kw.setdefault("read_committed", False)
    got = read_to_end(
        config, topic, parts, max_message_bytes=1 << 20, timeout_s=30.0,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return [value for _, _, _, value in got if value is not None]


def test_reading_to_the_end_from_the_start_an_offset_or_nothing(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("read", partitions=1)
    produce(kafka_config, topic, [(b"k", f"v{i}".encode()) for i in range(5)])
    assert _read(kafka_config, topic, [0]) == [f"v{i}".encode() for i in range(5)]
    assert _read(kafka_config, topic, [0], start={0: 3}) == [b"v3", b"v4"]
    assert _read(kafka_config, topic, [0], start={0: 5}) == []
    assert _read(kafka_config, topic, []) == []
    # Each record comes with its offset (a standby's snapshot ends at one: pipeline.scorer.standby).
    got = read_to_end(
        kafka_config, topic, [0], read_committed=False, max_message_bytes=1 << 20, timeout_s=30.0,
        start={0: 2},
    )  # fmt: skip
    assert [(p, off, v) for p, off, _, v in got] == [(0, i, f"v{i}".encode()) for i in (2, 3, 4)]


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_a_read_committed_read_waits_for_a_transaction_still_open_at_its_end(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str], outcome: str
) -> None:
    """A restore reads the changelog read_committed; the group may already hold offsets of
    a transaction whose frames are not yet readable (open, or its markers not yet
    written). Stopping at the last stable offset would lose them."""
    topic = topic_factory("read-txn", partitions=1)
    producer = open_producer(kafka_config, transactional_id=f"txn-{topic}")
    try:
        producer.begin()
        for i in range(3):
            producer.send(topic, b"k", f"v{i}".encode(), partition=0)
        producer.commit({}, None)
        producer.begin()
        for i in range(3, 5):
            producer.send(topic, b"k", f"v{i}".encode(), partition=0)
        producer.flush()  # written, the transaction still open
        got: list[bytes] = []
        reader = threading.Thread(
            target=lambda: got.extend(_read(kafka_config, topic, [0], read_committed=True))
        )
        reader.start()
        reader.join(3.0)
        assert reader.is_alive(), f"stopped at the last stable offset with {got}"
        if outcome == "commit":
            producer.commit({}, None)
        else:
            producer.abort()
        reader.join(30.0)
        assert not reader.is_alive()
    finally:
        producer.close()
    expected = 5 if outcome == "commit" else 3
    assert got == [f"v{i}".encode() for i in range(expected)]
