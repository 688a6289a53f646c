"""The scorer entry object: a stateful Kafka consumer that scores every event.

One :class:`Scorer` per process, built from one :class:`~pipeline.config.ScorerConfig`.

Checkpoint protocol of one poll batch (the numbers recur in the code):

1. poll at most ``max_poll_records`` records (backpressure: nothing is read ahead);
   exactly-once: begin a transaction;
2. route each record by its key (the stream id) to a served model and decode it;
   invalid records become dead-letter entries with a reason;
3. score each model's events, batched across streams, sequential within a stream;
4. produce one score record per accepted event and one DLQ record per rejected one;
   at a checkpoint (every ``commit_interval_s``, 0 = every batch), also one changelog
   record per stream whose state changed since the last checkpoint (its partition is
   the input partition, and it carries the offset of the last input applied);
5. checkpoint: flush, i.e. wait until the broker acknowledged everything from step 4;
6. checkpoint: commit the next offset of every partition processed.
   Exactly-once: the transaction spans a checkpoint interval, and steps 5-6 are one
   transaction commit that includes the offsets.

Restore protocol (on start and on every partition assignment, right after the poll
that delivers it and before any record of the partition is processed):

1. read the group's committed offset C of each newly assigned input partition;
2. read the changelog partition from the beginning (read_committed in exactly-once);
3. for each stream keep the newest state whose source offset is below C;
4. install those states; a state from another model version gets its LSTM state
   rebuilt from its recent inputs.

At-least-once: a crash after step 5 and before step 6 replays the batch, which the
restore rule makes exact (the state is rewound with the offsets). A Kafka failure
(broker restart, network) aborts the batch, drops the in-memory state and rejoins
the group, restoring from the changelog, with backoff: no crash loop.
SIGTERM/SIGINT finish the current batch, flush, commit and close.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time
from collections import defaultdict
from types import FrameType

import numpy as np

from pipeline.config import ScorerConfig
from pipeline.engine.events import REASONS
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.engine.state import Snapshot
from pipeline.errors import KafkaError, RegistryError
from pipeline.kafka_io import (
    Consumer,
    Producer,
    Record,
    TopicPartition,
    ensure_topic,
    open_consumer,
    open_producer,
    partitions_for,
)
from pipeline.kafka_io.changelog import (
    changelog_topic,
    encode_snapshots,
    read_partitions,
    topic_config,
)
from pipeline.kafka_io.codec import decode_batch
from pipeline.kafka_io.model_topic import install_latest
from pipeline.kafka_io.outputs import dlq_headers, encode_scores
from pipeline.metrics import HealthServer, ScorerMetrics

__all__ = ["Scorer", "tune_gc"]

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0
ROUTE_CACHE_SIZE = 100_000
CHANGELOG_CHUNK = 2048  # streams per batch of changelog frames


def tune_gc() -> None:
    """Tune the garbage collector of a process that runs a scorer (the CLI and the bench
    call it; it is process-wide, so the Scorer object does not do it to its host).

    The hot path allocates and frees a few dozen short-lived, acyclic objects per event;
    at CPython's default threshold (700) the cyclic collector then runs every few dozen
    events and rescans the long-lived objects (models, state index). Moving what exists
    after start-up out of its reach and collecting less often measured ~10% more
    throughput (docs/benchmarks.md); reference counting still frees the garbage.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class Scorer:
    """Consumes sensor events, keeps LSTM state per stream, emits forecasts and anomaly scores."""

    def __init__(self, config: ScorerConfig, metrics: ScorerMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ScorerMetrics()
        self.registry = Registry(config.registry)
        self.exactly_once = config.guarantee == "exactly-once"
        self.changelog = changelog_topic(config.group) if config.changelog else None
        self._stop = threading.Event()
        self._routes = sorted(config.route_map.items(), key=lambda kv: -len(kv[0]))
        names = {config.model, *config.route_map.values()}
        self.models: dict[str, ServedModel] = {
            name: ServedModel(
                name,
                self.registry,
                threads=config.intra_op_threads,
                capacity=config.state_capacity,
                replay_steps=config.replay_steps,
                warmup_steps=config.warmup_steps,
                gap_reset_s=config.gap_reset_s,
                late_tolerance_s=config.late_tolerance_s,
                on_infer=self.metrics.inference.observe,
            )
            for name in sorted(names)
        }
        for m in self.models.values():
            self.metrics.model_info.labels(m.name).info({"version": m.version})
            # Labelled series exist from the start (at 0), so rates and alerts see them.
            for family in (
                self.metrics.scored,
                self.metrics.anomalies,
                self.metrics.swaps,
                self.metrics.refused,
            ):
                family.labels(m.name)
        for reason in REASONS:
            self.metrics.dead_lettered.labels(reason)
        self._route_cache: dict[bytes | None, str] = {}
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.server: HealthServer | None = None
        self.processed = 0
        self._pending_offsets: dict[TopicPartition, int] = {}
        self._next_topic_sync = 0.0
        self._touched: dict[str, set[int]] = defaultdict(set)
        self._pending_appends: list[np.ndarray] = []  # broker append times (ms) per batch
        self._in_txn = False
        self._last_checkpoint = time.monotonic()
        self.first_batch_at: float | None = None  # monotonic, for benchmarks
        self.last_batch_at: float | None = None
        self.restored_streams = 0
        self._evict_due = False
        self._pending_restore: set[TopicPartition] = set()

    # -- lifecycle ------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the current batch and exit (safe from signal handlers)."""
        self._stop.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: finishing the current batch", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _open(self) -> None:
        cfg = self.config
        parts = partitions_for(cfg.kafka, cfg.input_topic) or cfg.input_partitions
        ensure_topic(cfg.kafka, cfg.input_topic, parts)
        ensure_topic(cfg.kafka, cfg.output_topic, parts)
        ensure_topic(cfg.kafka, cfg.dlq_topic, 1)
        if self.changelog:
            ensure_topic(cfg.kafka, self.changelog, parts, topic_config(cfg.min_compaction_lag_ms))
        if cfg.metrics_port:
            self.server = HealthServer(self.metrics, cfg.metrics_host, cfg.metrics_port).start()
        self._connect()

    def _connect(self) -> None:
        cfg = self.config
        # A stable transactional id per scorer instance: a restarted instance fences its
        # dead predecessor and aborts its open transaction at once, instead of leaving it
        # to block read_committed readers until the transaction timeout.
        instance = cfg.instance_id or socket.gethostname()
        txn_id = f"statecast-{cfg.group}-{instance}" if self.exactly_once else None
        self.producer = open_producer(cfg.kafka, transactional_id=txn_id)
        self.consumer = open_consumer(
            cfg.kafka,
            [cfg.input_topic],
            cfg.group,
            max_poll_records=cfg.max_poll_records,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            isolation_level="read_committed" if self.exactly_once else "read_uncommitted",
        )

    def _disconnect(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.producer is not None:
            self.producer.close()
            self.producer = None

    def _recover(self, exc: Exception, attempt: int) -> None:
        """Give up the batch in flight and rejoin: state is rebuilt from the changelog."""
        backoff = min(MAX_BACKOFF_S, 0.5 * 2**attempt)
        log.error(
            "Kafka failure (%s); rejoining in %.1fs with state restored from the changelog",
            exc,
            backoff,
        )
        self.metrics.commit_failures.inc()
        if self.exactly_once and self.producer is not None and self._in_txn:
            self.producer.abort()
        self._in_txn = False
        self._reset_pending()
        try:
            self._disconnect()
        except Exception as close_exc:  # the connection is already broken; closing is best effort
            log.warning("closing after failure: %s", close_exc)
        for served in self.models.values():
            served.store.release(served.store.stream_ids())
        self._pending_restore = set()
        # The loop reconnects (inside its own error handling) once the backoff has passed.
        self._stop.wait(backoff)

    def _on_assign(self, assigned: set[TopicPartition]) -> None:
        # kafka-python runs this on its I/O thread, where no blocking client call may run;
        # the restore happens right after the poll returns, before any record is processed.
        self._pending_restore |= assigned

    def _restore(self, assigned: set[TopicPartition]) -> None:
        """Restore protocol steps 1-4 for newly assigned input partitions."""
        if not self.changelog or self.consumer is None:
            return
        started = time.monotonic()
        # 1. Committed offsets of the new partitions.
        committed = self.consumer.committed(assigned)
        # 2.-3. Newest state below the committed offset, per stream.
        snaps, records = read_partitions(
            self.config.kafka,
            self.changelog,
            {tp.partition: off for tp, off in committed.items()},
            read_committed=self.exactly_once,
        )
        # 4. Install, per served model.
        by_model: dict[str, dict[str, tuple[Snapshot, int]]] = defaultdict(dict)
        for sid, (snap, part) in snaps.items():
            name = snap.model if snap.model in self.models else self._model_for(sid.encode())
            by_model[name][sid] = (snap, part)
        now = time.time()
        restored = sum(self.models[m].restore(s, now) for m, s in by_model.items())
        self.restored_streams += restored
        elapsed = time.monotonic() - started
        self.metrics.restore.set(elapsed)
        log.info(
            "restored %d streams from %d changelog records of partitions %s in %.2fs",
            restored,
            records,
            sorted(tp.partition for tp in assigned),
            elapsed,
        )

    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        # Offsets of everything processed are committed (step 6 runs every batch); the
        # streams of revoked partitions now belong to another member, which restores them
        # from the changelog, so they are dropped here.
        parts = {tp.partition for tp in revoked if tp.topic == self.config.input_topic}
        for served in self.models.values():
            served.store.release(served.store.streams_in(parts))
        # Work on them since the last checkpoint is not committed: the new owner redoes it
        # from the changelog state of that checkpoint.
        for tp in revoked:
            self._pending_offsets.pop(tp, None)
        log.info("partitions revoked: %s", sorted(parts))

    def _close(self) -> None:
        self._disconnect()
        if self.server is not None:
            self.server.stop()

    def run(self) -> int:
        """Consume until stopped (or idle for ``until_idle`` seconds). Returns the exit code."""
        cfg = self.config
        self._install_signals()
        self._open()
        started = last_input = time.monotonic()
        next_housekeeping = time.monotonic() + cfg.model_check_s
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if self.consumer is None:
                        self._connect()
                    assert self.consumer is not None
                    # 1. Poll (bounded: backpressure). New assignments are restored before
                    # any of their records is processed.
                    records = self.consumer.poll(cfg.poll_timeout_ms, cfg.max_poll_records)
                    now = time.monotonic()
                    if self._pending_restore:
                        pending, self._pending_restore = self._pending_restore, set()
                        self._restore(pending)
                        last_input = now  # idle time counts from the (re)assignment
                    self._mark_ready()
                    if records:
                        last_input = now
                        if self.first_batch_at is None:
                            self.first_batch_at = now
                        self.process(records)
                        self.last_batch_at = time.monotonic()
                        failures = 0
                    elif (self._pending_offsets or self._in_txn) and (
                        now - self._last_checkpoint >= cfg.commit_interval_s
                    ):
                        self.checkpoint()  # no new input: do not hold results back
                    elif cfg.until_idle is not None and self._idle_for(
                        now - last_input, now - started
                    ):
                        log.info("no input for %.0fs: exiting (--until-idle)", cfg.until_idle)
                        break
                    if now >= next_housekeeping:
                        self.housekeeping()
                        next_housekeeping = now + cfg.model_check_s
                except KafkaError as exc:
                    self._recover(exc, failures)
                    failures += 1
                    last_input = time.monotonic()
            if (self._pending_offsets or self._in_txn) and self.consumer is not None:
                self.checkpoint()  # SIGTERM / idle exit: finish the batch, flush, commit
        finally:
            self._close()
        return 0

    def _idle_for(self, idle_s: float, running_s: float) -> bool:
        """``--until-idle``: idle time counts only while partitions are assigned (a joining
        member may wait a session timeout for a dead one's partitions), with a hard stop
        after three idle periods without any assignment."""
        limit = self.config.until_idle
        assert limit is not None
        assigned = self.consumer is not None and bool(self.consumer.assignment())
        return idle_s >= limit if assigned else running_s >= max(3 * limit, limit + 30.0)

    def _mark_ready(self) -> None:
        if self.server is not None and not self.server.ready.is_set():
            self.server.ready.set()
        self.metrics.ready.set(1)

    # -- one batch --------------------------------------------------------------------

    def _model_for(self, key: bytes | None) -> str:
        if not self._routes:
            return self.config.model
        name = self._route_cache.get(key)
        if name is None:
            sid = key.decode("utf-8", "replace") if key else ""
            name = next(
                (m for prefix, m in self._routes if sid.startswith(prefix)), self.config.model
            )
            if len(self._route_cache) >= ROUTE_CACHE_SIZE:
                self._route_cache.clear()  # bounded: streams come and go
            self._route_cache[key] = name
        return name

    def process(self, records: list[Record]) -> None:
        """Steps 2-6 of the checkpoint protocol for one poll batch."""
        cfg = self.config
        producer, consumer = self.producer, self.consumer
        assert producer is not None and consumer is not None
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        now = time.time()
        if self.exactly_once and not self._in_txn:
            producer.begin()
            self._in_txn = True
        if self._evict_due:
            self._evict(producer, now)
        # 2. Route and decode.
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(records):
            by_model[self._model_for(rec.key)].append(i)
        for name, idx in by_model.items():
            served = self.models[name]
            recs = [records[i] for i in idx]
            batch = decode_batch(
                [(r.key, r.value) for r in recs], served.meta.features, cfg.max_message_bytes
            )
            src = [recs[i] for i in batch.index.tolist()]
            # 3. Score.
            scored = served.score(
                batch,
                np.arange(len(batch.stream_ids), dtype=np.int64),
                now,
                partitions=np.asarray([r.partition for r in src], np.int64),
                offsets=np.asarray([r.offset for r in src], np.int64),
            )
            # 4. Outputs, dead letters and changelog.
            rows = scored.rows.tolist()
            out_recs = [src[r] for r in rows]
            values = encode_scores(
                stream_ids=[batch.stream_ids[r] for r in rows],
                ts_raw=[batch.ts_raw[r] for r in rows],
                values=batch.values[scored.rows],
                forecast=scored.forecast,
                score=scored.score,
                warm=scored.warm,
                threshold=served.threshold,
                features=served.meta.features,
                model=served.name,
                version=served.version,
                records=out_recs,
            )
            producer.send_many(cfg.output_topic, [r.key for r in out_recs], values)
            for rej in batch.rejections + scored.rejections:
                rec = recs[rej.index]
                producer.send(
                    cfg.dlq_topic, rec.key, rec.value, dlq_headers(rec, rej.reason, rej.detail)
                )
                self.metrics.dead_lettered.labels(rej.reason).inc()
            self._touched[name].update(scored.touched.tolist())
            self.metrics.scored.labels(name).inc(len(rows))
            flagged = int(((np.nan_to_num(scored.score) >= served.threshold) & scored.warm).sum())
            if flagged:
                self.metrics.anomalies.labels(name).inc(flagged)
        last = {(r.topic, r.partition): r.offset for r in records}
        for (topic, part), offset in last.items():
            self._pending_offsets[TopicPartition(topic, part)] = offset + 1
        self._pending_appends.append(np.fromiter((r.timestamp_ms for r in records), np.float64))
        if time.monotonic() - self._last_checkpoint >= cfg.commit_interval_s:
            self.checkpoint()
        self.processed += len(records)

    def checkpoint(self) -> None:
        """Steps 4 (changelog), 5 and 6 for everything processed since the last checkpoint.

        Each stream touched since then gets one changelog record (its state now, which is
        its state at the offsets about to be committed), so a stream updated many times
        within ``commit_interval_s`` costs one changelog write.
        """
        producer, consumer = self.producer, self.consumer
        assert producer is not None and consumer is not None
        if self.changelog:
            for name, touched in self._touched.items():
                served = self.models[name]
                store = served.store
                # Evicted or revoked since: nothing to persist.
                live = [(slot, sid) for slot in touched if (sid := store.id_of(slot)) is not None]
                if not live:
                    continue
                # In chunks: the frames of a chunk exist twice (array and records) only
                # until the client has copied them, so the transient memory stays small.
                for at in range(0, len(live), CHANGELOG_CHUNK):
                    chunk = live[at : at + CHANGELOG_CHUNK]
                    slots = np.fromiter((slot for slot, _ in chunk), np.int64, len(chunk))
                    producer.send_many(
                        self.changelog,
                        [sid.encode() for _, sid in chunk],
                        encode_snapshots(store, slots, served.name, served.version),
                        store.part[slots].tolist(),
                    )
        offsets = self._pending_offsets
        if self.exactly_once:
            if self._in_txn:
                # 5.-6. One transaction: outputs, dead letters, changelog and offsets.
                producer.commit(offsets, consumer.group_metadata())
                self._in_txn = False
        else:
            # 5. Flush: every output acknowledged before the inputs are committed.
            producer.flush()
            # 6. Commit the next offset of every partition processed.
            consumer.commit(offsets)
        done_ms = time.time() * 1000.0
        appended = np.concatenate(self._pending_appends) if self._pending_appends else np.empty(0)
        self.metrics.e2e.observe_many(np.maximum(0.0, done_ms - appended) / 1000.0)
        self._reset_pending()

    def _reset_pending(self) -> None:
        self._pending_offsets = {}
        self._touched = defaultdict(set)
        self._pending_appends = []
        self._last_checkpoint = time.monotonic()

    def _evict(self, producer: Producer, now: float) -> None:
        self._evict_due = False
        for served in self.models.values():
            gone = served.store.evict_idle(now, self.config.state_ttl_s)
            if gone:
                self.metrics.evicted.inc(len(gone))
                if self.changelog:
                    for sid, part in gone:
                        producer.send(
                            self.changelog,
                            sid.encode(),
                            None,
                            partition=part if part >= 0 else None,
                        )

    # -- periodic work ----------------------------------------------------------------

    def _sync_model_topic(self) -> None:
        """Install versions published on the model topic into the local registry, so
        scorers without a shared disk follow promotions too (then ``maybe_swap`` sees them)."""
        topic = self.config.model_topic
        if not topic or time.monotonic() < self._next_topic_sync:
            return
        self._next_topic_sync = time.monotonic() + self.config.model_topic_check_s
        try:
            installed = install_latest(self.config.kafka, topic, self.registry, timeout_s=5.0)
        except (KafkaError, RegistryError) as exc:
            log.error("cannot install models from %s: %s", topic, exc)
            for served in self.models.values():
                self.metrics.refused.labels(served.name).inc()
            return
        if installed:
            log.info("installed %s from %s", installed, topic)

    def housekeeping(self) -> None:
        """Model swaps, gauges, and scheduling idle-stream eviction; runs between batches."""
        self._sync_model_topic()
        for served in self.models.values():
            try:
                new = served.maybe_swap()
            except RegistryError:
                self.metrics.refused.labels(served.name).inc()
                new = None
            if new:
                self.metrics.swaps.labels(served.name).inc()
                self.metrics.model_info.labels(served.name).info({"version": new})
            self.metrics.active_streams.labels(served.name).set(len(served.store))
            self.metrics.state_bytes.labels(served.name).set(served.store.memory_bytes())
        self._evict_due = True
        if self.consumer is not None:
            for tp, lag in self.consumer.lag().items():
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
