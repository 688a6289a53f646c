"""kafka-python's group join, mended to keep a join that completed between two polls.

kafka-python 3.0 joins a group in a task (JoinGroup, the leader's assignment, SyncGroup)
that runs on its I/O thread and outlives a poll which times out; the next poll awaits the
same task. But its join loop (``BaseCoordinator.join_group_async``) starts a new JoinGroup
when it finds that task already done, and so discards the assignment the task got. A
task finishes outside a poll whenever the poll that awaited it timed out first, and that
is likeliest for the leader, whose join waits longest. Such a leader rejoins at once,
every round: the group rebalances every two seconds and never completes a round on the
leader, so the partitions it is to give up stay with it and its commits fail. Seen in a
chaos run (4 minutes, one partition's offsets never committed) and reproduced by
``tests/pipeline/kafka_io/test_join.py`` (with the scorer's polls of a few ms).

:class:`CollectingCoordinator` does three things here that kafka-python does not (Java's
client does the first two):

1. When SyncGroup succeeds, on the I/O thread, the member is stable and its heartbeats
   resume at once, not when the main thread next polls (kafka-python disables them for
   the join and re-enables them only when the main thread collects the result, so a
   member that is busy for a session timeout after its SyncGroup would be evicted, and
   could then take up a generation the group has left).
2. Whenever the main thread next looks, it completes a join whose task succeeded, unless
   the generation was lost meanwhile.
3. A member whose generation is reset in the middle of a join attempt (its JoinGroup or
   SyncGroup refused with UnknownMemberId or IllegalGeneration: the group dropped it while
   it was paused past its session timeout) gives up the partitions it held as lost before
   it joins again. kafka-python prepares a member for a rebalance once per attempt, and
   retries such a refusal within the attempt: the member kept its partitions, went on
   processing them, and claimed them again under its new member id while the group had
   given them to others (seen in a chaos run's logs as the leader's "assigned to multiple
   consumers"), a window in which two members process one partition.
"""

from __future__ import annotations

from typing import Any

import kafka
from kafka.coordinator.base import UNKNOWN_MEMBER_ID, MemberState
from kafka.coordinator.consumer import ConsumerCoordinator

__all__ = ["CollectingCoordinator", "mend"]


class CollectingCoordinator(ConsumerCoordinator):  # type: ignore[misc]
    """kafka-python's consumer coordinator, completing a join that finished unobserved."""

    _join_task: Any  # kafka-python's Future of the join in flight (None: none)
    state: Any  # kafka-python's MemberState

    async def _do_join_and_sync_async(self) -> Any:
        """kafka-python's JoinGroup and SyncGroup; then, on the I/O thread, step 1: stable,
        no rejoin needed (a heartbeat that finds a new rebalance asks again), heartbeats on."""
        assignment = await super()._do_join_and_sync_async()
        with self._lock:
            if self.state is MemberState.REBALANCING and not self._generation.is_lost():
                self.state = MemberState.STABLE
                self.rejoin_needed = False
                self._enable_heartbeat()
        return assignment

    def reset_generation(self, member_id: str = UNKNOWN_MEMBER_ID) -> None:
        """kafka-python's; then step 3: an attempt under way prepares again (its
        ``_on_join_prepare_async`` gives a lost generation's partitions up as lost)."""
        super().reset_generation(member_id)
        with self._lock:
            if self._subscription.assigned_partitions():
                self.rejoining = False

    def _collectable(self) -> bool:
        task = self._join_task
        return bool(task is not None and task.succeeded() and not self._generation.is_lost())

    def need_rejoin(self) -> bool:
        """A join waiting to be collected needs the main thread's next poll to come in."""
        return self._collectable() or bool(super().need_rejoin())

    async def join_group_async(self, timeout_ms: Any = None) -> bool:
        """2. A join task that succeeded, in a generation still held: complete it as
        kafka-python's loop completes one it awaited. Otherwise (none, in flight, failed,
        or the generation lost since): kafka-python's loop."""
        if self._collectable():
            task, self._join_task = self._join_task, None
            with self._lock:
                self.rejoining = False
            await self._on_join_complete_async(
                self._generation.generation_id,
                self._generation.member_id,
                self._generation.protocol,
                task.value,
            )
            return True
        joined: bool = await super().join_group_async(timeout_ms=timeout_ms)
        return joined


def mend(consumer: kafka.KafkaConsumer) -> None:
    """Give ``consumer`` the mended join (its coordinator becomes a
    :class:`CollectingCoordinator`; nothing else about it changes)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if type(coordinator) is ConsumerCoordinator:
        coordinator.__class__ = CollectingCoordinator
