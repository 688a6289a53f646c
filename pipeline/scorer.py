"""The scorer entry object: a stateful Kafka consumer that scores every event.

One :class:`Scorer` per process, built from one :class:`~pipeline.config.ScorerConfig`.
Processing protocol of one poll batch (the numbers recur in the code):

1. poll at most ``max_poll_records`` records (backpressure: nothing is read ahead);
2. route each record by its key (the stream id) to a served model and decode it;
   invalid records become dead-letter entries with a reason;
3. score each model's events, batched across streams, sequential within a stream;
4. produce one score record per accepted event and one DLQ record per rejected one;
5. flush: wait until the broker acknowledged every record of step 4;
6. commit the next offset of every partition in the batch.

A record's offset is committed only after its output is acknowledged, so a crash
anywhere loses nothing (at-least-once). SIGTERM/SIGINT finish the current batch,
flush, commit and close.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from types import FrameType

import numpy as np

from pipeline.codec import decode_batch
from pipeline.config import ScorerConfig
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
from pipeline.metrics import HealthServer, ScorerMetrics
from pipeline.outputs import dlq_headers, encode_scores
from pipeline.registry import Registry
from pipeline.serving import ServedModel

__all__ = ["Scorer"]

log = logging.getLogger(__name__)


class Scorer:
    """Consumes sensor events, keeps LSTM state per stream, emits forecasts and anomaly scores."""

    def __init__(self, config: ScorerConfig, metrics: ScorerMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ScorerMetrics()
        self.registry = Registry(config.registry)
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
        self._route_cache: dict[bytes | None, str] = {}
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.server: HealthServer | None = None
        self.processed = 0

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
        self.producer = open_producer(cfg.kafka)
        self.consumer = open_consumer(
            cfg.kafka,
            [cfg.input_topic],
            cfg.group,
            max_poll_records=cfg.max_poll_records,
            on_revoke=self._on_revoke,
        )
        if cfg.metrics_port:
            self.server = HealthServer(self.metrics, cfg.metrics_host, cfg.metrics_port).start()

    def _close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.close()
        if self.server is not None:
            self.server.stop()

    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        # Offsets of everything processed are already committed (step 6 runs every batch).
        # The streams of revoked partitions now belong to another member; their state in this
        # process would go stale, so it is dropped.
        log.info("partitions revoked: %s", sorted(revoked))

    def run(self) -> int:
        """Consume until stopped (or idle for ``until_idle`` seconds). Returns the exit code."""
        cfg = self.config
        self._install_signals()
        self._open()
        assert self.consumer is not None and self.producer is not None
        if self.server:
            self.server.ready.set()
        self.metrics.ready.set(1)
        last_input = time.monotonic()
        next_housekeeping = time.monotonic() + cfg.model_check_s
        try:
            while not self._stop.is_set():
                # 1. Poll (bounded: backpressure).
                records = self.consumer.poll(cfg.poll_timeout_ms, cfg.max_poll_records)
                now = time.monotonic()
                if records:
                    last_input = now
                    self.process(records)
                elif cfg.until_idle is not None and now - last_input >= cfg.until_idle:
                    log.info("no input for %.0fs: exiting (--until-idle)", cfg.until_idle)
                    break
                if now >= next_housekeeping:
                    self.housekeeping()
                    next_housekeeping = now + cfg.model_check_s
        finally:
            self._close()
        return 0

    # -- one batch --------------------------------------------------------------------

    def _model_for(self, key: bytes | None) -> str:
        name = self._route_cache.get(key)
        if name is None:
            sid = key.decode("utf-8", "replace") if key else ""
            name = next(
                (m for prefix, m in self._routes if sid.startswith(prefix)), self.config.model
            )
            if len(self._route_cache) < 1_000_000:
                self._route_cache[key] = name
        return name

    def process(self, records: list[Record]) -> None:
        """Steps 2-6 of the protocol for one poll batch."""
        cfg = self.config
        assert self.producer is not None and self.consumer is not None
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        now = time.time()
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
            # 3. Score.
            scored = served.score(batch, np.arange(len(batch.stream_ids), dtype=np.int64), now)
            # 4. Produce outputs and dead letters.
            rows = scored.rows.tolist()
            out_recs = [recs[int(batch.index[r])] for r in rows]
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
            for rec, value in zip(out_recs, values, strict=True):
                self.producer.send(cfg.output_topic, rec.key, value)
            for rej in batch.rejections + scored.rejections:
                rec = recs[rej.index]
                self.producer.send(
                    cfg.dlq_topic, rec.key, rec.value, dlq_headers(rec, rej.reason, rej.detail)
                )
                self.metrics.dead_lettered.labels(rej.reason).inc()
            self.metrics.scored.labels(name).inc(len(rows))
            flagged = int(((np.nan_to_num(scored.score) >= served.threshold) & scored.warm).sum())
            if flagged:
                self.metrics.anomalies.labels(name).inc(flagged)
        # 5. Flush: every output acknowledged before the inputs are committed.
        try:
            self.producer.flush()
        except KafkaError:
            self.metrics.commit_failures.inc()
            raise
        done = time.time()
        for rec in records:
            self.metrics.e2e.observe(max(0.0, done - rec.timestamp_ms / 1000.0))
        # 6. Commit the next offset of every partition in the batch.
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            offsets[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
        try:
            self.consumer.commit(offsets)
        except KafkaError:
            self.metrics.commit_failures.inc()
            raise
        self.processed += len(records)

    # -- periodic work ----------------------------------------------------------------

    def housekeeping(self) -> None:
        """Model swaps, idle-stream eviction and gauges; runs between batches."""
        now = time.time()
        for served in self.models.values():
            try:
                new = served.maybe_swap()
            except RegistryError:
                self.metrics.refused.labels(served.name).inc()
                new = None
            if new:
                self.metrics.swaps.labels(served.name).inc()
                self.metrics.model_info.labels(served.name).info({"version": new})
            evicted = served.store.evict_idle(now, self.config.state_ttl_s)
            if evicted:
                self.metrics.evicted.inc(evicted)
            self.metrics.active_streams.labels(served.name).set(len(served.store))
            self.metrics.state_bytes.labels(served.name).set(served.store.memory_bytes())
        if self.consumer is not None:
            for tp, lag in self.consumer.lag().items():
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
