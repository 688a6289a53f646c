"""The harness the side-by-side benchmarks share (linger.py, versions_e2e.py, guarantee.py,
input_format.py, output_format.py): the scorer's maximum throughput for a few variants,
side by side on one pre-filled topic; loop_profile.py takes its topic and worker
arguments from here too."""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import BenchOptions, _fill, _run_worker  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import ensure_topic  # noqa: E402


def alternate(
    kafka: KafkaConfig,
    variants: dict[str, dict[str, Any]],
    *,
    events: int,
    streams: int,
    rounds: int,
    prefix: str,
) -> dict[str, list[float]]:
    """Events/s per run of each variant (``label -> worker arguments``: ``registry`` and
    ``model`` at least, and any scorer setting such as ``poll_linger_ms``).

    One topic filled with ``events`` over ``streams``; each round runs one scorer process
    per variant, alternating, each a fresh consumer group reading the whole topic, as
    `statecast bench`'s statecast row does; prints events/s per run and the median per
    variant."""
    run, topic = fill_topic(kafka, events=events, streams=streams, prefix=prefix)
    got: dict[str, list[float]] = {label: [] for label in variants}
    for r in range(rounds):
        for k, (label, settings) in enumerate(variants.items()):
            args = worker_args(
                kafka, topic, f"{prefix}-{run}-{k}-{r}", events=events, streams=streams
            )
            res = _run_worker("statecast", {**args, **settings})
            got[label].append(res["events_per_s"])
            print(f"round {r + 1} {label}: {res['events_per_s']:>9.0f} events/s", flush=True)
    for label, rates in got.items():
        print(f"{label}: median {statistics.median(rates):>9.0f} events/s")
    return got


def fill_topic(
    kafka: KafkaConfig, *, events: int, streams: int, prefix: str, binary: bool = False
) -> tuple[str, str]:
    """A fresh topic filled with ``events`` over ``streams`` (binary events with
    ``binary``, else JSON); returns ``(run, topic)``, ``run`` a tag unique to it."""
    opts = BenchOptions(kafka=kafka, streams=streams)
    run = uuid.uuid4().hex[:8]
    topic = f"{prefix}-{run}-in"
    ensure_topic(kafka, topic, opts.partitions)
    _fill(opts, topic, events, binary=binary)
    return run, topic


def worker_args(
    kafka: KafkaConfig, topic: str, name: str, *, events: int, streams: int
) -> dict[str, Any]:
    """A statecast bench worker's arguments for one run over ``topic``: a consumer group
    ``name`` of its own and an output topic ``{name}-out`` (add ``registry``, ``model``
    and any scorer setting)."""
    return {
        "bootstrap": kafka.bootstrap,
        "streams": streams,
        "backend": kafka.backend,
        "input": topic,
        "output": f"{name}-out",
        "group": name,
        "events": events,
    }


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every side-by-side script takes: the broker, the topic's size, the
    rounds, the registry and the Kafka client."""
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")  # `statecast kafka up`
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--streams", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--backend", default="confluent-kafka")


def int_setting_variants(
    a: argparse.Namespace, setting: str, values: str, label: str
) -> dict[str, dict[str, Any]]:
    """Variants of the default model that differ in one integer scorer setting: one per
    comma-separated value of ``values``, labelled ``label.format(value)``."""
    return {
        label.format(int(v)): {"registry": str(a.registry), "model": "default", setting: int(v)}
        for v in values.split(",")
    }


def alternate_from(
    a: argparse.Namespace, variants: dict[str, dict[str, Any]], *, prefix: str
) -> dict[str, list[float]]:
    """:func:`alternate` with the options :func:`add_arguments` parsed into ``a``."""
    return alternate(
        KafkaConfig(bootstrap=a.bootstrap, backend=a.backend),
        variants,
        events=a.events,
        streams=a.streams,
        rounds=a.rounds,
        prefix=prefix,
    )
