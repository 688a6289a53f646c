"""Standby snapshots: a member keeps the local snapshots of the partitions it does not own
current, so that taking one of them over (its owner died or left) is a warm restore.

Kafka Streams' standby replicas keep copies of other tasks' state stores by tailing their
changelogs. Here a member with ``standby`` on refreshes, every ``standby_interval_s``, the
local snapshot file (:mod:`pipeline.scorer.local_state`) of each input partition it does
not own, from that partition's changelog. When the group's assignment gives it one of
them, the restore reads that snapshot and only the changelog written since, as a warm
restart does. Nothing stays in memory between refreshes: the copies are the files.

Standby protocol, for each input partition p the member does not own (:class:`Standby`):

1. in the poll loop: note p's ownership epoch, then read the group's committed offset C
   of p (nothing committed: p is skipped) and the changelog's end;
2. in a background thread: take p's newest local snapshot usable at C (local_state's
   restore step 1; none: the changelog from its beginning) and read the changelog from
   the offset S it covers (:func:`pipeline.kafka_io.changelog.read_covered`): the restore
   rule's winners below C among the records before the first frame at or above C, and
   the offset E where that run ends;
3. stage p's new snapshot at input position C covering the changelog up to E: the old
   snapshot's frames that no winner replaces or removes, and the winners that stand
   (the restore's layering, :func:`pipeline.scorer.restore.layered`); nothing if E = S;
4. publish it, and delete p's local delta (it extends the snapshot being replaced), only
   if p's epoch is still the one of step 1 (neither assigned to this member nor given up
   by it since) and the member is not stopping. An owner writes its partitions'
   snapshots itself, and :meth:`Standby.claim` (before a restore) waits for a publish in
   progress, so a restore reads whole files.

Why the new file is a valid snapshot (local_state's restore protocol): its position C was
committed, so every later restore's committed offset C' is at least C. It holds what a
restore at C would install from the old snapshot and the changelog from S to E. Every
record in [S, E) is a tombstone or a frame below C, hence below C': a restore at C' picks
among them what the rule at C picked, and applies the records from E on over the result
in log order, as one that read from S would. The old snapshot's own argument covers the
records before S.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError, StatecastError
from pipeline.kafka_io import Consumer, TopicPartition
from pipeline.kafka_io.changelog import Found, block_offsets, frame_layout, read_covered
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.local_delta import DeltaLog
from pipeline.scorer.local_state import LocalState, Seed
from pipeline.scorer.restore import layered

__all__ = ["Standby"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    """What step 1 read for one refresh."""

    committed: dict[int, int]  # partition → C
    ends: dict[int, int]  # partition → the changelog's end
    epochs: dict[int, int]  # partition → its ownership epoch


class Standby:
    """Standby steps 1 in the poll loop (:meth:`refresh`), 2-4 in a background thread."""

    def __init__(
        self,
        kafka: KafkaConfig,
        input_topic: str,
        local: LocalState,
        deltas: DeltaLog | None,
        interval_s: float,
        *,
        read_committed: bool,
        metrics: ScorerMetrics | None = None,
    ) -> None:
        self.kafka = kafka
        self.input_topic = input_topic
        self.local = local
        self.deltas = deltas
        self.interval_s = interval_s
        self.read_committed = read_committed
        self.metrics = metrics
        # The first refresh waits an interval: at start the member is usually still being
        # assigned its own partitions (a refresh before that stands by for them too: valid
        # snapshots, which their restore then uses).
        self._last = time.monotonic()
        self._closed = False
        self._lock = threading.Lock()
        self._owned: set[int] = set()
        self._epoch: dict[int, int] = {}  # partition → claims and releases so far
        self._thread: threading.Thread | None = None
        self.refreshes = 0  # refreshes done (for tests and logs)
        self.published = 0  # partition files published
        self.records = 0  # changelog records read
        self.refresh_s = 0.0  # the last refresh's steps 2-4

    def due(self, now: float) -> bool:
        return now - self._last >= self.interval_s

    def claim(self, partitions: Iterable[int]) -> None:
        """These partitions are this member's now (before their restore): a standby refresh
        leaves them alone, and one publishing now finishes first."""
        with self._lock:
            for p in partitions:
                self._owned.add(p)
                self._epoch[p] = self._epoch.get(p, 0) + 1

    def release(self, partitions: Iterable[int] | None = None) -> None:
        """These partitions (None: all) are no longer this member's: the next refresh keeps
        their snapshots current."""
        with self._lock:
            for p in list(self._owned) if partitions is None else partitions:
                self._owned.discard(p)
                self._epoch[p] = self._epoch.get(p, 0) + 1

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def refresh(
        self, consumer: Consumer, changelog: str, partitions: Iterable[int], now: float
    ) -> None:
        """Step 1 for the partitions not owned, then 2-4 in the background (skipped while
        the previous refresh still runs)."""
        self._last = now
        if self.running:
            return
        with self._lock:
            others = sorted(set(partitions) - self._owned)
            epochs = {p: self._epoch.get(p, 0) for p in others}
        if not others or self._closed:
            return
        # 1. The group's committed offsets and the changelog's end.
        try:
            got = consumer.committed({TopicPartition(self.input_topic, p) for p in others})
            ends = consumer.end_offsets(changelog, others)
        except KafkaError as exc:
            log.warning("standby refresh skipped: %s", exc)
            return
        committed = {tp.partition: off for tp, off in got.items() if off}
        if not committed:
            return
        job = _Job(committed, {p: ends[p] for p in committed}, epochs)
        self._thread = threading.Thread(
            target=self._run, args=(job,), name="statecast-standby", daemon=True
        )
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def close(self, timeout_s: float = 5.0) -> None:
        """Nothing more is published; a refresh still reading (a broker gone: up to its
        read's timeout) is not waited for beyond ``timeout_s``, so that stopping stays
        prompt (its temporary file is swept later)."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, job: _Job) -> None:
        started = time.monotonic()
        read = self.records
        try:
            published = self._steps(job)
        except (OSError, ValueError, StatecastError) as exc:
            # A standby is an optimisation: without it, a failover restores cold.
            log.warning("standby refresh failed (%s): a takeover reads the changelog", exc)
            return
        self.refreshes += 1
        self.refresh_s = time.monotonic() - started
        if published:
            log.info(
                "standby snapshots of partitions %s published (%d streams; %d changelog "
                "records read) in %.2fs",
                sorted(published),
                sum(published.values()),
                self.records - read,
                self.refresh_s,
            )

    def _steps(self, job: _Job) -> dict[int, int]:
        """Steps 2-4; returns the streams of each partition whose snapshot it published."""
        # 2. From each partition's usable snapshot, the changelog up to its first frame of
        # an input not committed yet.
        seeds: dict[int, Seed | None] = {
            p: self.local.seed(p, c, job.ends[p]) for p, c in job.committed.items()
        }
        start = {p: s.changelog_offset if s else 0 for p, s in seeds.items()}
        winners, covered, records = read_covered(
            self.kafka,
            self.local.changelog,
            job.committed,
            start,
            read_committed=self.read_committed,
        )
        self.records += records
        if self.metrics is not None:
            self.metrics.standby_records.inc(records)
        published: dict[int, int] = {}
        for p, c in sorted(job.committed.items()):
            if covered[p] == start[p]:
                continue  # nothing new since the snapshot
            # 3. The snapshot's frames that stand and the winners that do.
            keys, blocks = _merged(seeds[p], winners[p])
            tmp = self.local.stage(p, c, covered[p], keys, blocks)
            # 4. Published only if the partition stayed another member's meanwhile.
            with self._lock:
                if self._closed or p in self._owned or self._epoch.get(p, 0) != job.epochs[p]:
                    tmp.unlink(missing_ok=True)
                    continue
                try:
                    self.local.publish(p, tmp)
                except OSError as exc:
                    log.warning("standby snapshot of partition %d not published: %s", p, exc)
                    tmp.unlink(missing_ok=True)
                    continue
                if self.deltas is not None:
                    self.deltas.discard(p)
            self.published += 1
            published[p] = len(keys)
            if self.metrics is not None:
                self.metrics.standby_published.set(time.time())
            log.debug(
                "standby snapshot of partition %d: %d streams at input offset %d, changelog "
                "offsets %d-%d",
                p,
                len(keys),
                c,
                start[p],
                covered[p],
            )
        return published


def _merged(
    seed: Seed | None, tail: dict[str, Found | None]
) -> tuple[list[bytes], list[tuple[int, bytes]]]:
    """Step 3: the keys and frame blocks of a snapshot holding ``seed``'s frames that the
    tail's winners do not replace or remove, then the tail's winners that stand."""
    seeds = [seed] if seed is not None else []
    newer, _, stale = layered(seeds, [], tail)
    keys: list[bytes] = []
    blocks: list[tuple[int, bytes]] = []
    if seed is not None:
        row = 0
        for size, data in seed.blocks:
            n = len(data) // size
            ids = seed.ids[row : row + n]
            row += n
            try:
                block_offsets(data, size)  # a malformed block restores nothing: dropped
            except ValueError:
                continue
            keep = np.fromiter((sid not in newer for sid in ids), bool, n)
            if keep.any():
                rows = np.frombuffer(data, np.uint8).reshape(n, size)[keep]
                keys.extend(sid.encode() for sid, k in zip(ids, keep.tolist(), strict=True) if k)
                blocks.append((size, rows.tobytes()))
    groups: dict[tuple[int, tuple[object, ...]], list[tuple[str, bytes]]] = {}
    for sid, found in tail.items():
        if found is None or sid in stale:
            continue
        frame = found[0]
        try:
            layout = frame_layout(frame)
        except ValueError:
            continue  # a malformed winner: its stream cold-starts, as a restore would have it
        groups.setdefault((len(frame), layout), []).append((sid, frame))
    for (size, _), frames in groups.items():
        keys.extend(sid.encode() for sid, _ in frames)
        blocks.append((size, b"".join(f for _, f in frames)))
    return keys, blocks
