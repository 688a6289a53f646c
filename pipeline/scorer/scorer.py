"""The scorer entry object: a stateful Kafka consumer that scores every event.

One :class:`Scorer` per process, built from one :class:`~pipeline.config.ScorerConfig`.

Collaborators, one concept each: :class:`~.batch.BatchScorer` (steps 2-4 of a batch),
:class:`~.checkpoint.Checkpointer` (steps 4-6, both guarantees),
:class:`~.restore.Restorer` (the restore protocol), :class:`~.housekeeping.Housekeeper`
(model swaps, gauges, eviction). This module holds the lifecycle and the poll loop.

Checkpoint protocol of one poll batch (the numbers recur in the code):

1. poll at most ``max_poll_records`` records (backpressure: nothing is read ahead),
   under light load lingering up to ``poll_linger_ms`` after the previous turn began for
   more (:meth:`Scorer._poll`); exactly-once: begin a transaction;
2. route each record by its key (the stream id) to a served model and decode it;
   invalid records become dead-letter entries with a reason;
3. score each model's events, batched across streams, sequential within a stream;
4. produce one score record per accepted event and one DLQ record per rejected one;
   at a checkpoint (every ``commit_interval_s``, 0 = every batch), also one changelog
   record per stream whose state changed since the last checkpoint (its partition is
   the input partition, and it carries the offset of the last input applied;
   at-least-once, written over the next loop turns: :mod:`.checkpoint`, 4a-4d);
5. checkpoint: flush, i.e. wait until the broker acknowledged everything from step 4;
6. checkpoint: commit the next offset of every partition processed.
   Exactly-once: the transaction spans a checkpoint interval, and steps 5-6 are one
   transaction commit that includes the offsets.

Restore protocol: :mod:`pipeline.scorer.restore` (on start and on every assignment,
before any record of the new partitions is processed).

At-least-once: a crash after step 5 and before step 6 replays the batch, which the
restore rule makes exact (the state is rewound with the offsets). A Kafka failure
(broker restart, network) aborts the batch, drops the in-memory state and rejoins
the group, restoring from the changelog, with backoff: no crash loop.
SIGTERM/SIGINT finish the current batch, flush, commit and close.
"""

from __future__ import annotations

import functools
import gc
import logging
import signal
import socket
import threading
import time
from types import FrameType

from pipeline import stopping
from pipeline.config import ScorerConfig
from pipeline.engine.admission import Bounds
from pipeline.engine.events import REASONS
from pipeline.engine.interval import IntervalParams
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.engine.stepper import REASONS as ANOMALY_REASONS
from pipeline.errors import KafkaError
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
from pipeline.kafka_io.changelog import changelog_topic, topic_config
from pipeline.metrics import HealthServer, ScorerMetrics
from pipeline.scorer.batch import BatchScorer
from pipeline.scorer.checkpoint import Checkpointer
from pipeline.scorer.housekeeping import Housekeeper
from pipeline.scorer.live import LiveJudge
from pipeline.scorer.local_delta import DeltaLog
from pipeline.scorer.local_state import LocalState, SnapshotTaker
from pipeline.scorer.restore import Restorer
from pipeline.scorer.routing import Router
from pipeline.scorer.standby import Standby

