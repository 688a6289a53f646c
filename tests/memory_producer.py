"""An in-memory :class:`~pipeline.kafka_io.Producer` for property tests of the per-record
path (decode → score → encode → changelog frame) that run thousands of examples a second.

A test seam, not a stand-in for Kafka: every test of the scorer's Kafka behaviour runs
against the real broker (tests/pipeline/scorer/).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pipeline.kafka_io import Header, TopicPartition

Sent = tuple[str, bytes | None, bytes | None, list[Header], int | None]


class MemoryProducer:
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[Header] | None = None,
        partition: int | None = None,
    ) -> None:
        self.sent.append((topic, key, value, list(headers or ()), partition))

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        partitions: Sequence[int] | None = None,
    ) -> None:
        assert len(keys) == len(values)
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            self.send(topic, k, v, None, partitions[i] if partitions is not None else None)

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s[0] == topic]

    def clear(self) -> None:
        self.sent.clear()

    def flush(self) -> None:
        pass

    def unacked(self) -> int | None:
        return 0

    def begin(self) -> None:
        pass

    def commit(self, offsets: dict[TopicPartition, int], group_metadata: object) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass
