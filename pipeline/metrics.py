"""Scorer metrics (prometheus-client) and the /metrics, /healthz, /readyz HTTP server.

Names follow Prometheus conventions: prefix ``statecast_``, base units, ``_total``
counters (the client adds the suffix), ``_info`` for versions, and no per-stream
labels (a label per sensor would explode cardinality).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["BulkHistogram", "HealthServer", "ScorerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_INFER_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class BulkHistogram(Collector):  # type: ignore[misc]
    """A histogram fed a whole array at a time (one observation per scored event).

    prometheus-client's Histogram takes one value per call, which costs ~1 µs of
    Python per event on the scorer's hot path; here a checkpoint's latencies are
    bucketed with one numpy call. Exposed exactly like a Histogram.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = np.asarray(buckets, np.float64)
        self._counts = np.zeros(len(buckets) + 1, np.int64)  # last: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        # side="left": a value equal to a bound falls in that bound's bucket (le).
        idx = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def observe(self, value: float) -> None:
        self.observe_many(np.asarray([value], np.float64))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        labels = [*(repr(float(b)) for b in self._bounds), "+Inf"]
        family = HistogramMetricFamily(self._name, self._doc)
        family.add_metric([], list(zip(labels, cumulative, strict=True)), total)
        yield family


class ScorerMetrics:
    """Every metric family of one scorer process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.consumed = Counter(
            "statecast_events_consumed", "Records consumed from the input topic", registry=r
        )
        self.scored = Counter("statecast_events_scored", "Events scored", ["model"], registry=r)
        self.dead_lettered = Counter(
            "statecast_events_dead_lettered",
            "Records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.anomalies = Counter(
            "statecast_anomalies",
            "Events flagged as anomalies, by the channel that scored highest",
            ["model", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "statecast_batch_size_events",
            "Records per poll batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "statecast_inference_duration_seconds",
            "Duration of one batched ONNX step",
            buckets=_INFER_BUCKETS,
            registry=r,
        )
        self.e2e = BulkHistogram(
            "statecast_end_to_end_latency_seconds",
            "Broker append time of the input to output acknowledged",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "statecast_consumer_lag_events",
            "Records behind the end of the partition",
            ["topic", "partition"],
            registry=r,
        )
        self.active_streams = Gauge(
            "statecast_active_streams", "Streams with state in memory", ["model"], registry=r
        )
        self.stale_streams = Gauge(
            "statecast_swap_stale_streams",
            "Streams a model swap has yet to rebuild in the new version",
            ["model"],
            registry=r,
        )
        self.state_bytes = Gauge(
            "statecast_state_memory_bytes",
            "Bytes of per-stream state arrays",
            ["model"],
            registry=r,
        )
        self.evicted = Counter(
            "statecast_streams_evicted", "Streams evicted after the idle TTL", registry=r
        )
        self.restore = Gauge(
            "statecast_state_restore_duration_seconds",
            "Duration of the last state restore",
            registry=r,
        )
        self.restore_records = Counter(
            "statecast_restore_changelog_records",
            "Changelog records read by restores (from a local snapshot's offset, if any)",
            registry=r,
        )
        self.snapshot_published = Gauge(
            "statecast_state_snapshot_published_timestamp_seconds",
            "When a local state snapshot was last published (0: never; --state-dir)",
            registry=r,
        )
        self.snapshot_pause = Gauge(
            "statecast_state_snapshot_pause_seconds",
            "How long the last local snapshot held the poll loop (copying the state rows)",
            registry=r,
        )
        self.standby_published = Gauge(
            "statecast_standby_published_timestamp_seconds",
            "When a standby snapshot of a partition this scorer does not own was last "
            "published (0: never; --standby)",
            registry=r,
        )
        self.standby_records = Counter(
            "statecast_standby_changelog_records",
            "Changelog records read to keep standby snapshots of other partitions current",
            registry=r,
        )
        self.restore_skipped = Counter(
            "statecast_restore_skipped",
            "Changelog states skipped at restore (damaged or mismatched): the stream cold-starts",
            registry=r,
        )
        self.model_info = Info("statecast_model", "Model version in service", ["model"], registry=r)
        self.swaps = Counter("statecast_model_swaps", "Live model swaps", ["model"], registry=r)
        # Live evidence (pipeline.engine.live): role "champion" is the served version,
        # "shadow" the registry's SHADOW version scored on the same events.
        self.live_error = Counter(
            "statecast_live_forecast_error",
            "Sum of forecast errors on live events (mean |x - forecast| in the stream's "
            "spread); divide by statecast_live_forecasts_total for the live MAE",
            ["model", "role"],
            registry=r,
        )
        self.live_forecasts = Counter(
            "statecast_live_forecasts",
            "Live events whose forecast was compared with them",
            ["model", "role"],
            registry=r,
        )
        self.live_nll = Gauge(
            "statecast_live_forecast_nll",
            "Mean negative log density of live events under the forecast distribution "
            "(the champion's recent block; the shadow's since it started)",
            ["model", "role"],
            registry=r,
        )
        self.live_alarms = Counter(
            "statecast_live_alarms", "Alarms on compared live events", ["model", "role"], registry=r
        )
        self.live_drift = Gauge(
            "statecast_live_drift_ratio",
            "The champion's live forecast error over its last block of events, over the "
            "same measure on its validation data (model.json validation.live_mae)",
            ["model"],
            registry=r,
        )
        self.live_input_psi = Gauge(
            "statecast_live_input_psi",
            "Population stability index of the champion's normalised inputs over the last "
            "day of event time against its validation inputs (model.json "
            "validation.input_hist): normal days 0.1 to 0.4, a regime the model never saw 1+",
            ["model"],
            registry=r,
        )
        self.shadow_agreement = Counter(
            "statecast_shadow_alarm_agreement",
            "Compared events by who alarmed: both, champion_only, shadow_only",
            ["model", "outcome"],
            registry=r,
        )
        self.lifecycle = Counter(
            "statecast_model_lifecycle",
            "Decisions on live evidence: shadow_promoted, shadow_rejected, rolled_back, kept",
            ["model", "decision"],
            registry=r,
        )
        self.refused = Counter(
            "statecast_models_refused",
            "Model versions refused at validation",
            ["model"],
            registry=r,
        )
        self.commit_failures = Counter(
            "statecast_commit_failures",
            "Checkpoints that failed (flush, offset commit or transaction commit)",
            registry=r,
        )
        self.kafka_errors = Counter(
            "statecast_kafka_errors",
            "Kafka failures that made the scorer rejoin the group (any step)",
            registry=r,
        )
        self.state_resets = Counter(
            "statecast_state_resets",
            "Streams cold-started because a step would have made their state non-finite",
            ["model"],
            registry=r,
        )
        self.max_streams = Gauge(
            "statecast_max_streams",
            "Streams a served model may hold (max_streams); new ones beyond are dead-lettered",
            ["model"],
            registry=r,
        )
        self.model_topic_errors = Counter(
            "statecast_model_topic_errors",
            "Model-topic reads that failed, or records on it that were skipped as malformed",
            ["kind"],
            registry=r,
        )
        self.ready = Gauge(
            "statecast_ready", "1 once state is restored and the scorer consumes", registry=r
        )


class HealthServer:
    """``/metrics`` for Prometheus, ``/healthz`` (process alive), ``/readyz`` (state restored)."""

    def __init__(self, metrics: ScorerMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.ready = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = (
                        generate_latest(outer.metrics.registry),
                        CONTENT_TYPE_LATEST,
                        200,
                    )
                elif path == "/healthz":
                    body, ctype, code = b"ok\n", "text/plain", 200
                elif path == "/readyz":
                    ok = outer.ready.is_set()
                    body, ctype, code = (
                        (b"ready\n" if ok else b"restoring\n"),
                        "text/plain",
                        200 if ok else 503,
                    )
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep scrapes out of the logs
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