__all__ = ["Scorer", "tune_gc"]

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


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
        names = {config.model, *config.route_map.values()}
        self.models: dict[str, ServedModel] = {
            name: ServedModel(
                name,
                self.registry,
                threads=config.intra_op_threads,
                capacity=config.state_capacity,
                replay_steps=config.replay_steps,
                season_bins=config.season_bins,
                warmup_steps=config.warmup_steps,
                gap_reset_s=config.gap_reset_s,
                late_tolerance_s=config.late_tolerance_s,
                bounds=Bounds(config.max_abs_value, config.max_future_skew_s, config.max_streams),
                interval=IntervalParams(config.interval),
                on_infer=self.metrics.inference.observe,
            )
            for name in sorted(names)
        }
        self._init_metrics()
        router = Router(config.model, config.route_map)
        self.live = LiveJudge(config, self.registry, self.models, self.metrics)
        self.batches = BatchScorer(config, self.models, router, self.metrics, self.live)
        local = (
            LocalState(config.state_dir, self.changelog)
            if self.changelog and config.state_dir is not None
            else None
        )
        deltas = DeltaLog(config.state_dir, local.changelog) if local and config.state_dir else None
        self.snapshots = (
            SnapshotTaker(local, local.changelog, config.snapshot_interval_s, self.metrics, deltas)
            if local
            else None
        )
        self.checkpointer = Checkpointer(
            self.models,
            self.metrics,
            changelog=self.changelog,
            exactly_once=self.exactly_once,
            interval_s=config.commit_interval_s,
            snapshots=self.snapshots,
            frames_per_turn=config.changelog_frames_per_turn,
        )
        for name, served in self.models.items():
            served.before_update = functools.partial(self.checkpointer.before_update, name)
        self.restorer = (
            Restorer(config, self.changelog, self.models, router, self.metrics, local, deltas)
            if self.changelog
            else None
        )
        self.standby = (
            Standby(
                config.kafka,
                config.input_topic,
                local,
                deltas,
                config.standby_interval_s,
                read_committed=self.exactly_once,
                metrics=self.metrics,
            )
            if local is not None and config.standby
            else None
        )
        self._partitions = config.input_partitions  # the input topic's, once it is known
        self.housekeeper = Housekeeper(
            config, self.registry, self.models, self.metrics, self.changelog, self.live, deltas
        )
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.server: HealthServer | None = None
        self.processed = 0
        self.first_batch_at: float | None = None  # monotonic, for benchmarks
        self.last_batch_at: float | None = None
        self._pending_restore: set[TopicPartition] = set()
        self._failure: KafkaError | None = None  # from a rebalance callback
        self._rebalances = 0  # assignments and revocations seen (a lingering poll's check)
        self._revoked: set[TopicPartition] = set()  # since the lingering turn began
        self._turn_began = 0.0  # when the last poll that returned records did (the linger's)

    def _init_metrics(self) -> None:
        for m in self.models.values():
            self.metrics.model_info.labels(m.name).info({"version": m.version})
            self.metrics.max_streams.labels(m.name).set(m.bounds.max_streams)
            # Labelled series exist from the start (at 0), so rates and alerts see them.
            for reason in ANOMALY_REASONS:
                self.metrics.anomalies.labels(m.name, reason)
            for role in ("champion", "shadow", "previous"):
                self.metrics.live_forecasts.labels(m.name, role)
                self.metrics.live_error.labels(m.name, role)
                self.metrics.live_alarms.labels(m.name, role)
            for outcome in ("both", "champion_only", "shadow_only"):
                self.metrics.shadow_agreement.labels(m.name, outcome)
            for decision in ("shadow_promoted", "shadow_rejected", "rolled_back", "kept"):
                self.metrics.lifecycle.labels(m.name, decision)
            for family in (
                self.metrics.scored,
                self.metrics.swaps,
                self.metrics.refused,
                self.metrics.state_resets,
            ):
                family.labels(m.name)
        for reason in REASONS:
            self.metrics.dead_lettered.labels(reason)
        for kind in ("read", "malformed"):
            self.metrics.model_topic_errors.labels(kind)

    @property
    def restored_streams(self) -> int:
        return self.restorer.restored_streams if self.restorer else 0

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
        if stopping.requested():
            log.info("stop requested while starting: stopping before the first poll")
            self.stop()

    def _open(self) -> None:
        cfg = self.config
        parts = partitions_for(cfg.kafka, cfg.input_topic) or cfg.input_partitions
        self._partitions = parts
        ensure_topic(cfg.kafka, cfg.input_topic, parts)
        ensure_topic(cfg.kafka, cfg.output_topic, parts)
        ensure_topic(cfg.kafka, cfg.dlq_topic, 1)
        if self.changelog:
            ensure_topic(cfg.kafka, self.changelog, parts, topic_config(cfg.min_compaction_lag_ms))
        if cfg.metrics_port:
            self.server = HealthServer(self.metrics, cfg.metrics_host, cfg.metrics_port).start()
        # The clients connect in the poll loop, which retries a failure with backoff: a
        # scorer started while the broker restarts waits for it (the topics above have
        # waited up to a minute for it too; a broker that never answers failed there).

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
            on_lost=self._on_lost,
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
        self.metrics.kafka_errors.inc()
        self._mark_unready()
        self.checkpointer.abandon(self.producer)
        try:
            self._disconnect()
        except Exception as close_exc:  # the connection is already broken; closing is best effort
            log.warning("closing after failure: %s", close_exc)
        for served in self.models.values():
            served.store.release(served.store.stream_ids())
        if self.standby is not None:
            self.standby.release()
        self._pending_restore = set()
        # The loop reconnects (inside its own error handling) once the backoff has passed.
        self._stop.wait(backoff)

    def _on_assign(self, assigned: set[TopicPartition]) -> None:
        # kafka-python runs this on its I/O thread, where no blocking client call may run;
        # the restore happens right after the poll returns, before any record is processed.
        # Not ready until it is done.
        self._pending_restore |= assigned
        self._rebalances += 1
        self._mark_unready()

    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        """Hand revoked partitions over.

        Exactly-once: the open transaction holds outputs of the revoked partitions, so it
        is committed now, with their offsets and their streams' changelog records, before
        they are released (as Kafka Streams commits its tasks when they are revoked); else
        the new owner would redo that work and read_committed readers would see it twice.
        If that commit fails, the scorer recovers as from any Kafka failure (abort, drop
        state, rejoin, restore). At-least-once: the uncommitted work on them is redone by
        the new owner from its last checkpoint (duplicates are allowed, loss is not).
        """
        self._rebalances += 1
        self._revoked |= revoked
        if self.exactly_once and self.checkpointer.in_txn and self._failure is None:
            try:
                self.checkpoint(snapshot=False)
            except KafkaError as exc:
                self._failure = exc  # raised from the loop, after the poll returns
        try:
            self.checkpointer.hand_over()  # before their streams' slots are released
        except KafkaError as exc:
            self._failure = exc  # as above: recovered from in the loop
        parts = {tp.partition for tp in revoked if tp.topic == self.config.input_topic}
        for served in self.models.values():
            served.store.release(served.store.streams_in(parts))
            shadow = self.live.shadow_of(served.name)
            if shadow is not None:
                shadow.store.release(shadow.store.streams_in(parts))
        self.checkpointer.forget_partitions(revoked)
        if self.standby is not None:
            self.standby.release(parts)  # after the snapshots above gave them up
        log.info("partitions revoked: %s", sorted(parts))

    def _on_lost(self, lost: set[TopicPartition]) -> None:
        """Partitions lost: the group dropped this member (its session expired, or a
        heartbeat, join or commit was refused), and they may already have a new owner.

        Exactly-once: the open transaction must not commit. A dropped member's group
        metadata carries no generation and no member id, and the broker accepts a
        transactional offset commit without them in any group (older clients send none;
        tests/pipeline/kafka_io/test_lost_commit.py): the outputs and offsets of a
        member that no longer owns the partitions would commit beside their new owner's.
        So the scorer recovers as from a Kafka failure instead (abort, drop state, rejoin,
        restore). Then, as for a revocation, the partitions' streams are released.
        """
        if self.exactly_once and self.checkpointer.in_txn and self._failure is None:
            parts = sorted(tp.partition for tp in lost)
            self._failure = KafkaError(
                f"partitions {parts} lost (this member was dropped from its group); "
                "its open transaction is aborted, not committed"
            )
        self._on_revoke(lost)  # with a failure noted, it commits nothing

    def _close(self) -> None:
        if self.snapshots is not None:
            self.snapshots.close()
        if self.standby is not None:
            self.standby.close()
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
                    records = self._poll(self.consumer)
                    if self._failure is not None:
                        failure, self._failure = self._failure, None
                        raise failure
                    now = time.monotonic()
                    if self._pending_restore:
                        pending, self._pending_restore = self._pending_restore, set()
                        if self.standby is not None:
                            self.standby.claim(
                                tp.partition for tp in pending if tp.topic == cfg.input_topic
                            )
                        if self.restorer is not None:
                            self.checkpointer.hand_over()
                            committed = self.restorer.restore(self.consumer, pending)
                            self.checkpointer.start_partitions(committed)
                        last_input = now  # idle time counts from the (re)assignment
                    self._mark_ready()
                    # 5.-6. (at-least-once) Commit a checkpoint whose sends are all
                    # acknowledged by now, without waiting for any.
                    self.complete_checkpoints()
                    self.catch_up()
                    if records:
                        last_input = now
                        if self.first_batch_at is None:
                            self.first_batch_at = now
                        self.process(records)
                        self.last_batch_at = time.monotonic()
                        failures = 0
                    elif self.checkpointer.pending and self.checkpointer.due():
                        self.checkpoint()  # no new input: do not hold results back
                    elif cfg.until_idle is not None and self._idle_for(
                        now - last_input, now - started
                    ):
                        log.info("no input for %.0fs: exiting (--until-idle)", cfg.until_idle)
                        break
                    if now >= next_housekeeping:
                        self.housekeeping()
                        next_housekeeping = now + cfg.model_check_s
                    if self.standby is not None and self.standby.due(now):
                        assert self.changelog is not None
                        self.standby.refresh(
                            self.consumer, self.changelog, range(self._partitions), now
                        )
                except KafkaError as exc:
                    self._recover(exc, failures)
                    failures += 1
                    last_input = time.monotonic()
            if self.checkpointer.pending and self.consumer is not None:
                self._final_checkpoint()
        finally:
            self._close()
        return 0

    def _poll(self, consumer: Consumer) -> list[Record]:
        """Step 1: what the consumer holds, else the first record within
        ``poll_timeout_ms``; then, with a linger, more until an eighth of
        ``max_poll_records`` are in or ``poll_linger_ms`` have passed since the previous
        turn began. A turn costs ~3 ms whatever its size, so under light load turns are
        spaced by the linger (a record waits at most that long); under load a turn takes
        longer than the linger, or starts with enough, and none is waited for.

        A rebalance during the linger ends it. The records polled before it, of partitions
        it revoked, are dropped: none of them is committed here, so their next owner scores
        them, and that may be this scorer: a partition lost (an eviction) and assigned back
        is restored to its committed offset and polled again from there, so a record kept
        would be applied to the restored state and then again. The rest are kept in order
        (dropping them would skip them: the position is past them).
        """
        cfg = self.config
        records = consumer.poll(cfg.poll_timeout_ms, cfg.max_poll_records)
        # Enough to spread a turn's cost thin (~3 ms over 250 events is ~12 us each, under
        # half an event's own): under a backlog a poll that stops at a fetch's end does
        # not wait (kafka-python's short polls may not fetch at all).
        enough = max(1, cfg.max_poll_records // 8)
        if records and cfg.poll_linger_ms > 0:
            seen, self._revoked = self._rebalances, set()
            deadline = self._turn_began + cfg.poll_linger_ms / 1000.0
            while len(records) < enough and not self._stop.is_set():
                left_ms = int((deadline - time.monotonic()) * 1000.0)
                if left_ms <= 0 or self._failure is not None:
                    break
                held = len(records)
                records.extend(consumer.poll(left_ms, cfg.max_poll_records - len(records)))
                if self._rebalances != seen:
                    owned, gone = consumer.assignment(), self._revoked
                    records = [
                        r
                        for i, r in enumerate(records)
                        if (tp := TopicPartition(r.topic, r.partition)) in owned
                        and (i >= held or tp not in gone)
                    ]
                    break
        if records:
            self._turn_began = time.monotonic()
        return records

    def _final_checkpoint(self) -> None:
        """SIGTERM / idle exit: finish, flush, commit. If that fails (a rebalance took the
        partitions meanwhile, the broker went away), the interval is abandoned instead: its
        inputs are not committed, so their next owner processes them again (exactly-once:
        the transaction is aborted), and the exit stays clean."""
        failure, self._failure = self._failure, None
        try:
            if failure is not None:
                raise failure  # a revoke's commit already failed: nothing to commit
            self.checkpoint(final=True)
        except KafkaError as exc:
            log.warning(
                "final checkpoint not committed (%s): the partitions' next owner redoes it", exc
            )
            try:
                self.checkpointer.abandon(self.producer)
            except KafkaError as abort_exc:  # the producer is fenced or gone: nothing to abort
                log.warning("aborting the final transaction: %s", abort_exc)

    def _idle_for(self, idle_s: float, running_s: float) -> bool:
        """``--until-idle``: idle time counts only while partitions are assigned (a joining
        member may wait a session timeout for a dead one's partitions), with a hard stop
        after three idle periods without any assignment."""
        limit = self.config.until_idle
        assert limit is not None
        assigned = self.consumer is not None and bool(self.consumer.assignment())
        return idle_s >= limit if assigned else running_s >= max(3 * limit, limit + 30.0)

    def _mark_ready(self) -> None:
        """Ready: connected, and every assigned partition's state restored."""
        if self._pending_restore:
            return
        if self.server is not None and not self.server.ready.is_set():
            self.server.ready.set()
        self.metrics.ready.set(1)

    def _mark_unready(self) -> None:
        if self.server is not None:
            self.server.ready.clear()
        self.metrics.ready.set(0)

    # -- one batch --------------------------------------------------------------------

    def process(self, records: list[Record]) -> None:
        """Steps 2-6 of the checkpoint protocol for one poll batch."""
        producer = self.producer
        assert producer is not None
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        now = time.time()
        # 1. (exactly-once) The interval's transaction begins with its first batch.
        self.checkpointer.begin_batch(producer)
        self.housekeeper.evict(producer, now)
        # 2.-4. Route, decode, score; outputs and dead letters.
        touched = self.batches.score(records, producer, now)
        self.checkpointer.add_batch(records, touched)
        if self.checkpointer.due():
            self.checkpoint()
        self.processed += len(records)

    def checkpoint(self, final: bool = False, snapshot: bool = True) -> None:
        """Steps 4 (changelog), 5 and 6 for everything processed since the last checkpoint."""
        assert self.producer is not None and self.consumer is not None
        try:
            self.checkpointer.checkpoint(
                self.producer, self.consumer, final=final, snapshot=snapshot
            )
        except KafkaError:
            self.metrics.commit_failures.inc()
            raise

    def complete_checkpoints(self) -> None:
        if self.producer is None or self.consumer is None:
            return
        try:
            self.checkpointer.complete(self.producer, self.consumer)
        except KafkaError:
            self.metrics.commit_failures.inc()
            raise

    def catch_up(self) -> None:
        """A few more streams a model swap left stale are rebuilt (every loop turn, as a
        checkpoint's frames are written: pipeline.engine.serving, step 4)."""
        budget = self.config.swap_rebuild_per_turn
        for served in self.models.values():
            served.catch_up(budget)
            shadow = self.live.shadow_of(served.name)
            if shadow is not None:
                shadow.catch_up(budget)

    def housekeeping(self) -> None:
        """Model swaps, gauges, and scheduling idle-stream eviction; runs between batches."""
        self.housekeeper.run(self.consumer)
