"""Local deltas: the changelog records written since a local snapshot, kept on disk too,
so that a warm restart reads them there instead of fetching them from the broker.

A local snapshot (:mod:`pipeline.scorer.local_state`) bounds a warm restore to the
changelog written since it, which after a kill -9 is up to ``snapshot_interval_s`` of
frames: a minute of 5k touched streams a second is 300k records, ~4.5 s to fetch and
sift. Kafka Streams keeps its local store current at every write for the same reason.
Here every changelog record the scorer sends for input partition p (frames and
tombstones) is also appended to a file that extends p's snapshot, in send order; a
restart reads the file from the page cache, and from the broker only what came after it.

File ``<partition>.delta``: ``SCLD | u8 format | u16 len + changelog topic | i64
snapshot position | i64 snapshot changelog offset``, then entries, each ``u8 kind | u32
count``:

* ``F`` frames: ``u32`` frame size, ``u32`` key length per frame, the keys, the frames;
* ``T`` tombstones: ``u32`` key length per key, the keys;
* ``M`` marker: ``i64`` committed input position, ``u32`` CRC-32C of every byte since the
  previous marker (or the head); its count is the records written before it.

Write protocol (the owner of input partition p; :class:`DeltaLog`):

1. at a snapshot's step 2, open a delta for p whose head names that snapshot's position
   P_K and changelog offset E; appends to p's previous delta stop;
2. append every changelog record of p sent afterwards, as it is handed to the producer;
3. after every commit (when every send so far is acknowledged: checkpoint steps 5-6),
   append a marker with the committed position;
4. publish the file as ``<p>.delta`` when its snapshot is published and delete it when
   the snapshot is dropped or superseded; after a revoke of p, a Kafka failure or a stop,
   append nothing more to it.

Restore protocol, for p with committed offset C and the snapshot S that restore step 1
of :mod:`pipeline.scorer.local_state` chose (:meth:`DeltaLog.read`):

1. use ``<p>.delta`` only if its head names S (its position and changelog offset);
2. read its entries up to the last marker whose checksum holds and whose position is at
   most C; n records precede that marker;
3. apply those n records over S with the changelog's rule (of a stream's frames after
   its last tombstone, the highest source offset below C wins; a tombstone removes), then
   read the changelog from E + n.

Why 3 equals reading the changelog from E: records sent after S was taken land at or
after E, in send order, one offset each or more (transaction markers take offsets too),
so the n-th lands at E + n - 1 or later and nothing sent after the marker lands below E
+ n. A record below E + n is therefore either one of the n, or was sent before S was
taken (in flight at its step 1: a frame of S's own checkpoint, whose state S holds).
Records at or after E + n that are also among the n are applied twice, in log order,
which changes no stream's outcome. Only records of distinct streams are reordered in the
file (a chunk of frames is written block by block), and the rule is per stream.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from pipeline.kafka_io.changelog import block_offsets

__all__ = ["REMOVED", "Delta", "DeltaLog", "decode_ids", "file_head", "mapped", "read_head"]

log = logging.getLogger(__name__)
_TMP_IDS = itertools.count()

MAGIC = b"SCLD"
# 2: CRC-32C (in hardware, ~3x zlib.crc32) instead of crc32; older files are ignored
FORMAT = 2
_HEAD = struct.Struct(">qq")  # snapshot position, snapshot changelog offset
_ENTRY = struct.Struct(">cI")  # kind, count
_SIZE = struct.Struct(">I")
_MARK = struct.Struct(">qI")  # committed position, CRC-32C since the previous marker
REMOVED = -1  # a winner that is a tombstone


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[DeltaLog, _P], _R],
) -> Callable[Concatenate[DeltaLog, _P], _R]:
    def run(self: DeltaLog, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    run.__doc__ = method.__doc__
    return run


@dataclass(frozen=True)
class Delta:
    """What restore step 2 found for one partition: ``records`` precede the marker used;
    ``blocks`` are its frames, ``(frames, frame size)`` per entry, read in place;
    ``winners`` maps each stream to the frame that the changelog's restore rule picks
    (:mod:`pipeline.kafka_io.changelog`) as ``block << 32 | row`` (one int: a restore
    sorts 100k of them as an array; -1: a tombstone removed it), ``offsets`` to that
    frame's source offset; ``removed`` holds the streams with a tombstone in the delta (a
    frame that wins after one replaces any older state)."""

    partition: int
    records: int = 0
    blocks: list[tuple[memoryview, int]] = field(default_factory=list)
    winners: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)


class _Open:
    """One partition's delta being written."""

    def __init__(self, path: Path, f: BinaryIO, position: int, crc: int) -> None:
        self.path = path
        self.f = f
        self.committed = position  # the snapshot's until a commit says more
        self.records = 0
        self.unmarked = 0  # records since the last marker
        self.crc = crc
        self.closed = False

    def write(self, *parts: bytes) -> None:
        for data in parts:
            self.f.write(data)
            self.crc = crc32c(data, self.crc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.f.close()


class DeltaLog:
    """The delta files of one changelog topic under ``root`` (beside the snapshots), and
    the ones this scorer is writing (write steps 1-4)."""

    def __init__(self, root: Path, changelog: str) -> None:
        self.changelog = changelog
        self.dir = root / changelog
        # partition → the delta being appended to; staged ones by (partition, position).
        self._open: dict[int, _Open] = {}
        self._files: dict[tuple[int, int], _Open] = {}
        # The snapshot thread publishes (step 4) while the poll loop appends.
        self._lock = threading.RLock()
        self.appended = 0  # records appended, for tests and logs
        self.append_s = 0.0  # time spent appending and marking, for benchmarks

    def path(self, partition: int) -> Path:
        return self.dir / f"{partition}.delta"

    # -- writing ---------------------------------------------------------------------

    @_locked
    def open(self, partition: int, position: int, changelog_offset: int) -> None:
        """Write step 1: a delta for the snapshot of ``partition`` taken at ``position``
        whose changelog offset is ``changelog_offset``."""
        self._stop(partition)
        old = self._files.pop((partition, position), None)
        if old is not None:  # a second snapshot at one position: the newer one's delta
            self._delete(old)
        head = file_head(MAGIC, FORMAT, self.changelog, _HEAD.pack(position, changelog_offset))
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f"{partition}.delta.{os.getpid()}-{next(_TMP_IDS)}.tmp"
            f = open(path, "wb")  # noqa: SIM115 (open until step 4 stops it)
            f.write(head)
            # To the page cache now: a delta published before its first marker (an idle
            # partition's) and then killed would otherwise be an empty file.
            f.flush()
        except OSError as exc:
            # An optimisation failing: restores read more of the changelog.
            log.warning("local delta of partition %d not written: %s", partition, exc)
            return
        d = _Open(path, f, position, crc32c(head))
        self._open[partition] = d
        self._files[(partition, position)] = d

    @_locked
    def frames(
        self,
        parts: npt.NDArray[np.int64],
        keys: Sequence[bytes],
        pick: npt.NDArray[np.int64],
        data: bytes,
        size: int,
    ) -> None:
        """Write step 2 for a block of frames (``size`` bytes each) of the streams
        ``keys[pick]``, in input partitions ``parts[pick]``."""
        if not self._open or not len(pick) or size <= 0:
            return
        frames = np.frombuffer(data, f"V{size}")
        of = parts[pick]
        for p in np.unique(of).tolist():
            d = self._writer(p)
            if d is None:
                continue
            rows = np.flatnonzero(of == p)
            picked = [keys[i] for i in pick[rows].tolist()]
            self._append(d, b"F", picked, _SIZE.pack(size), frames[rows].tobytes())

    @_locked
    def tombstones(self, keys: Sequence[bytes], parts: Sequence[int]) -> None:
        """Write step 2 for tombstones of streams ``keys`` in input partitions ``parts``."""
        if not self._open or not keys:
            return
        arr = np.asarray(parts, np.int64)
        for p in np.unique(arr).tolist():
            d = self._writer(p)
            if d is not None:
                self._append(d, b"T", [keys[i] for i in np.flatnonzero(arr == p).tolist()])

    @_locked
    def mark(self, committed: dict[int, int]) -> None:
        """Write step 3: every send so far is acknowledged and these input offsets are
        committed; each open delta with records since its last marker gets one."""
        started = time.perf_counter()
        self._mark(committed)
        self.append_s += time.perf_counter() - started

    def _mark(self, committed: dict[int, int]) -> None:
        for p, d in list(self._open.items()):
            d.committed = max(d.committed, committed.get(p, d.committed))
            if not d.unmarked:
                continue
            entry = _ENTRY.pack(b"M", d.records)
            try:
                d.f.write(entry)
                d.f.write(_MARK.pack(d.committed, crc32c(entry, d.crc)))
                d.f.flush()  # to the page cache: a kill -9 of the process loses nothing
            except OSError as exc:
                self._fail(p, exc)
                continue
            d.crc, d.unmarked = 0, 0

    @_locked
    def publish(self, partition: int, position: int) -> None:
        """Write step 4: the snapshot of ``partition`` taken at ``position`` is published;
        so is its delta (the others of the partition are of no use now)."""
        for (p, pos), d in list(self._files.items()):
            if p != partition:
                continue
            if pos == position:
                try:
                    os.replace(d.path, self.path(p))
                except OSError as exc:
                    log.warning("local delta of partition %d not published: %s", p, exc)
                    del self._files[(p, pos)]
                    self._delete(d)
                    continue
                d.path = self.path(p)
            elif pos < position:
                del self._files[(p, pos)]
                self._delete(d)

    @_locked
    def drop(self, partition: int, position: int) -> None:
        """Write step 4: the snapshot taken at ``position`` will never be published."""
        d = self._files.pop((partition, position), None)
        if d is not None:
            self._delete(d)

    @_locked
    def discard(self, partition: int) -> None:
        """The published delta of ``partition`` extends a snapshot that a newer one (a
        standby's: pipeline.scorer.standby) replaced: it is deleted."""
        with contextlib.suppress(FileNotFoundError):
            self.path(partition).unlink()

    @_locked
    def stop(self, partitions: set[int] | None = None) -> None:
        """Write step 4: nothing more is appended to these partitions' deltas (all: after a
        Kafka failure, or when stopping); their files stay for a restore."""
        for p in list(self._open if partitions is None else partitions & set(self._open)):
            self._stop(p)

    def _writer(self, partition: int) -> _Open | None:
        if partition < 0:
            # A record whose partition the client chooses: it may land in any partition's
            # changelog, below offsets a delta would skip; no delta may be trusted after it.
            self.stop()
            return None
        return self._open.get(partition)

    def _append(self, d: _Open, kind: bytes, keys: list[bytes], *rest: bytes) -> None:
        started = time.perf_counter()
        lens = np.fromiter(map(len, keys), ">u4", len(keys)).tobytes()
        try:
            d.write(_ENTRY.pack(kind, len(keys)), *rest[:1], lens, b"".join(keys), *rest[1:])
        except OSError as exc:
            self._fail(next(p for p, o in self._open.items() if o is d), exc)
            return
        finally:
            self.append_s += time.perf_counter() - started
        d.records += len(keys)
        d.unmarked += len(keys)
        self.appended += len(keys)

    def _stop(self, partition: int) -> None:
        d = self._open.pop(partition, None)
        if d is not None:
            d.close()

    def _fail(self, partition: int, exc: OSError) -> None:
        log.warning("local delta of partition %d stopped: %s", partition, exc)
        self._stop(partition)

    def _delete(self, d: _Open) -> None:
        for p, o in list(self._open.items()):
            if o is d:
                del self._open[p]
        d.close()
        with contextlib.suppress(OSError):
            if d.path.name.endswith(".tmp"):
                d.path.unlink()

    # -- reading ---------------------------------------------------------------------

    def read(self, partition: int, position: int, changelog_offset: int, committed: int) -> Delta:
        """Restore steps 1-2 for ``partition``, whose snapshot (taken at ``position``,
        covering the changelog up to ``changelog_offset``) is being used with committed
        offset ``committed``; no records if there is no usable delta."""
        path = self.path(partition)
        try:
            buf = mapped(path)
        except FileNotFoundError:
            return Delta(partition)
        except OSError as exc:
            log.warning("local delta %s ignored: %s", path, exc)
            return Delta(partition)
        try:
            return self._parse(partition, buf, (position, changelog_offset), committed)
        except (ValueError, UnicodeDecodeError, struct.error) as exc:
            log.warning("local delta %s ignored: %s", path, exc)
            return Delta(partition)

    def _parse(
        self, partition: int, buf: memoryview, snapshot: tuple[int, int], committed: int
    ) -> Delta:
        at = read_head(buf, MAGIC, FORMAT, self.changelog)
        if _HEAD.unpack_from(buf, at) != snapshot:
            return Delta(partition)  # it extends another snapshot
        at += _HEAD.size
        entries: list[_Entry] = []
        used: list[_Entry] = []
        records, start = 0, 0  # the first segment's checksum includes the head
        try:
            while at + _ENTRY.size <= len(buf):
                kind, count = _ENTRY.unpack_from(buf, at)
                at += _ENTRY.size
                if kind == b"M":
                    pos, want = _MARK.unpack_from(buf, at)
                    if crc32c(buf[start:at]) != want or count != records + sum(
                        len(e[1]) for e in entries
                    ):
                        break  # a partial or damaged write: the last good marker stands
                    at += _MARK.size
                    start = at
                    if pos > committed:
                        break  # not committed (the group's offsets went back): stop here
                    used.extend(entries)
                    records, entries = count, []
                    continue
                size = 0
                if kind == b"F":
                    (size,) = _SIZE.unpack_from(buf, at)
                    at += _SIZE.size
                elif kind != b"T":
                    break
                lens = np.frombuffer(buf, ">u4", count, at).astype(np.int64)
                at += 4 * count
                ends = np.cumsum(lens).tolist()
                keys = bytes(buf[at : at + (ends[-1] if count else 0)])
                at += len(keys)
                ids = decode_ids(keys, ends, lens.tolist())
                body = buf[at : at + size * count]
                if len(body) != size * count:
                    break
                at += size * count
                entries.append((kind, ids, body, size))
        except (ValueError, struct.error, UnicodeDecodeError):
            pass  # a partial or damaged write: the last good marker stands
        return _winners(partition, records, used, committed)


def file_head(magic: bytes, fmt: int, changelog: str, fields: bytes) -> bytes:
    """The head a local file starts with: ``magic | u8 format | u16 len + changelog
    topic``, then its own ``fields``."""
    name = changelog.encode()
    return b"".join((magic, bytes([fmt]), struct.pack(">H", len(name)), name, fields))


def read_head(data: memoryview, magic: bytes, fmt: int, changelog: str) -> int:
    """Where a local file's own fields start, after a :func:`file_head` whose magic,
    format and topic it checks (ValueError, saying which, if one differs)."""
    if bytes(data[:4]) != magic or len(data) < 7 or data[4] != fmt:
        raise ValueError("not a Statecast local state file of this kind and format")
    (n,) = struct.unpack_from(">H", data, 5)
    topic = bytes(data[7 : 7 + n]).decode()
    if topic != changelog:
        raise ValueError(f"it belongs to changelog {topic!r}")
    return 7 + int(n)


def mapped(path: Path) -> memoryview:
    """A file's bytes where the page cache holds them, not copied (a minute of deltas or a
    snapshot of 100k streams is hundreds of MB); the map lives as long as views of it do."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not size:
            return memoryview(b"")
        return memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ))


def decode_ids(keys: bytes, ends: list[int], lens: list[int]) -> list[str]:
    """Stream ids from their concatenated UTF-8 keys: decoded at once where they are ASCII
    (then byte and character offsets agree), else one by one."""
    text = keys.decode()
    if len(text) == len(keys):
        return [text[e - k : e] for e, k in zip(ends, lens, strict=True)]
    return [keys[e - k : e].decode() for e, k in zip(ends, lens, strict=True)]


_Entry = tuple[bytes, list[str], memoryview, int]  # kind, stream ids, frames, frame size


def _winners(partition: int, records: int, entries: list[_Entry], committed: int) -> Delta:
    """Restore step 3's rule over the entries (the changelog's): per stream, of the frames
    after its last tombstone, the one with the highest source offset below ``committed``;
    a tombstone removes. A delta has one writer, which applies each stream's inputs in
    order, so a stream's frames in it rise in source offset and the newest is the highest
    (a writer that falls behind is stopped at write step 4 and starts a new delta)."""
    out = Delta(partition, records)
    for kind, ids, body, size in entries:
        if kind == b"T":
            out.winners.update(dict.fromkeys(ids, REMOVED))
            out.removed.update(ids)
            continue
        try:
            offsets = block_offsets(body, size)
        except ValueError:
            continue  # a malformed block: an older frame (if any) stands
        b = len(out.blocks)
        out.blocks.append((body, size))
        rows = np.flatnonzero(offsets < committed)
        won = [ids[j] for j in rows.tolist()]
        out.winners.update(zip(won, (rows | (b << 32)).tolist(), strict=True))
        out.offsets.update(zip(won, offsets[rows].tolist(), strict=True))
    return out
