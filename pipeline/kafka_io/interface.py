"""The narrow Kafka interface the scorer and trainer are written against.

A backend provides a :class:`Consumer` and a :class:`Producer`; nothing outside
``pipeline.kafka_io`` imports a Kafka client library, so a faster backend can be
added beside ``kafkapython`` without touching the scorer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

__all__ = [
    "COMMIT_DEADLINE_S",
    "TRANSACTION_TIMEOUT_MS",
    "Consumer",
    "Header",
    "Producer",
    "Record",
    "TopicPartition",
    "topic_partitions",
    "warn_open_transaction",
]

Header = tuple[str, bytes]

# Both backends' transactional producers: the transaction timeout, and how long a
# transaction's offsets and commit (or an abort) may take before the producer is abandoned
# (each call bounded by the transaction timeout, plus a margin). By then the coordinator
# has aborted a transaction it has not committed (it does so once the transaction timeout
# has passed, at its next abort scan), so waiting longer decides nothing.
TRANSACTION_TIMEOUT_MS = 15_000
COMMIT_DEADLINE_S = 2 * TRANSACTION_TIMEOUT_MS / 1000 + 5.0


class TopicPartition(NamedTuple):
    topic: str
    partition: int


def topic_partitions(partitions: Iterable[Any]) -> set[TopicPartition]:
    """Ours from any client's topic-partition objects (anything with topic and partition)."""
    return {TopicPartition(p.topic, p.partition) for p in partitions}


def warn_open_transaction(
    log: logging.Logger, topic: str, partition: int, high: int, stable: int
) -> None:
    """A read_committed read to the end (a backend's ``read_to_end``) found its last stable
    offset ``stable`` short of the high watermark ``high``, and waits until it gets there.

    The gap is a transaction still open there, or committed with its markers not yet
    written to this partition. A restore must wait for it: its consumer group may already
    hold the offsets that transaction committed (they become visible when the offsets
    partition's marker is written, which can be first), and a restore that stopped short
    would miss the frames of records it will not process again (seen in the chaos test
    across a broker restart). A transaction left open by a dead producer is aborted by its
    coordinator within the transaction timeout; the reader's own timeout bounds the wait."""
    log.warning(
        "%s[%d]: a transaction is still open up to offset %d (the last stable offset is %d): "
        "waiting for it to commit or abort before the restore goes on",
        topic,
        partition,
        high,
        stable,
    )


class Record(NamedTuple):
    """One consumed record; ``timestamp_ms`` is the producer or broker append time."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Sequence[Header]


# A consumer's rebalance callbacks: partitions assigned, revoked (handed over while this
# member is still in the group, so it may commit for them first) and lost (the group has
# dropped this member: nothing it commits for them may count; without an ``on_lost``
# callback, a backend calls ``on_revoke`` for them).
AssignmentCallback = Callable[[set[TopicPartition]], None]


class Consumer(Protocol):
    """A group member that commits offsets only when told to."""

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        """Records in offset order per partition; empty on timeout."""
        ...

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``next offset to read`` per partition; raises KafkaError on failure."""
        ...

    def assignment(self) -> set[TopicPartition]: ...

    def lag(self) -> dict[TopicPartition, int]:
        """Records between the position and the end of each assigned partition."""
        ...

    def committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset per partition (None: nothing committed)."""
        ...

    def group_metadata(self) -> object:
        """Opaque group metadata for transactional offset commits."""
        ...

    def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The end (high watermark) of each given partition of any topic, assigned or not;
        raises KafkaError if the broker cannot say."""
        ...

    def close(self) -> None: ...


class Producer(Protocol):
    """Asynchronous sends; :meth:`flush` is the acknowledgement barrier."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[Header] | None = None,
        partition: int | None = None,
    ) -> None: ...

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        partitions: Sequence[int] | None = None,
    ) -> None:
        """:meth:`send` of each ``(key, value)`` pair in order (to ``partitions[i]`` if
        given, else by key); one call per batch so the per-record cost is the client's."""
        ...

    def flush(self) -> None:
        """Block until every send so far is acknowledged; raises KafkaError if any failed."""
        ...

    def unacked(self) -> int | None:
        """Without blocking: how many sends are not acknowledged yet (0: every send so far
        is; raises KafkaError if any failed), or None if the client cannot tell."""
        ...

    def begin(self) -> None:
        """Start a transaction (transactional producers only)."""
        ...

    def commit(self, offsets: dict[TopicPartition, int], group_metadata: object) -> None:
        """Add the consumed offsets to the transaction and commit it atomically."""
        ...

    def abort(self) -> None: ...

    def close(self) -> None: ...
