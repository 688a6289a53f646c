"""The checkpoint: what has been processed since the last one, and steps 4-6 of the
checkpoint protocol that make it durable.

Protocol (the numbers continue those of :mod:`pipeline.scorer.scorer`):

4. one changelog record per stream whose state changed since the last checkpoint: its
   state now, which is its state at the offsets about to be committed (its partition is
   the input partition; it carries the offset of the last input applied), so a stream
   updated many times within ``commit_interval_s`` costs one changelog write;
5. flush: wait until the broker acknowledged every output, dead letter and changelog
   record of the interval;
6. commit the next offset of every partition processed.

At-least-once, step 4 is spread over the next loop turns, so that no turn stops for a
whole checkpoint's frames (10k streams: 100-250 ms under load):

4a. the checkpoint takes the set of touched streams and its offsets; nothing is encoded;
4b. each loop turn writes ``frames_per_turn`` of those frames (:meth:`Checkpointer.advance`);
4c. whatever is about to change or release streams of the set writes their frames first
    (:meth:`ServedModel.before_update <pipeline.engine.serving.ServedModel>`: a batch its
    streams, a model swap all of them, eviction the idle ones, before their tombstones),
    so every frame still describes its stream at the checkpoint's offsets, as a frame
    written at once would; a revoke, a restore, a local snapshot, the next checkpoint and
    stopping first write all that are left (:meth:`Checkpointer.drain`);
4d. once the last frame is sent, the offsets go on to 5.

Pipelined where the client can tell without blocking (confluent-kafka): the poll loop
does not wait at 5. The checkpoint's offsets wait beside it, and each loop
turn asks the producer whether every send so far is acknowledged; once it is (and none
failed), 6 commits them. The offsets then describe inputs whose outputs, dead letters
and changelog records are all acknowledged, as with a blocking flush; later checkpoints'
offsets supersede an earlier one still waiting. A checkpoint waits at most
``MAX_WAIT_S``, then flushes (a producer never idle under load still commits). Where the
client cannot tell (kafka-python), 5 is ``producer.flush()`` and 6 follows at once. A
crash before 6 replays from the last commit, which the restore rule makes exact.
Exactly-once: the interval is one transaction, begun at its first batch, and 5-6 are one
transaction commit that includes the offsets.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict

import numpy as np
import numpy.typing as npt

from pipeline.engine.serving import ServedModel
from pipeline.kafka_io import Consumer, Producer, Record, TopicPartition
from pipeline.kafka_io.changelog import encode_snapshots
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.local_state import SnapshotTaker

__all__ = ["Checkpointer"]

CHANGELOG_CHUNK = 2048  # streams per batch of changelog frames
# At-least-once, frames of a checkpoint written per loop turn (4b): ~10 ms under load.
FRAMES_PER_TURN = 512
MAX_WAIT_S = 5.0  # the longest a checkpoint's offsets wait for acknowledgements unforced


class Checkpointer:
    """Pending work of one checkpoint interval, and the protocol that commits it."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        metrics: ScorerMetrics,
        *,
        changelog: str | None,
        exactly_once: bool,
        interval_s: float,
        snapshots: SnapshotTaker | None = None,
        frames_per_turn: int = FRAMES_PER_TURN,
    ) -> None:
        self.models = models
        self.snapshots = snapshots
        # The next input offset to process per owned partition (from its committed offset
        # and every batch since): what a local snapshot's frames describe.
        self.positions: dict[int, int] = {}
        self.metrics = metrics
        self.changelog = changelog
        self.exactly_once = exactly_once
        self.interval_s = interval_s
        self.frames_per_turn = frames_per_turn
        self.in_txn = False
        self._offsets: dict[TopicPartition, int] = {}
        self._touched: dict[str, set[int]] = defaultdict(set)
        self._appends: list[npt.NDArray[np.float64]] = []  # broker append times (ms)
        self._last = time.monotonic()
        # At-least-once: the checkpoint whose frames are being written (4a-4d), and the
        # producer they go to.
        self._deferred: _Deferred | None = None
        self._producer: Producer | None = None
        # At-least-once: offsets (and append times) of checkpoints whose sends are not
        # all acknowledged yet, and since when the oldest of them waits.
        self._waiting: dict[TopicPartition, int] = {}
        self._waiting_appends: list[npt.NDArray[np.float64]] = []
        self._waiting_since = 0.0

    # -- the interval -----------------------------------------------------------------

    def begin_batch(self, producer: Producer) -> None:
        """Exactly-once: the interval's transaction starts with its first batch."""
        if self.exactly_once and not self.in_txn:
            producer.begin()
            self.in_txn = True

    def add_batch(self, records: list[Record], touched: dict[str, npt.NDArray[np.int64]]) -> None:
        """Remember what a processed batch changed: its offsets and its streams' slots."""
        for name, slots in touched.items():
            self._touched[name].update(slots.tolist())
        # The last offset per partition wins (a comprehension: a third of a loop's cost).
        last = {(r.topic, r.partition): r.offset for r in records}
        for (topic, partition), offset in last.items():
            self._offsets[TopicPartition(topic, partition)] = offset + 1
            self.positions[partition] = offset + 1
        self._appends.append(
            np.fromiter((r.timestamp_ms for r in records), np.float64, len(records))
        )

    @property
    def pending(self) -> bool:
        return (
            bool(self._offsets) or self.in_txn or bool(self._waiting) or self._deferred is not None
        )

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def forget_partitions(self, revoked: set[TopicPartition]) -> None:
        """Revoked partitions' uncommitted work is redone by their new owner."""
        for tp in revoked:
            self._offsets.pop(tp, None)
            self._waiting.pop(tp, None)
            if self._deferred is not None:
                self._deferred.offsets.pop(tp, None)
            self.positions.pop(tp.partition, None)
        if self.snapshots is not None:
            self.snapshots.forget({tp.partition for tp in revoked})

    def start_partitions(self, committed: dict[TopicPartition, int | None]) -> None:
        """Newly assigned partitions start at their committed offsets."""
        known = {tp.partition: off for tp, off in committed.items() if off is not None}
        self.positions.update(known)
        if self.snapshots is not None:
            self.snapshots.confirm(known)

    def abandon(self, producer: Producer | None) -> None:
        """Give up the interval (after a Kafka failure): abort its transaction, if any."""
        if self.exactly_once and producer is not None and self.in_txn:
            producer.abort()
        self.in_txn = False
        self._deferred = None
        self._waiting, self._waiting_appends = {}, []
        # The state is dropped and restored again: no snapshot of a partition until then
        # (a stale position would write a snapshot of streams this scorer no longer has).
        self.positions = {}
        if self.snapshots is not None:
            self.snapshots.forget()
        self._reset()

    # -- the protocol -----------------------------------------------------------------

    def checkpoint(
        self, producer: Producer, consumer: Consumer, *, final: bool = False, snapshot: bool = True
    ) -> None:
        """Steps 4 (changelog), 5 and 6 for everything processed since the last checkpoint
        (``final``: before stopping, so 5 blocks). ``snapshot``: a local snapshot may be
        taken (not inside a rebalance callback, where no blocking client call may run)."""
        # 4. One changelog record per touched stream: at once under exactly-once (the
        # transaction holds them), spread over the next turns under at-least-once (4a).
        self.drain(producer)  # the previous checkpoint's, if any are left
        if not self.exactly_once:
            touched = self._touched if self.changelog else {}
            self._deferred = _Deferred.of(self.models, touched, self._offsets, self._appends)
            self._producer = producer
        elif self.changelog:
            self._send_changelog(producer, self.changelog)
        now = time.monotonic()
        taker = self.snapshots if self.changelog and snapshot else None
        if taker is not None and (final or taker.due(now)):
            # A local snapshot (pipeline.scorer.local_state) now, after this checkpoint's
            # changelog records and before anything else is sent.
            self.drain(producer)
            taker.take(consumer, self.models, self.positions, now, wait=final)
        if self.exactly_once:
            if self.in_txn:
                # 5.-6. One transaction: outputs, dead letters, changelog and offsets.
                producer.commit(self._offsets, consumer.group_metadata())
                self.in_txn = False
                self._confirm(self._offsets)
            self._observe(self._appends)
            self._reset()
            return
        self._reset()
        if final:
            self.drain(producer)
        self.complete(producer, consumer, block=final)  # 4b first

    def advance(self, producer: Producer) -> None:
        """4b. Write the next ``frames_per_turn`` frames of the deferred checkpoint; 4d. once
        they are all sent, its offsets wait for their sends' acknowledgements (5)."""
        d = self._deferred
        if d is None:
            return
        budget = self.frames_per_turn
        for name in list(d.order):
            slots = d.next(name, budget)
            budget -= len(slots)
            self._send_frames(producer, name, slots)
            if budget <= 0:
                return
        # 4d. Every frame is sent.
        self._deferred = None
        if not self._waiting:
            self._waiting_since = time.monotonic()
        self._waiting.update(d.offsets)
        self._waiting_appends.extend(d.appends)

    def drain(self, producer: Producer | None = None) -> None:
        """4c. Write every frame the deferred checkpoint has left (before a revoke, a
        restore, a local snapshot, the next checkpoint or stopping)."""
        producer = producer or self._producer
        while self._deferred is not None and producer is not None:
            self.advance(producer)

    def hand_over(self) -> None:
        """Before a revoke or a restore changes which streams the stores hold: every frame
        the deferred checkpoint has left is written (4c), and a local snapshot being taken
        copies what it has left (its step 2d)."""
        self.drain()
        if self.snapshots is not None:
            self.snapshots.finish()

    def before_update(self, name: str, slots: npt.NDArray[np.int64]) -> None:
        """4c. A batch, a swap or an eviction is about to change or free these slots of
        model ``name``: those whose frame the deferred checkpoint has not written yet are
        written now (and those a local snapshot being taken has not copied yet, copied)."""
        if self.snapshots is not None:
            self.snapshots.before_update(name, slots)  # snapshot step 2c
        d, producer = self._deferred, self._producer
        if d is None or producer is None:
            return
        self._send_frames(producer, name, d.claim(name, slots))

    def complete(self, producer: Producer, consumer: Consumer, *, block: bool = False) -> None:
        """At-least-once steps 5-6 of the waiting checkpoints: commit their offsets once
        every send so far is acknowledged (now, if ``block``, or if the client cannot tell
        without blocking, or if they waited ``MAX_WAIT_S``)."""
        if self.snapshots is not None:
            self.snapshots.advance()  # snapshot step 2b
        self.advance(producer)
        if not self._waiting:
            return
        if not block:
            left = producer.unacked()
            if left is None or time.monotonic() - self._waiting_since >= MAX_WAIT_S:
                block = True
            elif left:
                return
        if block:
            # 5. Flush: every output acknowledged before the inputs are committed.
            producer.flush()
        # 6. Commit the next offset of every partition processed.
        consumer.commit(self._waiting)
        self._confirm(self._waiting)
        self._observe(self._waiting_appends)
        self._waiting, self._waiting_appends = {}, []

    def _confirm(self, offsets: dict[TopicPartition, int]) -> None:
        """A commit with every send so far acknowledged: local deltas get a marker, and
        local snapshots whose positions these committed offsets cover are published."""
        if self.snapshots is not None:
            self.snapshots.mark({tp.partition: off for tp, off in offsets.items()})

    def _observe(self, appends: list[npt.NDArray[np.float64]]) -> None:
        """End-to-end latency: from each input's broker append to its checkpoint's commit."""
        done_ms = time.time() * 1000.0
        appended = np.concatenate(appends) if appends else np.empty(0)
        self.metrics.e2e.observe_many(np.maximum(0.0, done_ms - appended) / 1000.0)

    def _send_changelog(self, producer: Producer, topic: str) -> None:
        for name, touched in self._touched.items():
            self._send_frames(producer, name, np.fromiter(touched, np.int64, len(touched)))

    def _send_frames(self, producer: Producer, name: str, slots: npt.NDArray[np.int64]) -> None:
        """The changelog frames of these slots of model ``name``, as they are now."""
        if not self.changelog or not len(slots):
            return
        served = self.models[name]
        store = served.store
        # Evicted or revoked since: nothing to persist.
        live = [(slot, sid) for slot in slots.tolist() if (sid := store.id_of(slot)) is not None]
        # In chunks: the frames of a chunk exist twice (array and records) only until the
        # client has copied them, so the transient memory stays small.
        deltas = self.snapshots.deltas if self.snapshots is not None else None
        for at in range(0, len(live), CHANGELOG_CHUNK):
            chunk = live[at : at + CHANGELOG_CHUNK]
            sl = np.fromiter((slot for slot, _ in chunk), np.int64, len(chunk))
            served.materialize(sl)  # a stream a swap left stale is persisted rebuilt
            keys = [sid.encode() for _, sid in chunk]
            parts = store.part[sl]
            # The same records go to the changelog and, block by block, to the local deltas.
            to_disk = functools.partial(deltas.frames, parts, keys) if deltas else None
            values = encode_snapshots(store, sl, served.name, served.version, to_disk)
            producer.send_many(self.changelog, keys, values, parts.tolist())

    def _reset(self) -> None:
        self._offsets = {}
        self._touched = defaultdict(set)
        self._appends = []
        self._last = time.monotonic()


