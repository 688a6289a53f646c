"""The kafka-python backend's cooperative-sticky assignor leaves no partition unowned.

A group's rebalance rounds are played here as kafka-python's coordinator plays them
(``ConsumerCoordinator._on_join_complete``, cooperative branch): the leader assigns from the
members' advertised claims (their ``metadata``, through the wire encoding); each member
revokes what it owned and was not given, takes the rest, updates its assignor, and asks for
another round if it revoked anything. A member whose session expires leaves the group
without knowing it, keeps its partitions in its own view, and on learning it drops them
and tells its listener (``on_partitions_lost``) before it rejoins under a new member id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)
from kafka.structs import TopicPartition as KTP

from pipeline.kafka_io.cooperative import OwnedCooperativeSticky
from pipeline.kafka_io.kafkapython import _Listener

TOPIC = "in"
PARTITIONS = 4
HISTORIES = 600


class _Cluster:
    """The two calls the sticky algorithm makes of kafka-python's ClusterMetadata."""

    def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(PARTITIONS)) if topic == TOPIC else None


class _Unmended(CooperativeStickyAssignor):  # type: ignore[misc]
    """kafka-python's own assignor, which the listener's ``forget`` does not reach."""

    def forget(self, partitions: Any) -> None:
        pass


@dataclass
class _JoinMember:
    member_id: str
    metadata: Any


@dataclass
class _Member:
    """One consumer under one member id: its assignor and the partitions it owns."""

    name: str
    assignor: Any
    owned: set[KTP] = field(default_factory=set)

    def listener(self) -> _Listener:
        return _Listener(self.assignor, None, None, None)

    def lose(self) -> None:
        """It learns its membership is gone: kafka-python tells the listener, then drops
        the partitions."""
        if self.owned:
            self.listener().on_partitions_lost(set(self.owned))
        self.owned = set()


def _round(members: list[_Member], generation: int) -> bool:
    """One rebalance round; True if a member revoked something and asks for another."""
    join = [
        _JoinMember(
            m.name, ConsumerProtocolSubscription.decode(m.assignor.metadata([TOPIC]).encode())
        )
        for m in members
    ]
    plan = members[0].assignor.assign(_Cluster(), join)
    again = False
    for m in members:
        given = set(ConsumerProtocolAssignment.decode(plan[m.name].encode()).partitions())
        revoked = m.owned - given
        m.owned = given
        m.assignor.on_assignment(plan[m.name], generation)
        if revoked:
            m.listener().on_partitions_revoked(revoked)
            again = True
    return again


def _owners(group: list[_Member]) -> list[int]:
    owned = [tp.partition for m in group for tp in m.owned]
    assert len(owned) == len(set(owned)), f"a partition has two owners in the group: {owned}"
    return owned


def _history(make: Any, seed: int, steps: int = 16) -> set[int]:
    """A random group history: members join; a member's session expires (it leaves
    unaware, and rejoins later or at the end); a member loses its membership and rejoins
    at once; rounds run between events. Returns the partitions no member owns once the
    group has settled."""
    rng = random.Random(seed)
    group: list[_Member] = []
    away: list[_Member] = []
    ids = iter(range(1_000_000))
    generation, pending = 0, False

    def rejoin(m: _Member) -> None:
        m.lose()
        group.insert(rng.randrange(len(group) + 1), _Member(f"m{next(ids)}", m.assignor))

    for _ in range(steps):
        event = (
            rng.choice(["join", "expire", "return", "lose", "round", "round"]) if group else "join"
        )
        if event == "join" and len(group) < PARTITIONS:
            group.insert(rng.randrange(len(group) + 1), _Member(f"m{next(ids)}", make()))
        elif event == "expire" and len(group) > 1:
            away.append(group.pop(rng.randrange(len(group))))
        elif event == "return" and away:
            rejoin(away.pop(rng.randrange(len(away))))
        elif event == "lose":
            rejoin(group.pop(rng.randrange(len(group))))
        elif event != "round":
            continue
        if pending or event != "round":
            generation += 1
            pending = _round(group, generation)
            _owners(group)
    for m in away:
        rejoin(m)
    pending = True
    for _ in range(12):
        if not pending:
            return set(range(PARTITIONS)) - set(_owners(group))
        generation += 1
        pending = _round(group, generation)
    raise AssertionError("the group did not settle in 12 rounds")


def test_no_partition_is_left_unowned_whatever_the_group_went_through() -> None:
    stranded = {s: u for s in range(HISTORIES) if (u := _history(OwnedCooperativeSticky, s))}
    assert stranded == {}, f"histories (seed: partitions) that left a partition unowned: {stranded}"


def test_kafka_pythons_own_assignor_leaves_a_partition_unowned_in_some_histories() -> None:
    """Why the mend exists (2 of these 600 histories strand a partition). If
    this fails, kafka-python's assignor no longer does: check whether
    ``pipeline.kafka_io.cooperative`` is still needed."""
    assert any(_history(_Unmended, s) for s in range(HISTORIES))


def test_a_lost_or_revoked_partition_is_no_longer_claimed() -> None:
    assignor = OwnedCooperativeSticky()
    assignor.on_assignment(ConsumerProtocolAssignment(1, [(TOPIC, [0, 1, 2])], b""), 3)
    listener = _Listener(assignor, None, None, None)
    listener.on_partitions_lost({KTP(TOPIC, 1)})
    listener.on_partitions_revoked({KTP(TOPIC, 2)})
    claim = assignor.parse_member_metadata(assignor.metadata([TOPIC]))
    assert claim.partitions == [KTP(TOPIC, 0)]


def test_a_new_member_claims_nothing_and_forgetting_is_harmless() -> None:
    assignor = OwnedCooperativeSticky()
    assignor.forget({KTP(TOPIC, 0)})
    assert assignor.parse_member_metadata(assignor.metadata([TOPIC])).partitions == []


def test_members_joining_and_leaving_keep_what_balance_lets_them_keep() -> None:
    """After each join or clean leave the group settles with every partition owned once,
    balanced, and a staying member keeps the partitions it owned."""
    group: list[_Member] = []
    generation = 0

    def settle() -> None:
        nonlocal generation
        pending = True
        while pending:
            generation += 1
            pending = _round(group, generation)
        assert sorted(_owners(group)) == list(range(PARTITIONS))
        sizes = sorted(len(m.owned) for m in group)
        assert sizes[-1] - sizes[0] <= 1, sizes

    for name in ("a", "b", "c"):
        group.append(_Member(name, OwnedCooperativeSticky()))
        settle()
    kept = {m.name: set(m.owned) for m in group}
    leaving = group.pop(0)
    leaving.listener().on_partitions_revoked(set(leaving.owned))
    settle()
    for m in group:
        assert kept[m.name] <= m.owned, "a staying member lost a partition it owned"
