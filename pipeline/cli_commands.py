"""Subcommands beyond ``kafka``: each registers its argparse parser in :data:`PARSERS`.

Handlers import their modules lazily so that ``statecast score`` never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.config import BACKENDS, KafkaConfig

__all__ = ["PARSERS", "score_argv"]

log = logging.getLogger("statecast")
PARSERS: list[Callable[[Any], None]] = []


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k not in ("func", "command", "action", "verbose")}


@contextlib.contextmanager
def _kafka_for(ns: argparse.Namespace) -> Iterator[KafkaConfig]:
    """The broker named by ``--bootstrap``, else the managed local one, which is stopped
    again afterwards if this command started it."""
    from pipeline.config import LocalKafkaConfig, load
    from pipeline.localkafka import LocalBroker

    flags = _flags(ns)
    if getattr(ns, "bootstrap", None):
        yield load(KafkaConfig, flags)
        return
    broker = LocalBroker(load(LocalKafkaConfig, {}))
    started = not broker.status().running
    flags["bootstrap"] = broker.up().bootstrap
    try:
        yield load(KafkaConfig, flags)
    finally:
        if started:
            broker.down()


def _register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    PARSERS.append(fn)
    return fn


def _kafka_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="HOST:PORT of the broker (env STATECAST_BOOTSTRAP)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Kafka client library (default kafka-python; env STATECAST_BACKEND)",
    )
    p.add_argument("--security-protocol", dest="security_protocol")
    p.add_argument("--sasl-mechanism", dest="sasl_mechanism")
    p.add_argument("--sasl-username", dest="sasl_username")
    p.add_argument("--ssl-cafile", dest="ssl_cafile")


# -- train ------------------------------------------------------------------------------


def _cmd_train(ns: argparse.Namespace) -> int:
    from pipeline.config import KafkaConfig, load
    from training.config import TrainConfig, load_train_config
    from training.schedule import TrainerMetrics, run_periodically
    from training.trainer import Trainer, TrainJob

    flags = _flags(ns)
    cfg: TrainConfig = load_train_config(
        {k: flags.get(k) for k in ("max_epochs", "hidden", "layers", "horizon", "seed")},
        Path(ns.config) if ns.config else None,
    )
    job = TrainJob(
        data=tuple(Path(p) for p in (ns.data or [])),
        from_kafka=ns.from_kafka,
        since=ns.since,
        registry=Path(ns.registry),
        model=ns.model,
        promote=ns.promote,
        plot=not ns.no_plot,
        progress=sys.stderr.isatty() or ns.progress,
        kafka=load(KafkaConfig, flags),
        publish_topic=ns.publish_topic,
    )

    def once(metrics: TrainerMetrics | None = None) -> int:
        outcome = Trainer(job, cfg).run()
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
        return run_periodically(once, ns.every, metrics_file=ns.metrics_file, metrics=metrics)
    return once()


@_register
def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a stacked-LSTM forecaster and register it")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", action="append", help="CSV file or folder (repeatable)")
    src.add_argument(
        "--from-kafka", dest="from_kafka", metavar="TOPIC", help="read the input topic"
    )
    p.add_argument("--since", default="7d", help="with --from-kafka: how far back (e.g. 7d)")
    p.add_argument("--registry", default="exported_models")
    p.add_argument("--model", default="default")
    p.add_argument("--max-epochs", dest="max_epochs", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--horizon", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--promote", choices=["auto", "always", "never"], default="auto")
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument("--every", help="retrain on a schedule, e.g. 24h (default: once)")
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
    p.add_argument("--no-plot", dest="no_plot", action="store_true")
    p.add_argument("--progress", action="store_true", help="progress bar even without a terminal")
    _kafka_flags(p)
    p.set_defaults(func=_cmd_train)


# -- models -----------------------------------------------------------------------------


def _cmd_models(ns: argparse.Namespace) -> int:
    from pipeline.engine.registry import Registry

    reg = Registry(Path(ns.registry))
    if ns.action == "list":
        for model in reg.models():
            current = reg.current(model)
            for v in reg.versions(model):
                mark = "*" if v == current else " "
                try:
                    meta = reg.meta(model, v, verify=False)
                    mae = meta.raw.get("validation", {}).get("mean_mae", float("nan"))
                    print(
                        f"{mark} {model}/{v}  features={','.join(meta.features)} "
                        f"L={meta.layers} H={meta.hidden} horizon={meta.horizon} mean_mae={mae:.4f}"
                    )
                except Exception as exc:  # a broken version is listed, not fatal
                    print(f"{mark} {model}/{v}  (unreadable: {exc})")
        return 0
    if ns.action == "show":
        meta = reg.meta(ns.model, ns.version)
        doc = dict(meta.raw)
        doc.get("fit", {}).pop("history", None)
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    if ns.action == "promote":
        if not ns.version:
            print("statecast: error: promote needs a VERSION", file=sys.stderr)
            return 2
        reg.promote(ns.model, ns.version)
        print(f"{ns.model} now serves {ns.version}")
        return 0
    target = reg.rollback(ns.model)
    print(f"{ns.model} rolled back to {target}")
    return 0


@_register
def _models_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back registered models")
    p.add_argument("action", choices=["list", "show", "promote", "rollback"])
    p.add_argument("version", nargs="?")
    p.add_argument("--registry", default="exported_models")
    p.add_argument("--model", default="default")
    p.set_defaults(func=_cmd_models)


# -- score ------------------------------------------------------------------------------


def score_argv(
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    group: str,
    *extra: str,
    dlq_topic: str | None = None,
    backend: str | None = None,
) -> list[str]:
    """The command line of a `statecast score` child process (bench, demo, tests):
    this interpreter, the given topics and group (DLQ: ``<output>.dlq``), the Kafka
    backend if given, then ``extra``."""
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "score",
        "--bootstrap",
        bootstrap,
        "--input-topic",
        input_topic,
        "--output-topic",
        output_topic,
        "--dlq-topic",
        dlq_topic or output_topic + ".dlq",
        "--group",
        group,
        *(("--backend", backend) if backend else ()),
        *extra,
    ]


def _cmd_score(ns: argparse.Namespace) -> int:
    from pipeline.config import ScorerConfig, load
    from pipeline.scorer import Scorer, tune_gc

    config = load(ScorerConfig, _flags(ns))
    scorer = Scorer(config)
    tune_gc()
    log.info(
        "scoring %s -> %s (group %s, models %s)",
        config.input_topic,
        config.output_topic,
        config.group,
        {m.name: m.version for m in scorer.models.values()},
    )
    code = scorer.run()
    log.info("scorer stopped after %d records", scorer.processed)
    return code


@_register
def _score_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="run the stateful scorer (Kafka consumer)")
    _kafka_flags(p)
    p.add_argument("--input-topic", dest="input_topic")
    p.add_argument("--output-topic", dest="output_topic")
    p.add_argument("--dlq-topic", dest="dlq_topic")
    p.add_argument("--group")
    p.add_argument("--registry")
    p.add_argument("--model", help="default model (env STATECAST_MODEL)")
    p.add_argument(
        "--route",
        dest="routes",
        action="append",
        help="PREFIX=MODEL: streams whose id starts with PREFIX use MODEL (repeatable)",
    )
    p.add_argument("--metrics-port", dest="metrics_port", type=int)
    p.add_argument("--metrics-host", dest="metrics_host")
    p.add_argument(
        "--until-idle",
        dest="until_idle",
        type=float,
        help="exit 0 after this many seconds without input",
    )
    p.add_argument("--max-poll-records", dest="max_poll_records", type=int)
    p.add_argument("--state-ttl-s", dest="state_ttl_s", type=float)
    p.add_argument("--gap-reset-s", dest="gap_reset_s", type=float)
    p.add_argument("--late-tolerance-s", dest="late_tolerance_s", type=float)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument(
        "--guarantee",
        choices=["at-least-once", "exactly-once"],
        help="exactly-once: outputs, changelog and offsets in one Kafka transaction",
    )
    p.add_argument(
        "--model-topic",
        dest="model_topic",
        help="also follow models published on this compacted topic (e.g. statecast-models)",
    )
    p.add_argument(
        "--instance-id",
        dest="instance_id",
        help="stable id of this scorer (exactly-once: one per process in the group; "
        "default: the host name)",
    )
    p.add_argument(
        "--commit-interval-s",
        dest="commit_interval_s",
        type=float,
        help="seconds between checkpoints (changelog + flush + commit); 0: every batch",
    )
    p.add_argument(
        "--no-changelog",
        dest="changelog",
        action="store_const",
        const=False,
        help="keep state in memory only (it is lost on restart)",
    )
    p.set_defaults(func=_cmd_score)


# -- generate ---------------------------------------------------------------------------


def _cmd_generate(ns: argparse.Namespace) -> int:
    from training.synthetic import generate, write_csv

    streams = generate(
        streams=ns.streams,
        length=ns.length,
        seed=ns.seed,
        step_s=ns.step_s,
        anomalies_per_stream=ns.anomalies,
        prefix=ns.prefix,
    )
    paths = write_csv(streams, Path(ns.out))
    labels = {s.name: [[a.kind, a.start, a.end] for a in s.anomalies] for s in streams}
    (Path(ns.out) / "labels.json").write_text(json.dumps(labels, indent=1))
    print(
        f"wrote {len(paths)} streams x {ns.length} points to {ns.out} (labels.json lists the injected anomalies)"
    )
    return 0


@_register
def _generate_parser(sub: Any) -> None:
    p = sub.add_parser("generate", help="write synthetic sensor CSVs with injected anomalies")
    p.add_argument("--out", required=True)
    p.add_argument("--streams", type=int, default=24)
    p.add_argument("--length", type=int, default=4000)
    p.add_argument("--step-s", dest="step_s", type=float, default=300.0)
    p.add_argument("--anomalies", type=int, default=2, help="anomalies per stream")
    p.add_argument("--prefix", default="sensor")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_generate)


# -- replay / detect ----------------------------------------------------------------------


def _cmd_replay(ns: argparse.Namespace) -> int:
    from pipeline.commands.replay import collect_streams, replay
    from pipeline.config import KafkaConfig, load

    streams = collect_streams([Path(p) for p in ns.paths])
    n = replay(
        load(KafkaConfig, _flags(ns)),
        ns.topic,
        streams,
        rate=ns.rate,
        speedup=ns.speedup,
        progress=not ns.no_progress,
    )
    print(f"replayed {n} events from {len(streams)} streams into {ns.topic}")
    return 0


@_register
def _replay_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="produce CSV rows as sensor events")
    p.add_argument("paths", nargs="+", help="CSV files or folders")
    p.add_argument("--topic", default="sensor-readings")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="events per second")
    pace.add_argument("--speedup", type=float, help="times real time, by the timestamps")
    p.add_argument("--no-progress", dest="no_progress", action="store_true")
    _kafka_flags(p)
    p.set_defaults(func=_cmd_replay)


def _cmd_detect(ns: argparse.Namespace) -> int:
    from pipeline.commands.detect import DetectJob, detect

    with _kafka_for(ns) as kafka:
        job = DetectJob(
            inputs=tuple(Path(p) for p in ns.inputs),
            output=Path(ns.output),
            registry=Path(ns.registry),
            model=ns.model,
            kafka=kafka,
            progress=not ns.no_progress,
        )
        written = detect(job)
    print(f"wrote {len(written)} result files ({sum(written.values())} rows) to {ns.output}")
    return 0


@_register
def _detect_parser(sub: Any) -> None:
    p = sub.add_parser(
        "detect", help="score CSV files through the real pipeline (NAB results format)"
    )
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", required=True)
    p.add_argument("--registry", default="exported_models")
    p.add_argument("--model", default="default")
    p.add_argument("--no-progress", dest="no_progress", action="store_true")
    _kafka_flags(p)
    p.set_defaults(func=_cmd_detect)


# -- demo -------------------------------------------------------------------------------


def _cmd_demo(ns: argparse.Namespace) -> int:
    from pipeline.commands.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            registry=Path(ns.registry),
            model=ns.model,
            metrics_port=ns.metrics_port,
            rate=ns.rate,
            sensors=ns.sensors,
            points=ns.points,
        )
    )
    return 0


@_register
def _demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="end-to-end demo: broker, scorer, replayed feed, report")
    p.add_argument("--registry", default="exported_models")
    p.add_argument("--model", default="default")
    p.add_argument("--metrics-port", dest="metrics_port", type=int, default=9108)
    p.add_argument("--rate", type=float, default=120.0, help="events per second")
    p.add_argument("--sensors", type=int, default=12)
    p.add_argument("--points", type=int, default=600)
    p.set_defaults(func=_cmd_demo)


# -- bench ------------------------------------------------------------------------------


def _cmd_bench(ns: argparse.Namespace) -> int:
    from pipeline.commands.bench import BenchOptions, print_table, run_bench

    with _kafka_for(ns) as kafka:
        where = {"registry": Path(ns.registry), "model": ns.model}
        opts = (
            BenchOptions.quick(kafka, **where) if ns.quick else BenchOptions(kafka=kafka, **where)
        )
        sizes = {"events": ns.events, "streams": ns.streams, "runs": ns.runs}
        opts = dataclasses.replace(opts, **{k: v for k, v in sizes.items() if v})
        if ns.backend:  # measure this backend only (default: every installed one)
            opts = dataclasses.replace(opts, backends=(ns.backend,))
        report = run_bench(opts)
    print_table(report)
    if ns.json:
        Path(ns.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {ns.json}")
    return 0


@_register
def _bench_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="scorer vs naive vs passthrough vs model-only, side by side")
    p.add_argument("--quick", action="store_true", help="a small version (about a minute)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--events", type=int)
    p.add_argument("--streams", type=int)
    p.add_argument("--runs", type=int)
    p.add_argument("--registry", default="exported_models")
    p.add_argument("--model", default="default")
    _kafka_flags(p)
    p.set_defaults(func=_cmd_bench)
