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

import numpy as np

from pipeline.config import ScorerConfig
from pipeline.engine.serving import ServedModel
from pipeline.kafka_io import Consumer, TopicPartition
from pipeline.kafka_io.changelog import decode_columns, read_partitions
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.local_state import LocalState
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
        start, seed, ends = self._seeds(consumer, wanted)
        # 2.-3. Newest state below the committed offset, per stream.
        frames, records = read_partitions(
            self.config.kafka,
            self.changelog,
            wanted,
            read_committed=self.config.guarantee == "exactly-once",
            start=start,
            seed=seed,
            ends=ends,
        )
        # 4. Install, per served model, as columns.
        ids = list(frames)
        groups, bad = decode_columns([frame for frame, _ in frames.values()])
        parts = np.fromiter((part for _, part in frames.values()), np.int64, len(frames))
        now = time.time()
        restored, skipped = 0, len(bad)
        for g in groups:
            gids = [ids[i] for i in g.rows]
            if g.model in self.models:
                routed = {g.model: np.arange(len(g), dtype=np.int64)}
            else:  # a model no longer served: where its streams are routed now
                names = [self.router.model_for(sid.encode()) for sid in gids]
                routed = {
                    m: np.asarray([j for j, n in enumerate(names) if n == m], np.int64)
                    for m in set(names)
                }
            for m, pick in routed.items():
                sub = g.take(pick)
                done, dropped = self.models[m].restore_columns(
                    [gids[j] for j in pick.tolist()], parts[sub.rows], sub, now
                )
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
            len(start),
            len(seed),
            elapsed,
        )
        self.changelog_records += records
        return committed

    def _seeds(
        self, consumer: Consumer, committed: dict[int, int | None]
    ) -> tuple[dict[int, int], dict[str, tuple[bytes, int]], dict[int, int]]:
        """Step 2's local snapshots: changelog start offsets and frames, per partition, and
        the changelog's end offsets."""
        usable = {p: c for p, c in committed.items() if c}
        if self.local is None or not usable:
            return {}, {}, {}
        ends = consumer.end_offsets(self.changelog, sorted(usable))
        start: dict[int, int] = {}
        seed: dict[str, tuple[bytes, int]] = {}
        for p, c in sorted(usable.items()):
            s = self.local.seed(p, c, ends[p])
            if s is not None:
                start[p] = s.changelog_offset
                seed.update((sid, (frame, p)) for sid, frame in s.frames.items())
        return start, seed, ends
