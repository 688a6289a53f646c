"""Periodic refresh: run the trainer now and then every interval, surviving failures.

A failed run is logged and counted and leaves the registry as it was (the trainer
writes atomically and promotes only at the very end), so the champion keeps serving.
With ``metrics_file`` the trainer's metrics are written after every run in the
Prometheus textfile-collector format (node_exporter's ``--collector.textfile``),
which suits one-shot cron jobs better than a Pushgateway: the last result stays
visible between runs without another service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from pipeline.errors import StatecastError
from training.data import parse_duration

__all__ = ["TrainerMetrics", "run_periodically"]

log = logging.getLogger(__name__)


class TrainerMetrics:
    """Trainer metrics (``statecast_trainer_*``) in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("statecast_trainer_runs", "Trainer runs started", registry=r)
        self.failures = Counter(
            "statecast_trainer_failures", "Trainer runs that failed", registry=r
        )
        self.duration = Gauge(
            "statecast_trainer_last_run_duration_seconds", "Duration of the last run", registry=r
        )
        self.started = Gauge(
            "statecast_trainer_started_timestamp_seconds",
            "Unix time the trainer process started (the model-stale alert counts from it "
            "until the first success)",
            registry=r,
        )
        self.started.set(time.time())
        self.last_success = Gauge(
            "statecast_trainer_last_success_timestamp_seconds",
            "Unix time of the last successful run",
            registry=r,
        )
        self.champion_mae = Gauge(
            "statecast_trainer_champion_mae",
            "MAE (scale-free) of the champion on the last run's held-out gate window",
            registry=r,
        )
        self.challenger_mae = Gauge(
            "statecast_trainer_challenger_mae",
            "MAE (scale-free) of the last challenger on the same held-out gate window",
            registry=r,
        )

        self.skipped = Counter(
            "statecast_trainer_skipped",
            "Runs skipped because nothing drifted (--when drift)",
            registry=r,
        )
        self.drift = Gauge(
            "statecast_trainer_drift_ratio",
            "The champion's error on the last run's recent data over its validation error",
            registry=r,
        )

    def record(self, comparison: dict[str, object]) -> None:
        """Champion and challenger MAE from a model.json ``champion_comparison``."""
        challenger = comparison.get("challenger_mean_mae")
        champion = comparison.get("champion_mean_mae")
        if isinstance(challenger, float):
            self.challenger_mae.set(challenger)
            promoted = bool(comparison.get("promoted"))
            # After a promotion the challenger is the champion.
            best = challenger if promoted or not isinstance(champion, float) else champion
            self.champion_mae.set(best)

    def write(self, path: str | None) -> None:
        if path:
            write_to_textfile(path, self.registry)


def run_periodically(
    once: Callable[[TrainerMetrics], int],
    every: str | None,
    *,
    metrics_file: str | None = None,
    metrics: TrainerMetrics | None = None,
    max_runs: int | None = None,
    retry: str | None = None,
) -> int:
    """Run ``once(metrics)`` now, then every ``every`` (forever, or ``max_runs`` times).
    After a failed run the next one comes after ``retry`` instead, if that is sooner (a
    first run that found no data yet does not wait a whole day).

    Returns the exit code of the last run (0 ok, 1 failed).
    """
    interval = parse_duration(every) if every else None
    retry_s = parse_duration(retry) if retry else None
    metrics = metrics or TrainerMetrics()
    runs = 0
    code = 0
    while True:
        started = time.monotonic()
        metrics.runs.inc()
        try:
            code = once(metrics)
            metrics.last_success.set(time.time())
        except StatecastError as exc:
            code = 1
            metrics.failures.inc()
            log.error("training run failed, champion unchanged: %s", exc)
        except Exception:  # a nightly job must survive surprises; they are counted and logged
            code = 1
            metrics.failures.inc()
            log.exception("training run crashed, champion unchanged")
        metrics.duration.set(time.monotonic() - started)
        metrics.write(metrics_file)
        runs += 1
        if interval is None or (max_runs is not None and runs >= max_runs):
            return code
        wait = interval if code == 0 or retry_s is None else min(interval, retry_s)
        next_at = started + wait
        log.info("next training run in %.0fs", max(0.0, next_at - time.monotonic()))
        while time.monotonic() < next_at:
            time.sleep(min(5.0, max(0.0, next_at - time.monotonic())))
