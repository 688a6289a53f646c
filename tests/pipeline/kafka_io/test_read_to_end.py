"""Reading partitions to their end, the same through either backend (a restore does it):
every record from the start or from a given offset, and nothing at all for no partitions
or a start at the end (a restore whose local snapshots and deltas already hold it all)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import read_to_end
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_config(backend_config: KafkaConfig) -> KafkaConfig:
    return backend_config


def _read(config: KafkaConfig, topic: str, parts: list[int], **kw: object) -> list[bytes]:
    got = read_to_end(
        config, topic, parts, read_committed=False, max_message_bytes=1 << 20, timeout_s=30.0,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return [value for _, _, value in got if value is not None]


def test_reading_to_the_end_from_the_start_an_offset_or_nothing(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("read", partitions=1)
    produce(kafka_config, topic, [(b"k", f"v{i}".encode()) for i in range(5)])
    assert _read(kafka_config, topic, [0]) == [f"v{i}".encode() for i in range(5)]
    assert _read(kafka_config, topic, [0], start={0: 3}) == [b"v3", b"v4"]
    assert _read(kafka_config, topic, [0], start={0: 5}) == []
    assert _read(kafka_config, topic, []) == []
