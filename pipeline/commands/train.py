"""``statecast train``: train a stacked-LSTM forecaster and register it (once or on a schedule).

Imports torch only when run, so the rest of the CLI stays light."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.commands.flags import add_kafka_flags, add_model_flags, flags, models_config

__all__ = ["add_parser", "run"]


def run(ns: argparse.Namespace) -> int:
    from pipeline.config import KafkaConfig, load
    from training.config import TrainConfig, load_train_config
    from training.schedule import TrainerMetrics, run_periodically
    from training.trainer import Trainer, TrainJob

    given = flags(ns)
    cfg: TrainConfig = load_train_config(
        {k: given.get(k) for k in ("max_epochs", "hidden", "layers", "horizon", "seed")},
        Path(ns.config) if ns.config else None,
    )
    job = TrainJob(
        data=tuple(Path(p) for p in (ns.data or [])),
        from_kafka=ns.from_kafka,
        since=ns.since,
        registry=models_config(ns).registry,
        model=models_config(ns).model,
        promote=ns.promote,
        plot=not ns.no_plot,
        progress=sys.stderr.isatty() or ns.progress,
        kafka=load(KafkaConfig, given),
        publish_topic=ns.publish_topic,
        sign_key=Path(ns.sign_key) if ns.sign_key else None,
        warm_start=ns.warm_start,
        when=ns.when,
        drift_ratio=ns.drift_ratio,
    )

    def once(metrics: TrainerMetrics | None = None) -> int:
        outcome = Trainer(job, cfg).run()
        drift = outcome.doc.get("drift_ratio")
        if metrics is not None and isinstance(drift, float):
            metrics.drift.set(drift)
        if outcome.version is None:
            if metrics is not None:
                metrics.skipped.inc()
            print(f"model {job.model}: {outcome.reason}", file=sys.stderr)
            return 0
        if metrics is not None:
            metrics.record(outcome.doc["champion_comparison"])
        v = outcome.doc["validation"]
        print(
            f"model {job.model} version {outcome.version}: "
            f"{'promoted' if outcome.promoted else 'not promoted'} ({outcome.reason})\n"
            f"  validation MAE per horizon {['%.3f' % m for m in v['mae']]} vs persistence "
            f"{['%.3f' % m for m in v['persistence_mae']]} (skill h1 {v['skill'][0]:+.3f})\n"
            f"  epochs {outcome.doc['fit']['epochs_run']} (best {outcome.doc['fit']['best_epoch']}), "
            f"parity {outcome.doc['parity_max_abs_diff']:.2e}, "
            f"{outcome.doc['export']['bytes'] / 1024:.0f} KiB, {outcome.doc['train_seconds']:.1f}s\n"
            f"  {outcome.folder}",
            file=sys.stderr,
        )
        print(outcome.version)
        return 0

    if ns.every or ns.metrics_file or ns.metrics_port:
        metrics = TrainerMetrics()
        if ns.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(ns.metrics_port, addr=ns.metrics_host, registry=metrics.registry)
        return run_periodically(
            once, ns.every, metrics_file=ns.metrics_file, metrics=metrics, retry=ns.retry
        )
    return once()


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a stacked-LSTM forecaster and register it")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", action="append", help="CSV file or folder (repeatable)")
    src.add_argument(
        "--from-kafka", dest="from_kafka", metavar="TOPIC", help="read the input topic"
    )
    p.add_argument("--since", default="7d", help="with --from-kafka: how far back (e.g. 7d)")
    add_model_flags(p)
    p.add_argument("--max-epochs", dest="max_epochs", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--horizon", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--promote",
        choices=["auto", "always", "never", "shadow"],
        default="auto",
        help="auto: promote a challenger that beats the champion on the held-out window; "
        "shadow: instead make it the SHADOW version, which scorers run beside the champion "
        "and promote on live evidence (score --shadow-promote-after)",
    )
    p.add_argument(
        "--warm-start",
        dest="warm_start",
        action="store_true",
        help="fine-tune the champion's weights (same architecture) instead of starting afresh",
    )
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument("--every", help="retrain on a schedule, e.g. 24h (default: once)")
    p.add_argument(
        "--when",
        choices=["always", "drift"],
        default="always",
        help="drift: train only if the champion's error on the recent data exceeds its "
        "validation error --drift-ratio times (check often, e.g. --every 1h, to refresh "
        "early on drift and skip runs when nothing changed)",
    )
    p.add_argument("--drift-ratio", dest="drift_ratio", type=float, default=1.3)
    p.add_argument(
        "--retry", help="with --every: after a failed run, try again after this (e.g. 10m)"
    )
    p.add_argument(
        "--metrics-file",
        dest="metrics_file",
        help="write trainer metrics in Prometheus textfile-collector format",
    )
    p.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="serve trainer metrics on this port while running (with --every)",
    )
    p.add_argument("--metrics-host", dest="metrics_host", default="127.0.0.1")
    p.add_argument(
        "--publish-topic",
        dest="publish_topic",
        help="also publish promoted models to this compacted topic (e.g. statecast-models)",
    )
    p.add_argument(
        "--sign-key",
        dest="sign_key",
        help="Ed25519 private key (PEM, `statecast models keygen`) to sign published models",
    )
    p.add_argument("--no-plot", dest="no_plot", action="store_true")
    p.add_argument("--progress", action="store_true", help="progress bar even without a terminal")
    add_kafka_flags(p)
    p.set_defaults(func=run)
