"""The pipelined at-least-once checkpoint: offsets are committed only once every send
before them is acknowledged, never while one is in flight, and never for a revoked
partition. (The same protocol against the real broker, with crashes and rebalances:
test_durability.py and test_chaos.py.)"""

from __future__ import annotations

import numpy as np

from pipeline.kafka_io import Record, TopicPartition
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.checkpoint import Checkpointer
from tests.memory_producer import MemoryProducer


class _Acks(MemoryProducer):
    """Sends stay unacknowledged until ``ack()``; ``unacked=None`` mimics kafka-python."""

    def __init__(self, tells: bool = True) -> None:
        super().__init__()
        self.tells, self.in_flight, self.flushes = tells, 0, 0

    def send(self, *args: object, **kwargs: object) -> None:
        super().send(*args, **kwargs)  # type: ignore[arg-type]
        self.in_flight += 1

    def ack(self) -> None:
        self.in_flight = 0

    def unacked(self) -> int | None:
        return self.in_flight if self.tells else None

    def flush(self) -> None:
        self.flushes += 1
        self.in_flight = 0


class _Commits:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def _batch(cp: Checkpointer, producer: _Acks, partition: int, offset: int) -> None:
    producer.send("out", b"k", b"v")
    rec = Record("in", partition, offset, b"k", b"v", 0, [])
    cp.add_batch([rec], {"m": np.empty(0, np.int64)})


def _checkpointer() -> Checkpointer:
    return Checkpointer({}, ScorerMetrics(), changelog=None, exactly_once=False, interval_s=1.0)


def test_offsets_wait_for_every_send_before_them_and_the_loop_does_not() -> None:
    cp, producer, consumer = _checkpointer(), _Acks(), _Commits()
    _batch(cp, producer, 0, 10)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [] and producer.flushes == 0  # in flight: nothing yet
    _batch(cp, producer, 0, 11)  # the loop goes on meanwhile
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == []
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 11}]
    assert cp.pending  # offset 11's batch is not checkpointed yet
    cp.checkpoint(producer, consumer, final=True)  # type: ignore[arg-type]
    assert consumer.commits[-1] == {TopicPartition("in", 0): 12} and producer.flushes == 1
    assert not cp.pending


def test_a_revoked_partition_is_never_committed_and_a_failure_drops_the_wait() -> None:
    cp, producer, consumer = _checkpointer(), _Acks(), _Commits()
    _batch(cp, producer, 0, 5)
    _batch(cp, producer, 1, 7)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    cp.forget_partitions({TopicPartition("in", 1)})
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 6}]
    _batch(cp, producer, 0, 6)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    cp.abandon(producer)  # a Kafka failure: redo from the last commit
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 6}] and not cp.pending


def test_a_client_that_cannot_tell_flushes_at_the_checkpoint() -> None:
    cp, producer, consumer = _checkpointer(), _Acks(tells=False), _Commits()
    _batch(cp, producer, 2, 3)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    assert producer.flushes == 1 and consumer.commits == [{TopicPartition("in", 2): 4}]
