"""The restore protocol: per-stream state of newly assigned partitions, from the changelog.

Runs on start and on every partition assignment, right after the poll that delivers it
and before any record of those partitions is processed:

1. read the group's committed offset C of each newly assigned input partition;
2. read the changelog partition from the beginning (read_committed in exactly-once), or,
   with a usable local snapshot (:mod:`pipeline.scorer.local_state`), from the offset it
   covers, over its frames; with a local delta of that snapshot as well
   (:mod:`pipeline.scorer.local_delta`), the delta's records first and the changelog only
   after the offsets they cover;
3. for each stream keep the state the changelog's restore rule picks (of the frames
   after its last tombstone, the highest source offset below C), across the snapshot,
   the delta and the changelog's tail in that order;
4. install those states; a state from another model version gets its LSTM state
   rebuilt from its recent inputs. A damaged or mismatched frame never stops a restore:
   it is skipped and counted, and its stream cold-starts (``statecast_restore_skipped``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from pipeline.config import ScorerConfig
from pipeline.engine.serving import ServedModel
from pipeline.engine.state import Columns
from pipeline.kafka_io import Consumer, TopicPartition
from pipeline.kafka_io.changelog import (
    NO_STATE,
    TOMBSTONE_AT,
    Found,
    block_offsets,
    decode_block,
    decode_columns,
    frame_layout,
    read_partitions,
    supersedes,
)
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.local_delta import REMOVED, Delta, DeltaLog
from pipeline.scorer.local_state import LocalState, Seed
from pipeline.scorer.routing import Router

__all__ = ["Restorer", "layered"]

log = logging.getLogger(__name__)
# Streams installed at a time from local files: big enough that the per-install cost is
# small, small enough that the copies reuse memory (2048 frames of 3 KB: 6 MB).
INSTALL_CHUNK = 2048
_T = TypeVar("_T")
_R = TypeVar("_R")


class Restorer:
    def __init__(
        self,
        config: ScorerConfig,
        changelog: str,
        models: dict[str, ServedModel],
        router: Router,
        metrics: ScorerMetrics,
        local: LocalState | None = None,
        deltas: DeltaLog | None = None,
    ) -> None:
        self.config = config
        self.changelog = changelog
        self.models = models
        self.router = router
        self.metrics = metrics
        self.local = local
        self.deltas = deltas
        self.restored_streams = 0
        self.changelog_records = 0  # read by restores so far
        self.local_records = 0  # ... and from local deltas

    def restore(
        self, consumer: Consumer, assigned: set[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """Steps 1-4 for ``assigned``; returns their committed offsets."""
        started = time.monotonic()
        # 1. Committed offsets of the new partitions.
        committed = consumer.committed(assigned)
        wanted = {tp.partition: off for tp, off in committed.items()}
        # 2. From a local snapshot's offset, where one is usable.
        seeds, ends = self._seeds(consumer, wanted)
        # Room for the snapshots' streams, its pages faulted in beside the reading below.
        prefault = self._prefault(sum(len(s.ids) for s in seeds))
        try:
            # ... and the local deltas that extend them: the changelog is read after them.
            start = {s.partition: s.changelog_offset for s in seeds}
            deltas: list[Delta] = []
            for s, d in zip(seeds, self._read_deltas(seeds, wanted), strict=True):
                if s.changelog_offset + d.records > ends[s.partition]:
                    log.warning(
                        "local delta of partition %d holds more records than its changelog: "
                        "ignored, the changelog is read instead",
                        s.partition,
                    )
                    continue
                start[s.partition] += d.records
                deltas.append(d)
            # 2. The changelog's tail after them. Under exactly-once ``ends`` are last
            # stable offsets, short of a transaction whose offsets the group may already
            # hold (read_to_end waits for it): no partition is skipped by them.
            exactly_once = self.config.guarantee == "exactly-once"
            tail, records = read_partitions(
                self.config.kafka,
                self.changelog,
                wanted,
                read_committed=exactly_once,
                start=start,
                ends=None if exactly_once else ends,
            )
            # 3. Across the layers, in log order (snapshot, delta, changelog tail), each
            # stream's state by the same rule.
            newer, stale_deltas, stale_tail = layered(seeds, deltas, tail)
        finally:
            # Nothing may use the new rows while the thread writes them (a failed read
            # leaves them to the next restore).
            if prefault is not None:
                prefault.join()
        # 4. Install, per served model, as columns: the snapshots' streams that neither the
        # deltas nor the changelog's tail replaced or removed, the deltas' winners that
        # stand, then the tail's.
        if len(self.models) == 1:
            # Room for every stream at once (several models: their shares are not known
            # before the frames are decoded, so their stores grow as they fill).
            incoming = newer.union(*(s.ids for s in seeds))
            next(iter(self.models.values())).store.reserve(len(incoming))
        now = time.time()
        restored = skipped = 0
        for ids, parts, cols in itertools.chain(
            self._seeded(seeds, newer),
            _from_deltas(deltas, stale_deltas),
            _decoded(tail, stale_tail),
        ):
            if cols is None:
                skipped += len(ids)
                continue
            done, dropped = self._install(ids, parts, cols, now)
            restored, skipped = restored + done, skipped + dropped
        local_records = sum(d.records for d in deltas)
        self.restored_streams += restored
        if skipped:
            self.metrics.restore_skipped.inc(skipped)
        elapsed = time.monotonic() - started
        self.metrics.restore.set(elapsed)
        log.info(
            "restored %d streams from %d changelog records of partitions %s "
            "(local snapshots: %d of them, %d frames; local deltas: %d records) in %.2fs",
            restored,
            records,
            sorted(tp.partition for tp in assigned),
            len(seeds),
            sum(len(s.ids) for s in seeds),
            local_records,
            elapsed,
        )
        self.local_records += local_records
        self.changelog_records += records
        self.metrics.restore_records.inc(records)
        return committed

    def _prefault(self, streams: int) -> threading.Thread | None:
        """With one served model, room for ``streams`` streams and a tenth more (the
        deltas and the changelog's tail add few), whose pages a thread faults in while
        the restore reads (:meth:`StateStore.prefault`); joined before step 4."""
        if len(self.models) != 1 or not streams:
            return None
        store = next(iter(self.models.values())).store
        rows = store.reserve(streams + streams // 10, touch=False)
        thread = threading.Thread(target=store.prefault, args=(rows,), name="prefault")
        thread.start()
        return thread

    def _read_deltas(self, seeds: list[Seed], committed: dict[int, int | None]) -> list[Delta]:
        """Step 2's local deltas of the seeds' partitions (a minute of frames: hundreds of
        MB each), two at a time."""
        log_ = self.deltas
        if log_ is None:
            return [Delta(s.partition) for s in seeds]

        def read(s: Seed) -> Delta:
            assert log_ is not None
            at = committed[s.partition] or 0  # a snapshot is only used where set
            return log_.read(s.partition, s.position, s.changelog_offset, at)

        return _two_at_a_time(read, seeds)

    def _seeds(
        self, consumer: Consumer, committed: dict[int, int | None]
    ) -> tuple[list[Seed], dict[int, int]]:
        """Step 2's local snapshots, and the changelog's end offsets."""
        usable = {p: c for p, c in committed.items() if c}
        if self.local is None or not usable:
            return [], {}
        ends = consumer.end_offsets(self.changelog, sorted(usable))
        local = self.local

        def seed(pc: tuple[int, int]) -> Seed | None:
            return local.seed(pc[0], pc[1], ends[pc[0]])

        seeds = _two_at_a_time(seed, sorted(usable.items()))
        return [s for s in seeds if s is not None], ends

    def _seeded(
        self, seeds: list[Seed], newer: set[str]
    ) -> Iterator[tuple[list[str], npt.NDArray[np.int64], Columns | None]]:
        """The snapshots' streams, block by block, without those the deltas or the
        changelog's tail have (``newer``)."""
        for s in seeds:
            row = 0
            for size, block in s.blocks:
                # In chunks: a chunk's columns are views of the file where they can be, and
                # what is copied stays small (fresh memory by the hundred MB is slow).
                for at in range(0, len(block), INSTALL_CHUNK * size):
                    data = block[at : at + INSTALL_CHUNK * size]
                    n = len(data) // size
                    ids, row = s.ids[row : row + n], row + n
                    cols = decode_block(data, size)
                    if cols is None:
                        yield ids, np.empty(0, np.int64), None
                        continue
                    keep = [j for j, sid in enumerate(ids) if sid not in newer]
                    if len(keep) < n:
                        cols = cols.take(np.asarray(keep, np.int64))
                        ids = [ids[j] for j in keep]
                    yield ids, np.full(len(ids), s.partition, np.int64), cols

    def _install(
        self, ids: list[str], parts: npt.NDArray[np.int64], cols: Columns, now: float
    ) -> tuple[int, int]:
        """Streams of one layout into the models they are served by."""
        if cols.model in self.models:
            return self.models[cols.model].restore_columns(ids, parts, cols, now)
        # A model no longer served: where its streams are routed now.
        names = [self.router.model_for(sid.encode()) for sid in ids]
        restored = skipped = 0
        for m in set(names):
            pick = np.asarray([j for j, n in enumerate(names) if n == m], np.int64)
            done, dropped = self.models[m].restore_columns(
                [ids[j] for j in pick.tolist()], parts[pick], cols.take(pick), now
            )
            restored, skipped = restored + done, skipped + dropped
        return restored, skipped


def _two_at_a_time(read: Callable[[_T], _R], items: list[_T]) -> list[_R]:
    """``read`` of each local file's item, two at a time: a file's checksum (hundreds of
    MB) runs without the GIL beside the parsing of another."""
    if len(items) < 2:
        return [read(i) for i in items]
    with ThreadPoolExecutor(2, thread_name_prefix="local-read") as pool:
        return list(pool.map(read, items))


def layered(
    seeds: list[Seed], deltas: list[Delta], tail: Mapping[str, Found | None]
) -> tuple[set[str], set[str], set[str]]:
    """Restore step 3 across the layers a restore reads, in their log order: a snapshot's
    frames, then its delta's winners, then the changelog tail's. A later layer's winner
    replaces a stream's state where :func:`supersedes` says so (a tombstone; a frame after
    one; a frame at the same or a higher source offset). Returns the streams whose
    snapshot frame is replaced (``newer``), then the deltas' and the tail's winners that do
    not stand (replaced by the tail's, or older than what they follow)."""
    if not tail and not any(d.winners for d in deltas):
        return set(), set(), set()
    below: dict[str, int] = {}  # each stream's source offset so far (or NO_STATE)
    for s in seeds:
        row = 0
        for size, block in s.blocks:
            n = len(block) // size
            with contextlib.suppress(ValueError):  # a malformed block: it restores nothing
                below.update(
                    zip(s.ids[row : row + n], block_offsets(block, size).tolist(), strict=True)
                )
            row += n
    newer: set[str] = set()
    stale: list[set[str]] = [set(), set()]  # the deltas', the tail's
    layers = [
        (
            list(d.winners),
            [None if ref == REMOVED else d.offsets[sid] for sid, ref in d.winners.items()],
            [sid in d.removed for sid in d.winners],
        )
        for d in deltas
    ]
    layers.append(
        (
            list(tail),
            [None if f is None else f[2] for f in tail.values()],
            [f is None or f[3] for f in tail.values()],
        )
    )
    last = len(layers) - 1
    for i, (names, offsets, fresh) in enumerate(layers):
        wins = supersedes(
            np.fromiter((TOMBSTONE_AT if o is None else o for o in offsets), np.int64, len(names)),
            np.asarray(fresh, bool),
            np.fromiter((below.get(sid, NO_STATE) for sid in names), np.int64, len(names)),
        )
        won = np.flatnonzero(wins).tolist()
        names_won = [names[j] for j in won]
        if i == last:
            stale[0].update(newer.intersection(names_won))  # deltas' winners the tail replaced
        newer.update(names_won)
        below.update(
            zip(names_won, (NO_STATE if (o := offsets[j]) is None else o for j in won), strict=True)
        )
        stale[i == last].update(names[j] for j in np.flatnonzero(~wins).tolist())
    return newer, stale[0], stale[1]


def _from_deltas(
    deltas: list[Delta], stale: set[str]
) -> Iterator[tuple[list[str], npt.NDArray[np.int64], Columns | None]]:
    """The deltas' winning frames that stand, as columns: picked from the blocks where the
    file holds them, ``INSTALL_CHUNK`` frames of one layout at a time."""
    for d in deltas:
        names = list(d.winners)
        refs = np.fromiter(d.winners.values(), np.int64, len(names))
        keep = refs != REMOVED
        if stale:
            keep &= np.fromiter((sid not in stale for sid in names), bool, len(names))
        pick = np.flatnonzero(keep)
        if not len(pick):
            continue
        pick = pick[np.argsort(refs[pick], kind="stable")]  # by block, then row
        refs = refs[pick]
        blocks, rows = refs >> 32, refs & 0xFFFFFFFF
        starts = np.flatnonzero(np.diff(blocks, prepend=-1))
        # Each block's share of ``pick``, grouped by the blocks' frame layouts.
        layouts: dict[tuple[object, ...], list[tuple[int, int, int]]] = {}
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(pick)], strict=True):
            b = int(blocks[lo])
            block, size = d.blocks[b]
            try:
                layouts.setdefault(frame_layout(block[:size]), []).append((b, lo, hi))
            except ValueError:
                yield [names[i] for i in pick[lo:hi].tolist()], np.empty(0, np.int64), None
        for spans in layouts.values():
            size = d.blocks[spans[0][0]][1]
            order = np.concatenate([np.arange(lo, hi) for _, lo, hi in spans])
            owner = np.concatenate([np.full(hi - lo, b) for b, lo, hi in spans])
            for at in range(0, len(order), INSTALL_CHUNK):
                part, whose = order[at : at + INSTALL_CHUNK], owner[at : at + INSTALL_CHUNK]
                out = np.empty((len(part), size), np.uint8)
                for b in np.unique(whose).tolist():
                    sel = np.flatnonzero(whose == b)
                    # Rows of bytes: numpy copies them ~10x faster than np.take of void items.
                    src = np.frombuffer(d.blocks[b][0], np.uint8).reshape(-1, size)
                    out[sel] = src[rows[part[sel]]]
                yield (
                    [names[i] for i in pick[part].tolist()],
                    np.full(len(part), d.partition, np.int64),
                    decode_block(out.reshape(-1).data, size),
                )


def _decoded(
    tail: dict[str, Found | None], stale: set[str]
) -> Iterator[tuple[list[str], npt.NDArray[np.int64], Columns | None]]:
    """The changelog's winning frames that stand as columns, per layout (malformed ones:
    None)."""
    live = [(sid, v) for sid, v in tail.items() if v is not None and sid not in stale]
    groups, bad = decode_columns([v[0] for _, v in live])
    parts = np.fromiter((v[1] for _, v in live), np.int64, len(live))
    for g in groups:
        # Rows of the columns: positions in ``live``, as the ids and partitions are taken.
        yield (
            [live[i][0] for i in g.rows],
            parts[g.rows],
            Columns(g.model, g.version, list(range(len(g))), g.cols),
        )
    if bad:
        yield [live[i][0] for i in bad], np.empty(0, np.int64), None
