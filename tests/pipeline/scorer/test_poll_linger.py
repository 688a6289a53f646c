"""A lingering loop turn across a rebalance (``Scorer._poll``): the records it keeps.

The clients run rebalance callbacks inside ``poll``, so a rebalance can land between the
polls of one lingering turn. The consumer here is scripted (records and callbacks as the
clients deliver them) because the case that matters, a member evicted and assigned its own
partitions back inside one linger, cannot be brought about on purpose with a real broker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.kafka_io import Consumer, Record, TopicPartition
from pipeline.scorer import Scorer

P0, P1 = TopicPartition("in", 0), TopicPartition("in", 1)


def _rec(tp: TopicPartition, offset: int) -> Record:
    return Record(tp.topic, tp.partition, offset, b"k", b"{}", 0, [])


class _Scripted:
    """Returns ``first``; in the next poll runs the rebalance (revoke, then assign) and
    returns ``after``; then nothing."""

    def __init__(
        self,
        scorer: Scorer,
        first: list[Record],
        revoke: set[TopicPartition],
        assign: set[TopicPartition],
        after: list[Record],
    ) -> None:
        self.scorer, self.first, self.after = scorer, first, after
        self.revoke, self.assign = revoke, assign
        self.owned = {P0, P1}
        self.polls = 0

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        self.polls += 1
        if self.polls == 1:
            return list(self.first)
        if self.polls == 2:
            self.owned -= self.revoke
            self.scorer._on_revoke(self.revoke)
            self.owned |= self.assign
            if self.assign:
                self.scorer._on_assign(self.assign)
            return list(self.after)
        return []

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)


@pytest.fixture
def scorer(tiny_registry: Path) -> Scorer:
    config = ScorerConfig(
        registry=tiny_registry,
        model="tiny",
        kafka=KafkaConfig(bootstrap="x:1"),
        max_poll_records=800,  # a turn waits for 100 records: the linger runs its course
        poll_linger_ms=2000,
    )
    s = Scorer(config)
    s._turn_began = time.monotonic()
    return s


def _kept(scorer: Scorer, script: _Scripted) -> list[tuple[int, int]]:
    records = scorer._poll(cast(Consumer, script))
    return [(r.partition, r.offset) for r in records]


def test_records_of_a_partition_lost_and_assigned_back_are_polled_again_not_kept(
    scorer: Scorer,
) -> None:
    """Evicted (both partitions lost) and given partition 0 back: it restarts at its
    committed offset 5, so the records 10 and 11 polled before must go (kept, the state
    restored to offset 5 would apply them, then apply them again when they come back)."""
    script = _Scripted(
        scorer,
        first=[_rec(P0, 10), _rec(P0, 11), _rec(P1, 20)],
        revoke={P0, P1},
        assign={P0},
        after=[_rec(P0, 5), _rec(P0, 6)],
    )
    assert _kept(scorer, script) == [(0, 5), (0, 6)]
    assert scorer._pending_restore == {P0}


def test_records_of_partitions_the_rebalance_left_alone_are_kept_in_order(
    scorer: Scorer,
) -> None:
    """A cooperative rebalance that moves partition 1 away: partition 0's records, before
    and after it, stay (dropping them would skip them: the position is past them)."""
    script = _Scripted(
        scorer,
        first=[_rec(P0, 10), _rec(P1, 20)],
        revoke={P1},
        assign=set(),
        after=[_rec(P0, 11)],
    )
    assert _kept(scorer, script) == [(0, 10), (0, 11)]
