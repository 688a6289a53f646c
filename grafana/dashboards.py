"""Statecast's Grafana dashboards as code.

``python grafana/dashboards.py`` writes ``grafana/dashboards/*.json``; a test checks the
committed JSON is what this file generates, and runs every expression against a real
Prometheus. Panels use the provisioned datasource uid ``statecast-prometheus``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "statecast-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"

# (title, kind, unit, [(expr, legend), ...])
Panel = tuple[str, str, str, list[tuple[str, str]]]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "statecast-pipeline": (
        "Statecast / Pipeline overview",
        [
            (
                "Throughput",
                "timeseries",
                "ops",
                [
                    ("sum(rate(statecast_events_consumed_total[1m]))", "consumed/s"),
                    (
                        "sum by (model) (rate(statecast_events_scored_total[1m]))",
                        "scored/s {{model}}",
                    ),
                ],
            ),
            (
                "End-to-end latency (input record timestamp → output acknowledged)",
                "timeseries",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(statecast_end_to_end_latency_seconds_bucket[5m])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(statecast_end_to_end_latency_seconds_bucket[5m])))",
                        "p99",
                    ),
                    (
                        "histogram_quantile(0.999, sum by (le) (rate(statecast_end_to_end_latency_seconds_bucket[5m])))",
                        "p99.9",
                    ),
                ],
            ),
            (
                "Consumer lag",
                "timeseries",
                "short",
                [
                    (
                        "sum by (topic, partition) (statecast_consumer_lag_events)",
                        "{{topic}}/{{partition}}",
                    ),
                ],
            ),
            (
                "Dead letters by reason",
                "timeseries",
                "ops",
                [
                    (
                        "sum by (reason) (rate(statecast_events_dead_lettered_total[5m]))",
                        "{{reason}}",
                    ),
                ],
            ),
            (
                "ONNX step latency p99 and batch size p50",
                "timeseries",
                "s",
                [
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(statecast_inference_duration_seconds_bucket[5m])))",
                        "step p99",
                    ),
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(statecast_batch_size_events_bucket[5m])))",
                        "batch p50 (events)",
                    ),
                ],
            ),
            (
                "Streams in memory and state bytes",
                "timeseries",
                "short",
                [
                    ("sum by (model) (statecast_active_streams)", "streams {{model}}"),
                    ("sum by (model) (statecast_state_memory_bytes)", "bytes {{model}}"),
                ],
            ),
            (
                "Scorers up / ready",
                "stat",
                "short",
                [
                    ('sum(up{job="statecast-scorer"})', "up"),
                    ("sum(statecast_ready)", "ready"),
                ],
            ),
            (
                "Commit failures, Kafka rejoins (15m) and last restore",
                "stat",
                "short",
                [
                    ("sum(increase(statecast_commit_failures_total[15m]))", "commit failures"),
                    ("sum(increase(statecast_kafka_errors_total[15m]))", "rejoins"),
                    ("max(statecast_state_restore_duration_seconds)", "restore s"),
                ],
            ),
            (
                "Poison records, state resets, skipped restores (15m)",
                "stat",
                "short",
                [
                    (
                        'sum(increase(statecast_events_dead_lettered_total{reason="internal_error"}[15m]))',
                        "internal errors",
                    ),
                    ("sum(increase(statecast_state_resets_total[15m]))", "state resets"),
                    ("sum(increase(statecast_restore_skipped_total[15m]))", "restore skipped"),
                    (
                        "sum(increase(statecast_model_topic_errors_total[15m]))",
                        "model topic errors",
                    ),
                ],
            ),
            (
                "Stream capacity used",
                "timeseries",
                "percentunit",
                [
                    (
                        "sum by (model) (statecast_active_streams) / sum by (model) (statecast_max_streams)",
                        "{{model}}",
                    ),
                ],
            ),
        ],
    ),
    "statecast-anomalies": (
        "Statecast / Anomalies",
        [
            (
                "Anomaly rate per model",
                "timeseries",
                "percentunit",
                [
                    (
                        "sum by (model) (rate(statecast_anomalies_total[5m])) / sum by (model) (rate(statecast_events_scored_total[5m]))",
                        "{{model}}",
                    ),
                ],
            ),
            (
                "Anomalies per minute",
                "timeseries",
                "short",
                [
                    ("sum by (model) (increase(statecast_anomalies_total[1m]))", "{{model}}"),
                ],
            ),
            (
                "Anomalies per minute, by reason",
                "timeseries",
                "short",
                [
                    (
                        "sum by (model, reason) (increase(statecast_anomalies_total[1m]))",
                        "{{model}} {{reason}}",
                    ),
                ],
            ),
            (
                "Firing Statecast alerts",
                "table",
                "short",
                [
                    ('ALERTS{alertname=~"Statecast.*"}', "{{alertname}}"),
                ],
            ),
        ],
    ),
    "statecast-models": (
        "Statecast / Models",
        [
            (
                "Version in service",
                "table",
                "short",
                [
                    ("statecast_model_info", "{{model}} {{version}}"),
                ],
            ),
            (
                "Swaps and refused versions (1h)",
                "timeseries",
                "short",
                [
                    (
                        "sum by (model) (increase(statecast_model_swaps_total[1h]))",
                        "swaps {{model}}",
                    ),
                    (
                        "sum by (model) (increase(statecast_models_refused_total[1h]))",
                        "refused {{model}}",
                    ),
                ],
            ),
            (
                "Streams a swap has yet to rebuild",
                "timeseries",
                "short",
                [
                    ("sum by (model) (statecast_swap_stale_streams)", "stale {{model}}"),
                ],
            ),
            (
                "Trainer runs and failures (1d)",
                "stat",
                "short",
                [
                    ("sum(increase(statecast_trainer_runs_total[1d]))", "runs"),
                    ("sum(increase(statecast_trainer_failures_total[1d]))", "failures"),
                ],
            ),
            (
                "Time since last successful refresh",
                "stat",
                "s",
                [
                    ("time() - max(statecast_trainer_last_success_timestamp_seconds)", "age"),
                ],
            ),
            (
                "Held-out MAE: champion vs last challenger",
                "timeseries",
                "short",
                [
                    ("max(statecast_trainer_champion_mae)", "champion"),
                    ("max(statecast_trainer_challenger_mae)", "challenger"),
                ],
            ),
            (
                "Live forecast error (MAE in stream spreads): champion vs shadow / previous",
                "timeseries",
                "short",
                [
                    (
                        "sum by (model, role) (rate(statecast_live_forecast_error_total[10m]))"
                        " / sum by (model, role) (rate(statecast_live_forecasts_total[10m]))",
                        "{{model}} {{role}}",
                    ),
                ],
            ),
            (
                "Live alarms per 1k events, and shadow agreement (1h)",
                "timeseries",
                "short",
                [
                    (
                        "1000 * sum by (model, role) (rate(statecast_live_alarms_total[1h]))"
                        " / sum by (model, role) (rate(statecast_live_forecasts_total[1h]))",
                        "alarms/1k {{model}} {{role}}",
                    ),
                    (
                        "sum by (model, outcome) (increase(statecast_shadow_alarm_agreement_total[1h]))",
                        "{{model}} {{outcome}}",
                    ),
                ],
            ),
            (
                "Drift: live error over validation error, input stability index (PSI)",
                "timeseries",
                "short",
                [
                    ("max by (model) (statecast_live_drift_ratio)", "error ratio {{model}}"),
                    ("max by (model) (statecast_live_input_psi)", "input PSI {{model}}"),
                ],
            ),
            (
                "Decisions on live evidence (1d)",
                "timeseries",
                "short",
                [
                    (
                        "sum by (model, decision) (increase(statecast_model_lifecycle_total[1d]))",
                        "{{model}} {{decision}}",
                    ),
                ],
            ),
        ],
    ),
}


def build(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    out = []
    for i, (ptitle, kind, unit, targets) in enumerate(panels):
        out.append(
            {
                "id": i + 1,
                "type": kind,
                "title": ptitle,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + j),
                        "expr": expr,
                        "legendFormat": legend,
                        "datasource": DATASOURCE,
                    }
                    | ({"instant": True, "format": "table"} if kind == "table" else {})
                    for j, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["statecast"],
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "panels": out,
        "templating": {"list": []},
        "annotations": {"list": []},
    }


def expressions() -> list[str]:
    """Every PromQL expression the dashboards use."""
    return [expr for _, (_, panels) in DASHBOARDS.items() for p in panels for expr, _ in p[3]]


def render() -> dict[str, str]:
    return {
        f"{uid}.json": json.dumps(build(uid, title, panels), indent=2) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
