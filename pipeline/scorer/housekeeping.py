"""Work between batches: follow the model topic, swap models, update gauges and lag,
and evict idle streams (with a changelog tombstone each)."""

from __future__ import annotations

import logging
import time

from pipeline.config import ScorerConfig
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.errors import KafkaError, RegistryError
from pipeline.kafka_io import Consumer, Producer
from pipeline.kafka_io.model_topic import install_latest
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.live import LiveJudge
from pipeline.scorer.local_delta import DeltaLog

__all__ = ["Housekeeper"]

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(
        self,
        config: ScorerConfig,
        registry: Registry,
        models: dict[str, ServedModel],
        metrics: ScorerMetrics,
        changelog: str | None,
        live: LiveJudge | None = None,
        deltas: DeltaLog | None = None,
    ) -> None:
        self.config = config
        self.deltas = deltas  # tombstones go to the local deltas too
        self.registry = registry
        self.models = models
        self.metrics = metrics
        self.changelog = changelog
        self.live = live
        self.evict_due = False
        self._next_topic_sync = 0.0

    def run(self, consumer: Consumer | None) -> None:
        """Model swaps, gauges, lag, and scheduling idle-stream eviction."""
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
            stale = int(served.store.stale.sum()) if served.catching_up else 0
            self.metrics.stale_streams.labels(served.name).set(stale)
            self.metrics.state_bytes.labels(served.name).set(served.store.memory_bytes())
        if self.live is not None:
            self.live.decide()  # shadows, promotion on live evidence, rollback
        # Eviction writes tombstones, so it runs inside the next batch (and transaction).
        self.evict_due = True
        if consumer is not None:
            for tp, lag in consumer.lag().items():
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)

    def evict(self, producer: Producer, now: float) -> None:
        """Evict streams idle for longer than ``state_ttl_s``, if scheduled."""
        if not self.evict_due:
            return
        self.evict_due = False
        for served in self.models.values():
            # Frames a checkpoint still owes for these streams go before their tombstones.
            gone = served.store.evict_idle(now, self.config.state_ttl_s, served.before_update)
            if gone:
                self.metrics.evicted.inc(len(gone))
                if self.changelog:
                    keys = [sid.encode() for sid, _ in gone]
                    for key, (_, part) in zip(keys, gone, strict=True):
                        producer.send(
                            self.changelog, key, None, partition=part if part >= 0 else None
                        )
                    if self.deltas is not None:
                        self.deltas.tombstones(keys, [part for _, part in gone])

    def _sync_model_topic(self) -> None:
        """Install versions published on the model topic into the local registry, so
        scorers without a shared disk follow promotions too (then ``maybe_swap`` sees them)."""
        topic = self.config.model_topic
        if not topic or time.monotonic() < self._next_topic_sync:
            return
        self._next_topic_sync = time.monotonic() + self.config.model_topic_check_s
        try:
            report = install_latest(
                self.config.kafka,
                topic,
                self.registry,
                timeout_s=5.0,
                verify_key=self.config.model_verify_key,
            )
        except KafkaError as exc:
            log.error("cannot read models from %s (will retry): %s", topic, exc)
            self.metrics.model_topic_errors.labels("read").inc()
            return
        for why in report.malformed:
            log.error("skipped a malformed record on %s: %s", topic, why)
            self.metrics.model_topic_errors.labels("malformed").inc()
        for name, why in report.refused:
            log.error("refused model %s from %s: %s", name, topic, why)
            self.metrics.refused.labels(name).inc()
        if report.installed:
            log.info("installed %s from %s", report.installed, topic)
