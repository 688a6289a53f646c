"""kafka-python's group join, mended to keep a join that completed between two polls.

kafka-python 3.0 joins a group in a task (JoinGroup, the leader's assignment, SyncGroup)
that outlives a poll which times out; the next poll awaits the same task. But its join
loop (``BaseCoordinator.join_group_async``) starts a new JoinGroup when it finds that
task already done, and so discards the assignment the task got. A task finishes outside
a poll when another client call (a commit, the lag gauge's offsets) drives the network,
and that is likeliest for the leader, whose join waits longest. Such a leader rejoins at
once, every round: the group rebalances every two seconds and never completes a round
on the leader, so the partitions it is to give up stay with it and its commits fail.
Seen in a chaos run (4 minutes, one input partition's offsets never committed) and
reproduced by ``tests/pipeline/kafka_io/test_join.py`` (with the scorer's polls of a
few ms). Java's client completes a join whose future succeeded whenever it next looks,
unless the generation was cleared meanwhile; :class:`CollectingCoordinator` does the same.
"""

from __future__ import annotations

from typing import Any

import kafka
from kafka.coordinator.base import MemberState
from kafka.coordinator.consumer import ConsumerCoordinator

__all__ = ["CollectingCoordinator", "mend"]


class CollectingCoordinator(ConsumerCoordinator):  # type: ignore[misc]
    """kafka-python's consumer coordinator, completing a join that finished unobserved."""

    _join_task: Any  # kafka-python's Future of the join in flight (None: none)

    async def join_group_async(self, timeout_ms: Any = None) -> bool:
        """1. A join task that finished with an assignment, in a generation still held:
        complete it as kafka-python's loop completes one it awaited. 2. Otherwise (none,
        in flight, failed, or the generation cleared since): kafka-python's loop."""
        task = self._join_task
        # 1. Collect it.
        if task is not None and task.succeeded() and not self._generation.is_lost():
            self._join_task = None
            with self._lock:
                self.rejoining = False
                self.rejoin_needed = False
                self.state = MemberState.STABLE
                self._enable_heartbeat()
            await self._on_join_complete_async(
                self._generation.generation_id,
                self._generation.member_id,
                self._generation.protocol,
                task.value,
            )
            return True
        # 2. kafka-python's own.
        joined: bool = await super().join_group_async(timeout_ms=timeout_ms)
        return joined


def mend(consumer: kafka.KafkaConsumer) -> None:
    """Give ``consumer`` the mended join (its coordinator becomes a
    :class:`CollectingCoordinator`; nothing else about it changes)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if type(coordinator) is ConsumerCoordinator:
        coordinator.__class__ = CollectingCoordinator
