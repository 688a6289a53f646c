"""The restore protocol: per-stream state of newly assigned partitions, from the changelog.

Runs on start and on every partition assignment, right after the poll that delivers it
and before any record of those partitions is processed:

1. read the group's committed offset C of each newly assigned input partition;
2. read the changelog partition from the beginning (read_committed in exactly-once), or,
   with a usable local snapshot (:mod:`pipeline.scorer.local_state`), from the offset it
   covers, over its frames;
3. for each stream keep the newest state whose source offset is below C;
4. install those states; a state from another model version gets its LSTM state
   rebuilt from its recent inputs. A damaged or mismatched frame never stops a restore:
   it is skipped and counted, and its stream cold-starts (``statecast_restore_skipped``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from pipeline.config import ScorerConfig
from pipeline.engine.serving import ServedModel
from pipeline.engine.state import Columns
from pipeline.kafka_io import Consumer, TopicPartition
from pipeline.kafka_io.changelog import decode_block, decode_columns, read_partitions
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.local_state import LocalState, Seed
from pipeline.scorer.routing import Router

__all__ = ["Restorer"]

log = logging.getLogger(__name__)


class Restorer:
    def __init__(
        self,
        config: ScorerConfig,
        changelog: str,
        models: dict[str, ServedModel],
        router: Router,
        metrics: ScorerMetrics,
        local: LocalState | None = None,
    ) -> None:
        self.config = config
        self.changelog = changelog
        self.models = models
        self.router = router
        self.metrics = metrics
        self.local = local
        self.restored_streams = 0
        self.changelog_records = 0  # read by restores so far

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
        # 2.-3. Newest state below the committed offset, per stream.
        tail, records = read_partitions(
            self.config.kafka,
            self.changelog,
            wanted,
            read_committed=self.config.guarantee == "exactly-once",
            start={s.partition: s.changelog_offset for s in seeds},
            ends=ends,
        )
        # 4. Install, per served model, as columns: the snapshots' streams the changelog's
        # tail did not replace or remove, then the tail's.
        now = time.time()
        restored = skipped = 0
        for ids, parts, cols in [*self._seeded(seeds, tail), *_decoded(tail)]:
            if cols is None:
                skipped += len(ids)
                continue
            done, dropped = self._install(ids, parts, cols, now)
            restored, skipped = restored + done, skipped + dropped
        self.restored_streams += restored
        if skipped:
            self.metrics.restore_skipped.inc(skipped)
        elapsed = time.monotonic() - started
        self.metrics.restore.set(elapsed)
        log.info(
            "restored %d streams from %d changelog records of partitions %s "
            "(local snapshots: %d of them, %d frames) in %.2fs",
            restored,
            records,
            sorted(tp.partition for tp in assigned),
            len(seeds),
            sum(len(s.ids) for s in seeds),
            elapsed,
        )
        self.changelog_records += records
        self.metrics.restore_records.inc(records)
        return committed

    def _seeds(
        self, consumer: Consumer, committed: dict[int, int | None]
    ) -> tuple[list[Seed], dict[int, int]]:
        """Step 2's local snapshots, and the changelog's end offsets."""
        usable = {p: c for p, c in committed.items() if c}
        if self.local is None or not usable:
            return [], {}
        ends = consumer.end_offsets(self.changelog, sorted(usable))
        seeds = [self.local.seed(p, c, ends[p]) for p, c in sorted(usable.items())]
        return [s for s in seeds if s is not None], ends

    def _seeded(
        self, seeds: list[Seed], tail: dict[str, tuple[bytes, int] | None]
    ) -> Iterator[tuple[list[str], npt.NDArray[np.int64], Columns | None]]:
        """The snapshots' streams, block by block, without those the tail has."""
        for s in seeds:
            row = 0
            for size, data in s.blocks:
                n = len(data) // size
                ids, row = s.ids[row : row + n], row + n
                cols = decode_block(data, size)
                if cols is None:
                    yield ids, np.empty(0, np.int64), None
                    continue
                keep = [j for j, sid in enumerate(ids) if sid not in tail]
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


def _decoded(
    tail: dict[str, tuple[bytes, int] | None],
) -> Iterator[tuple[list[str], npt.NDArray[np.int64], Columns | None]]:
    """The changelog's winning frames as columns, per layout (malformed ones: None)."""
    live = [(sid, v) for sid, v in tail.items() if v is not None]
    groups, bad = decode_columns([frame for _, (frame, _) in live])
    parts = np.fromiter((part for _, (_, part) in live), np.int64, len(live))
    for g in groups:
        # Rows of the columns: positions in ``live``, as the ids and partitions are taken.
        yield (
            [live[i][0] for i in g.rows],
            parts[g.rows],
            Columns(g.model, g.version, list(range(len(g))), g.cols),
        )
    if bad:
        yield [live[i][0] for i in bad], np.empty(0, np.int64), None
