"""kafka-python's cooperative-sticky assignor, mended so that a member claims only the
partitions it owns.

A cooperative member advertises the partitions it owns when it joins a rebalance, and the
leader withholds a partition that moves from its claimant to another member until the
claimant has revoked it: the claimant sees its assignment shrink, revokes and asks for the
next round, which hands the partition on. kafka-python 3.0's ``CooperativeStickyAssignor``
advertises the partitions of its last assignment. A member that loses its membership (a
session that expired, a commit during a rebalance) drops its partitions, but not that
record, so it rejoins claiming partitions it no longer owns. If the leader moves one of
those, it waits for a revocation that never comes: the partition has no owner until some
unrelated rebalance. Seen in a chaos run (one of four input partitions unowned for the last
4 minutes, the leader warning that a partition "is assigned to multiple consumers"), and
reproduced by ``tests/pipeline/kafka_io/test_cooperative.py``. Java's consumer advertises
the partitions it owns at the time of joining; :class:`OwnedCooperativeSticky` does too,
by forgetting every partition the consumer's rebalance listener reports revoked or lost.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.structs import TopicPartition as KTP

__all__ = ["OwnedCooperativeSticky"]


class OwnedCooperativeSticky(CooperativeStickyAssignor):  # type: ignore[misc]
    """Cooperative-sticky assignment whose claim is the partitions the member owns. Give
    kafka-python an instance, and call :meth:`forget` from the rebalance listener."""

    member_assignment: list[KTP] | None  # set by kafka-python at each assignment

    def forget(self, partitions: Iterable[KTP]) -> None:
        """Stop claiming ``partitions`` (revoked or lost)."""
        if self.member_assignment is None:
            return
        gone = set(partitions)
        self.member_assignment = [tp for tp in self.member_assignment if tp not in gone]