class _Deferred:
    """A checkpoint whose changelog frames are being written (at-least-once, 4a-4d): per
    model, its touched slots in write order and which of them are still to be written."""

    def __init__(
        self,
        order: dict[str, npt.NDArray[np.int64]],
        offsets: dict[TopicPartition, int],
        appends: list[npt.NDArray[np.float64]],
    ) -> None:
        self.order = order
        self.left: dict[str, npt.NDArray[np.bool_]] = {}
        for name, slots in order.items():
            mask = np.zeros(int(slots.max()) + 1 if len(slots) else 0, np.bool_)
            mask[slots] = True
            self.left[name] = mask
        self.at = dict.fromkeys(order, 0)
        self.offsets = offsets
        self.appends = appends

    @classmethod
    def of(
        cls,
        models: dict[str, ServedModel],
        touched: dict[str, set[int]],
        offsets: dict[TopicPartition, int],
        appends: list[npt.NDArray[np.float64]],
    ) -> _Deferred:
        order = {
            name: np.fromiter(sorted(slots), np.int64, len(slots))
            for name, slots in touched.items()
            if slots and name in models
        }
        return cls(order, offsets, appends)

    def next(self, name: str, budget: int) -> npt.NDArray[np.int64]:
        """Up to ``budget`` slots of ``name`` still to be written, now counted as written
        (the model is done with once none are left)."""
        slots, left, at = self.order[name], self.left[name], self.at[name]
        out: list[npt.NDArray[np.int64]] = []
        got = 0
        while at < len(slots) and got < budget:
            part = slots[at : at + budget - got]
            at += len(part)
            part = part[left[part]]
            out.append(part)
            got += len(part)
        self.at[name] = at
        picked = np.concatenate(out) if out else np.empty(0, np.int64)
        left[picked] = False
        if at >= len(slots):
            del self.order[name], self.left[name], self.at[name]
        return picked

    def claim(self, name: str, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Those of ``slots`` still to be written, now counted as written."""
        left = self.left.get(name)
        if left is None or not len(slots):
            return np.empty(0, np.int64)
        slots = np.unique(slots[slots < len(left)])
        picked = slots[left[slots]]
        left[picked] = False
        return picked
