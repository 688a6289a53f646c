"""kafka-python's group join completes when the member polls briefly and calls the client
between polls, as the scorer does (linger polls of a few ms, commits, the lag gauge).

kafka-python 3.0 runs a join as a task that outlives a poll that times out. Its join loop
started a new JoinGroup when it found that task done, discarding the assignment the task
had got: a leader whose join finished outside a poll rejoined at once, every round, and
the group rebalanced every two seconds with the partitions it was to give up never
released (seen in a chaos run: 4 minutes, one partition's offsets never committed).
:mod:`pipeline.kafka_io.join` keeps such a join.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import TopicPartition
from pipeline.kafka_io.kafkapython import KafkaPythonConsumer

pytestmark = pytest.mark.integration


def test_a_leader_that_polls_briefly_hands_partitions_to_a_new_member(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str], group_factory: Callable[[], str]
) -> None:
    topic = topic_factory("join", partitions=4)
    group = group_factory()
    leader = KafkaPythonConsumer(kafka_config, [topic], group)
    joiner: KafkaPythonConsumer | None = None
    try:
        deadline = time.monotonic() + 30.0
        while len(leader.assignment()) < 4:
            assert time.monotonic() < deadline, "the first member was never assigned"
            leader.poll(200, 100)
        joiner = KafkaPythonConsumer(kafka_config, [topic], group)
        deadline = time.monotonic() + 20.0
        settled_since = None
        while True:
            # The leader as the scorer drives it: a short poll, then other client calls.
            leader.poll(1, 100)
            leader.lag()
            joiner.poll(20, 100)
            a, b = leader.assignment(), joiner.assignment()
            balanced = len(a) == len(b) == 2 and not a & b
            now = time.monotonic()
            settled_since = (settled_since or now) if balanced else None
            if settled_since is not None and now - settled_since > 3.0:
                break
            assert now < deadline, f"no balanced assignment: leader {a}, new member {b}"
    finally:
        leader.close()
        if joiner is not None:
            joiner.close()


def test_a_member_that_falls_out_of_the_group_mid_join_gives_its_partitions_up_first(
    kafka_config: KafkaConfig, topic_factory: Callable[..., str], group_factory: Callable[[], str]
) -> None:
    """kafka-python prepares a member for a rebalance once per join attempt. A member
    whose JoinGroup or SyncGroup is refused because the group has dropped it (it was
    paused past its session timeout) retries within the same attempt and so kept its
    partitions, and claimed them again under its new member id while the group may have
    given them to others (seen in a chaos run's logs: "assigned to multiple consumers").
    The mended member gives them up as lost before it joins again."""
    topic = topic_factory("join-lost", partitions=4)
    events: list[tuple[str, frozenset[int], bool]] = []
    member: KafkaPythonConsumer | None = None

    def record(kind: str) -> Callable[[set[TopicPartition]], None]:
        def callback(tps: set[TopicPartition]) -> None:
            lost = coordinator()._generation.is_lost()
            events.append((kind, frozenset(tp.partition for tp in tps), lost))

        return callback

    def coordinator() -> Any:
        assert member is not None
        return member._consumer._coordinator

    member = KafkaPythonConsumer(
        kafka_config,
        [topic],
        group_factory(),
        on_assign=record("assigned"),
        on_revoke=record("revoked"),
    )
    try:
        deadline = time.monotonic() + 30.0
        while len(member.assignment()) < 4:
            assert time.monotonic() < deadline, "the member was never assigned"
            member.poll(200, 100)
        events.clear()
        # What kafka-python's response handlers do when a JoinGroup retried within one
        # attempt is refused with UnknownMemberId: the attempt is under way, the
        # generation is reset.
        with coordinator()._lock:
            coordinator().rejoining = True
        coordinator().reset_generation()
        deadline = time.monotonic() + 40.0
        while time.monotonic() < deadline and not any(kind == "assigned" for kind, *_ in events):
            member.poll(200, 100)
        # Given up (revoked while the generation is lost), then assigned again.
        assert events[:1] == [("revoked", frozenset(range(4)), True)], events
        assert events[-1][:2] == ("assigned", frozenset(range(4))), events
    finally:
        member.close()
