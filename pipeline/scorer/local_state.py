"""Local state snapshots: a restore that reads the changelog's tail, not all of it.

A changelog keeps one frame per touched stream per checkpoint until the log cleaner
compacts it, so a restore that reads it from the beginning grows with uptime. As Kafka
Streams keeps a local store and a checkpoint file of changelog offsets, the scorer keeps
one snapshot file per input partition: every stream's frame (the changelog's format), the
input position the frames describe and the changelog offset they cover. A restore then
reads only the changelog records after that offset, and of those, first the ones the
scorer also kept on its disk (:mod:`pipeline.scorer.local_delta`, opened at step 2 and
published and dropped with the snapshot at step 4).

Snapshot protocol (at a checkpoint K, every ``snapshot_interval_s``, after step 4 has
handed K's changelog records to the producer and before anything else is sent):

1. read the changelog's end offset E of each owned partition (blocking, one request);
   every record sent after this step lands at or after E;
2. copy the state rows of the owned partitions' streams as they are at K, with each
   partition's input position P_K (the next offset to process: every frame's source
   offset is below it), a few rows at a time so that no loop turn waits for all of them
   (100k streams: 300 MB, 0.3-1.1 s at once):
   2a. the copy begins: the set of owned streams, nothing copied;
   2b. each loop turn copies ``COPY_PER_TURN`` rows;
   2c. whatever is about to change or free rows not copied yet (a batch its streams, a
       model swap all of them, eviction the idle ones) copies them first, so every row
       still holds its stream's state at K;
   2d. a revoke, a restore and stopping copy what is left (the copy may span
       checkpoints: its rows stay those of K, and no snapshot is taken until it ends);
3. once the copy is complete, in a background thread, encode the frames and write them
   to a temporary file, flushed to disk;
4. once the partition's input offsets up to P_K are committed (K's checkpoint, or an
   earlier one if nothing of it was processed since), rename the file to
   ``<partition>.snap``, keeping the one it replaces as ``<partition>.prev.snap``. A
   snapshot whose checkpoint never commits (a scorer fenced or expelled from the group
   while another one processed the partition) is never published: its changelog offset E
   may lie after the other scorer's frames.

Restore protocol, for input partition p with committed offset C (run by the restorer):

1. take the newest snapshot of p whose position P_K is at most C (its checkpoint was
   committed, so every frame in it is below C) and whose offset E is not beyond the
   changelog's end (else it belongs to another incarnation of the topic);
2. read the changelog of p from E and apply each record over the snapshot's frames with
   the changelog's restore rule (of a stream's frames after its last tombstone, the one
   with the highest source offset below C wins; a tombstone removes);
3. without a usable snapshot, read the changelog from its beginning, as before.

Why this equals a restore from the whole changelog: the rule picks each stream's frame at
its last input below C, and frames of one input hold one state. A stream's frame in the
snapshot is its state at K, at its last input below P_K. A record before E is older than
that, or is a frame of an input in [P_K, C) sent by a scorer that had fallen behind (an
expelled one); the scorer that committed C sent a frame for that input, or a later one, at
or after E. Records at or after E are applied in log order, so each stream ends with the
same frame, or is removed by the same tombstone (a tombstone before E for a stream that
is in the snapshot was followed by a frame that re-created it, which is in the snapshot
and, if it is at or after E, re-applied after the tombstone).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from pipeline.engine.row_copy import RowCopy
from pipeline.engine.serving import ServedModel
from pipeline.engine.state import StateStore
from pipeline.errors import KafkaError, StatecastError
from pipeline.kafka_io import Consumer
from pipeline.kafka_io.changelog import frame_blocks
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.local_delta import DeltaLog, decode_ids, file_head, mapped, read_head

__all__ = ["LocalState", "Seed", "SnapshotTaker"]

log = logging.getLogger(__name__)
# Temporary file names of this process: a name per staged file, so a newer one of the
# same partition and position never shares (and then deletes) an older one's.
_TMP_IDS = itertools.count()
# Rows of state a loop turn copies for a snapshot being taken (2b): 12 MB of 3-KB rows,
# 5-50 ms (the first touch of fresh memory is most of it; 100k streams: 25 turns).
COPY_PER_TURN = 4096

MAGIC = b"SCLS"
# 3: CRC-32C (in hardware, ~3x zlib.crc32) instead of crc32; older files are ignored
FORMAT = 3
# input position, changelog offset, frames, blocks, CRC-32C of the body
_HEAD = struct.Struct(">qqIII")


@dataclass(frozen=True)
class Seed:
    """A usable snapshot of one partition: the changelog offset it covers, its streams'
    ids and their frames as blocks of one layout, ``(frame size, frames)`` in the order of
    ``ids`` (a block decodes as one array: :func:`pipeline.kafka_io.changelog.decode_block`)."""

    partition: int
    position: int
    changelog_offset: int
    ids: list[str]
    blocks: list[tuple[int, memoryview]]

    @property
    def frames(self) -> dict[str, bytes]:
        """Stream id → frame (for tests and tools; a restore uses the blocks)."""
        out: dict[str, bytes] = {}
        row = 0
        for size, data in self.blocks:
            for j in range(len(data) // size):
                out[self.ids[row]] = bytes(data[j * size : (j + 1) * size])
                row += 1
        return out


class LocalState:
    """The snapshot files of one changelog topic under ``root``.

    File: ``SCLS | u8 format | u16 len + changelog topic | i64 input position
    | i64 changelog offset | u32 frames | u32 blocks | u32 CRC-32C of the body``, then the
    body: ``(u32 frame size, u32 frames)`` per block, ``u32`` key length per frame, the
    keys, the blocks' frames.
    """

    def __init__(self, root: Path, changelog: str) -> None:
        self.changelog = changelog
        self.dir = root / changelog

    def path(self, partition: int, *, previous: bool = False) -> Path:
        return self.dir / (f"{partition}.prev.snap" if previous else f"{partition}.snap")

    def write(
        self,
        partition: int,
        position: int,
        changelog_offset: int,
        keys: list[bytes],
        blocks: list[tuple[int, bytes]],
    ) -> int:
        """:meth:`stage` then :meth:`publish` (tests, tools). Returns the bytes written."""
        tmp = self.stage(partition, position, changelog_offset, keys, blocks)
        size = tmp.stat().st_size
        self.publish(partition, tmp)
        return size

    def stage(
        self,
        partition: int,
        position: int,
        changelog_offset: int,
        keys: list[bytes],
        blocks: list[tuple[int, bytes]],
    ) -> Path:
        """Step 3 for one partition, up to a temporary file on disk: ``blocks`` are
        ``(frame size, frames)`` in the order of ``keys``."""
        table = np.asarray([(size, len(data) // size) for size, data in blocks], ">u4")
        if int(table[:, 1].sum() if len(table) else 0) != len(keys):
            raise ValueError(f"{len(keys)} keys for {int(table[:, 1].sum())} frames")
        body = b"".join(
            (
                table.tobytes(),
                np.fromiter(map(len, keys), ">u4", len(keys)).tobytes(),
                b"".join(keys),
                *(data for _, data in blocks),
            )
        )
        head = file_head(
            MAGIC,
            FORMAT,
            self.changelog,
            _HEAD.pack(position, changelog_offset, len(keys), len(blocks), crc32c(body)),
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        # A temporary name of this writer's own: scorers that share the directory may both
        # write a partition around a rebalance; each file is valid, the last rename wins.
        tmp = self.dir / f"{partition}.snap.{os.getpid()}-{next(_TMP_IDS)}.tmp"
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def publish(self, partition: int, tmp: Path) -> None:
        """Make a staged file the partition's snapshot (the current one becomes previous)."""
        current = self.path(partition)
        if current.exists():
            os.replace(current, self.path(partition, previous=True))
        os.replace(tmp, current)

    def sweep(self, older_than_s: float) -> None:
        """Delete temporary files left by writers that died (older than ``older_than_s``)."""
        cutoff = time.time() - older_than_s
        for tmp in self.dir.glob("*.tmp") if self.dir.exists() else []:
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def read(self, partition: int, *, previous: bool = False) -> Seed | None:
        """One snapshot file; None if it is missing, damaged or of another topic."""
        path = self.path(partition, previous=previous)
        try:
            data = mapped(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("local state %s unreadable (%s): ignored", path, exc)
            return None
        try:
            return self._parse(partition, data)
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            log.warning("local state %s ignored: %s", path, exc)
            return None

    def _parse(self, partition: int, data: memoryview) -> Seed:
        pos = read_head(data, MAGIC, FORMAT, self.changelog)
        position, offset, count, nblocks, crc = _HEAD.unpack_from(data, pos)
        body = data[pos + _HEAD.size :]
        if crc32c(body) != crc:
            raise ValueError("checksum mismatch (a partial or damaged write)")
        table = np.frombuffer(body, ">u4", 2 * nblocks).reshape(nblocks, 2).astype(np.int64)
        at = 8 * nblocks
        klen = np.frombuffer(body, ">u4", count, at).astype(np.int64)
        at += 4 * count
        if int(table[:, 1].sum()) != count or at + int(klen.sum()) + int(
            (table[:, 0] * table[:, 1]).sum()
        ) != len(body):
            raise ValueError("its sizes do not add up to the file's size")
        keys = bytes(body[at : at + int(klen.sum())])
        ends = np.cumsum(klen).tolist()
        ids = decode_ids(keys, ends, klen.tolist())
        at += len(keys)
        blocks = []
        for size, frames in table.tolist():
            blocks.append((size, body[at : at + size * frames]))
            at += size * frames
        return Seed(partition, int(position), int(offset), ids, blocks)

    def seed(self, partition: int, committed: int, changelog_end: int) -> Seed | None:
        """Restore step 1: the newest snapshot of ``partition`` usable at ``committed``.

        The previous snapshot is read only when the current one is not usable (each read
        checks a file of hundreds of MB): it is older, so it covers no changelog offset
        the current one does not."""
        for previous in (False, True):
            s = self.read(partition, previous=previous)
            if s is None:
                continue
            if s.changelog_offset > changelog_end:
                log.warning(
                    "local state of partition %d covers changelog offsets beyond its end "
                    "(%d): the changelog was recreated; the snapshots are ignored",
                    partition,
                    changelog_end,
                )
                return None
            if s.position <= committed:
                return s
            log.info(
                "local state of partition %d is ahead of the committed offset (%d > %d): its "
                "checkpoint was not committed; trying an older one",
                partition,
                s.position,
                committed,
            )
        return None


@dataclass
class _Copying:
    """A snapshot being taken (steps 2a-2d): its copies of the owned partitions' rows."""

    copies: list[tuple[RowCopy, str, str]]  # (copy, model name, version)
    positions: dict[int, int]  # partition → input position P_K
    ends: dict[int, int]  # partition → changelog end E


@dataclass
class _Job:
    """A copy of the owned partitions' state rows (snapshot step 2)."""

    stores: list[tuple[StateStore, str, str]]  # (copy, model name, version)
    positions: dict[int, int]  # partition → input position P_K
    ends: dict[int, int]  # partition → changelog end E


class SnapshotTaker:
    """Snapshot steps 1-2 in the poll loop (2b-2d spread over its turns) and 3 in a
    background thread; step 4: a
    partition's file is published only once its position is committed (:meth:`confirm`),
    so a snapshot whose checkpoint never commits (a fenced zombie, a failed commit) never
    replaces a good one."""

    def __init__(
        self,
        local: LocalState,
        changelog: str,
        interval_s: float,
        metrics: ScorerMetrics | None = None,
        deltas: DeltaLog | None = None,
        copy_per_turn: int = COPY_PER_TURN,
    ) -> None:
        self.local = local
        # The records sent since each snapshot, kept beside it (pipeline.scorer.local_delta).
        self.deltas = deltas
        self.metrics = metrics
        self.changelog = changelog
        self.interval_s = interval_s
        self._last = -math.inf  # the first snapshot is due at the first checkpoint
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._committed: dict[int, int] = {}  # partition → committed offset (known)
        self._staged: dict[int, tuple[int, Path]] = {}  # partition → (position, file)
        # Partitions given up while the running job writes (None: all): not staged.
        self._gone: set[int] | None = set()
        self.written = 0  # snapshots written, for tests and logs
        self.published = 0  # partition files published
        self.skipped = 0  # due while the previous one was still being written, or no end offsets
        self.take_s = 0.0  # the last snapshot's steps 1-2a (the poll loop waits for them)
        self.copy_s = 0.0  # ... its copy, 2b-2d, over the loop's turns
        self.copy_max_s = 0.0  # ... the longest of those (a turn waits for it)
        self.write_s = 0.0  # ... and its step 3 (in the background)
        self.copy_per_turn = copy_per_turn
        self._copying: _Copying | None = None
        local.sweep(older_than_s=3600.0)

    def due(self, now: float) -> bool:
        return now - self._last >= self.interval_s

    def take(
        self,
        consumer: Consumer,
        models: dict[str, ServedModel],
        positions: dict[int, int],
        now: float,
        *,
        wait: bool = False,
    ) -> None:
        """Steps 1-2a now, 2b-2d over the next loop turns, then 3 in the background
        (``wait``: all of them before returning). Skipped while the previous snapshot is
        still being copied or written, and while a served model still rebuilds streams a
        swap left stale (pipeline.engine.serving)."""
        self._last = now
        if self._copying is not None or (self._thread is not None and self._thread.is_alive()):
            if not wait:
                self.skipped += 1
                return
            self.wait()
        if not wait and any(served.catching_up for served in models.values()):
            # Streams a model swap left stale would be rebuilt as they are copied, 4,096 a
            # turn (~0.3 s): the next interval takes it, once they are rebuilt.
            self.skipped += 1
            return
        if not positions:
            return
        started = time.monotonic()
        # 1. The changelog's end of every owned partition.
        try:
            ends = consumer.end_offsets(self.changelog, sorted(positions))
        except KafkaError as exc:
            # A snapshot is an optimisation: the scorer keeps serving, the next one is due
            # at the next interval (a broker that stays away fails the checkpoint itself).
            self.skipped += 1
            log.warning("local state snapshot skipped: %s", exc)
            return
        # 2a. Begin the copy of the owned partitions' rows: nothing is copied yet.
        copies = []
        for served in models.values():
            store = served.store
            slots = store.live_slots()
            slots = slots[np.isin(store.part[slots], list(positions))]
            copies.append((RowCopy(store, slots, served.materialize), served.name, served.version))
        self._copying = _Copying(copies, dict(positions), ends)
        with self._lock:
            self._gone = set()
        if self.deltas is not None:
            # Delta write step 1: what is sent from now on extends this snapshot.
            for p, pos in positions.items():
                self.deltas.open(p, pos, ends[p])
        self.take_s = time.monotonic() - started
        self.copy_s = self.copy_max_s = 0.0
        if self.metrics is not None:
            self.metrics.snapshot_pause.set(self.take_s)
        if wait:
            self.wait()

    @property
    def copying(self) -> bool:
        """A snapshot is being copied (steps 2b-2d)."""
        return self._copying is not None

    def advance(self) -> None:
        """2b. Copy the next ``copy_per_turn`` rows of the snapshot being taken (each loop
        turn); 3 starts once they are all copied."""
        if self._copying is not None:
            self._copy(lambda c: c.advance(self.copy_per_turn))

    def before_update(self, name: str, slots: npt.NDArray[np.int64]) -> None:
        """2c. These slots of model ``name`` are about to change or be freed: those the
        snapshot being taken has not copied yet are copied now."""
        if self._copying is not None:
            for copy, model, _ in self._copying.copies:
                if model == name:
                    copy.before_update(slots)

    def finish(self) -> None:
        """2d. Copy every row the snapshot being taken has left (before a revoke, a
        restore or stopping); 3 starts."""
        if self._copying is not None:
            self._copy(lambda c: c.finish())

    def _copy(self, step: Callable[[RowCopy], object]) -> None:
        assert self._copying is not None
        started = time.monotonic()
        for copy, _, _ in self._copying.copies:
            if not copy.done:
                step(copy)
                if not copy.done:
                    break
        took = time.monotonic() - started
        self.copy_s += took
        self.copy_max_s = max(self.copy_max_s, took)
        if all(copy.done for copy, _, _ in self._copying.copies):
            c, self._copying = self._copying, None
            stores = [(copy.copy, name, version) for copy, name, version in c.copies]
            # 3. Encode and write, off the loop.
            self._thread = threading.Thread(
                target=self._write,
                args=(_Job(stores, c.positions, c.ends),),
                name="statecast-snapshot",
                daemon=True,
            )
            self._thread.start()

    def confirm(self, committed: dict[int, int]) -> None:
        """4. These input offsets are committed (or were at assignment): publish the
        staged snapshots they cover."""
        with self._lock:
            for p, off in committed.items():
                self._committed[p] = max(off, self._committed.get(p, off))
            self._publish_covered()

    def mark(self, committed: dict[int, int]) -> None:
        """A commit succeeded with every send so far acknowledged: the deltas say so
        (delta write step 3), then the snapshots it covers are published (4)."""
        if self.deltas is not None:
            self.deltas.mark(committed)
        self.confirm(committed)

    def forget(self, partitions: set[int] | None = None) -> None:
        """Partitions given up (revoked; all: after a Kafka failure): their staged files
        are dropped, and what was committed for them is no longer known here; nothing more
        is appended to their deltas."""
        if self.deltas is not None:
            self.deltas.stop(partitions)
        if partitions is None:
            self._copying = None  # the state is dropped: a copy of it is of no use
        with self._lock:
            if partitions is None:
                self._gone = None
            elif self._gone is not None:
                self._gone |= partitions
            for p in list(self._staged if partitions is None else partitions):
                self._committed.pop(p, None)
                staged = self._staged.pop(p, None)
                if staged is not None:
                    staged[1].unlink(missing_ok=True)
                    self._drop_delta(p, staged[0])
            if partitions is None:
                self._committed.clear()

    def wait(self) -> None:
        """Until the snapshot being taken, if any, is copied (2d) and written (3)."""
        self.finish()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.wait()
        self.forget()  # never committed: the files are of no use

    def _publish_covered(self) -> None:
        for p, (pos, tmp) in list(self._staged.items()):
            if pos <= self._committed.get(p, -1):
                del self._staged[p]
                try:
                    self.local.publish(p, tmp)
                except OSError as exc:
                    # An optimisation failing: restores read more of the changelog.
                    log.warning("local state of partition %d not published: %s", p, exc)
                    continue
                if self.deltas is not None:
                    self.deltas.publish(p, pos)
                self.published += 1
                if self.metrics is not None:
                    self.metrics.snapshot_published.set(time.time())

    def _write(self, job: _Job) -> None:
        started = time.monotonic()
        try:
            for part in sorted(job.positions):
                keys: list[bytes] = []
                blocks: list[tuple[int, bytes]] = []
                for store, name, version in job.stores:
                    slots = _slots_of(store, part)
                    for pick, data, size in frame_blocks(store, slots, name, version):
                        keys.extend(_ids(store, slots[pick]))
                        blocks.append((size, data))
                tmp = self.local.stage(part, job.positions[part], job.ends[part], keys, blocks)
                with self._lock:
                    if self._gone is None or part in self._gone:
                        tmp.unlink(missing_ok=True)  # given up meanwhile
                        self._drop_delta(part, job.positions[part])
                        continue
                    older = self._staged.get(part)
                    if older is not None:
                        older[1].unlink(missing_ok=True)
                        if older[0] != job.positions[part]:  # else its delta is this one's
                            self._drop_delta(part, older[0])
                    self._staged[part] = (job.positions[part], tmp)
                    self._publish_covered()
            self.written += 1
            self.write_s = time.monotonic() - started
        except (OSError, ValueError, StatecastError) as exc:
            # A snapshot is an optimisation: without it, restores read more of the changelog.
            log.warning("local state snapshot not written (%s): restores read the changelog", exc)
            with self._lock:
                for part, pos in job.positions.items():
                    if self._staged.get(part, (None,))[0] != pos:
                        self._drop_delta(part, pos)

    def _drop_delta(self, partition: int, position: int) -> None:
        if self.deltas is not None:
            self.deltas.drop(partition, position)


def _ids(store: StateStore, slots: npt.NDArray[np.int64]) -> list[bytes]:
    out = []
    for s in slots.tolist():
        sid = store.id_of(s)
        assert sid is not None  # a compact copy has no free slots
        out.append(sid.encode())
    return out


def _slots_of(store: StateStore, partition: int) -> npt.NDArray[np.int64]:
    live = np.arange(len(store), dtype=np.int64)
    out: npt.NDArray[np.int64] = live[store.part[: len(store)] == partition]
    return out
