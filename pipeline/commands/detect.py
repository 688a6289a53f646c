"""``statecast detect``: CSV files end to end through the real pipeline, NAB results out.

1. make sure a broker runs (the managed local one unless ``--bootstrap`` is given);
2. replay every file into a fresh input topic (stream id = relative path);
3. run the real :class:`~pipeline.scorer.Scorer` until the topic is idle;
4. read the output topic and write, per input file, ``timestamp,value,anomaly_score,
   forecast,forecast_lo,forecast_hi,is_anomaly`` with one row per input row, in input
   order (the t+1 forecast made at that row and its interval; the interval columns are
   empty for a model without a scale head).

Causal by construction: the scorer sees each stream's rows in file order and
scores a row before it learns from it. Scores are 0 while a stream warms up.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from pipeline.commands.flags import add_kafka_flags, add_model_flags, kafka_for, models_config
from pipeline.commands.replay import collect_streams, replay
from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.engine.csvdata import Series
from pipeline.errors import KafkaError
from pipeline.scorer import Scorer

__all__ = ["COLUMNS", "DetectJob", "add_parser", "detect", "run", "write_results"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DetectJob:
    inputs: tuple[Path, ...]
    output: Path
    registry: Path = Path("exported_models")
    model: str = "default"
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    warmup_steps: int = 48
    progress: bool = True


def _read_outputs(
    kafka: KafkaConfig, topic: str, expect: int
) -> dict[str, list[dict[str, object]]]:
    import kafka as kp

    from pipeline.kafka_io.kafkapython import await_partitions, client_settings

    consumer = kp.KafkaConsumer(enable_auto_commit=False, **client_settings(kafka))
    parts = await_partitions(consumer, topic, 0.0)
    if not parts:
        consumer.close()
        raise KafkaError(f"expected {expect} scores in {topic}, but the topic does not exist")
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    # At-least-once: a rebalance before the first checkpoint scores some inputs twice (from
    # the same state, so alike); one score per input record, the last one written.
    by_input: dict[tuple[int, int], dict[str, object]] = {}
    while any(consumer.position(tp) < ends[tp] for tp in parts):
        for recs in consumer.poll(timeout_ms=1000, max_records=10000).values():
            for r in recs:
                doc = orjson.loads(r.value)
                by_input[(int(doc["partition"]), int(doc["offset"]))] = doc
    consumer.close()
    if len(by_input) != expect:
        raise KafkaError(f"expected {expect} scores in {topic}, found {len(by_input)}")
    by_stream: dict[str, list[dict[str, object]]] = defaultdict(list)
    for _, doc in sorted(by_input.items()):
        by_stream[str(doc["stream_id"])].append(doc)
    return by_stream


def detect(job: DetectJob) -> dict[str, int]:
    """Run the files through the pipeline; returns rows written per stream."""
    streams = collect_streams(job.inputs)
    run = uuid.uuid4().hex[:8]
    topic = f"statecast-detect-{run}"
    # 2. Replay.
    total = replay(job.kafka, topic, streams, progress=job.progress)
    # 3. The real scorer, until idle. Late rows are scored, not dead-lettered: NAB files
    # step back an hour at DST changes, and results need one row per input row.
    config = ScorerConfig(
        kafka=job.kafka,
        input_topic=topic,
        output_topic=topic + ".scores",
        dlq_topic=topic + ".dlq",
        group=f"statecast-detect-{run}",
        registry=job.registry,
        model=job.model,
        until_idle=5.0,
        late_tolerance_s=1e12,
        gap_reset_s=1e12,
        warmup_steps=job.warmup_steps,
        max_poll_records=5000,
        state_capacity=max(64, len(streams)),
    )
    scorer = Scorer(config)
    scorer.run()
    # 4. Results.
    by_stream = _read_outputs(job.kafka, config.output_topic, total)
    written = {}
    for s in streams:
        docs = by_stream.get(s.name, [])
        write_results(job.output / f"{s.name}.csv", s, docs)
        written[s.name] = len(docs)
    return written


COLUMNS = (
    "timestamp",
    "value",
    "anomaly_score",
    "forecast",
    "forecast_lo",
    "forecast_hi",
    "is_anomaly",
)


def write_results(
    path: Path, s: Series, docs: list[dict[str, object]], extra: tuple[str, ...] = ()
) -> None:
    """One CSV row per input row of ``s``: NAB's results columns (the score 0 while the
    stream warms up), the t+1 forecast and its interval, then the score records' ``extra``
    fields. Raises KafkaError unless every row has exactly one score."""
    if len(docs) != len(s.ts):
        raise KafkaError(f"{s.name}: {len(s.ts)} rows in, {len(docs)} scores out")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*COLUMNS, *extra])
        for i, d in enumerate(docs):
            score = float(d["anomaly_score"]) if d["warm"] else 0.0  # type: ignore[arg-type]
            w.writerow(
                [
                    s.ts_text[i] if s.ts_text else d["ts"],
                    s.values[i, 0],
                    f"{score:.9f}",
                    *(_first_step(d.get(k)) for k in ("forecast", "forecast_lo", "forecast_hi")),
                    int(bool(d["is_anomaly"])),
                    *(d[k] for k in extra),
                ]
            )


def _first_step(steps: object) -> object:
    """The t+1 entry of a forecast-shaped field ("" when absent or null)."""
    if isinstance(steps, list) and steps and steps[0] is not None:
        return steps[0]
    return ""


# -- the subcommand ------------------------------------------------------------


def run(ns: argparse.Namespace) -> int:
    from pipeline.commands.detect import DetectJob, detect

    with kafka_for(ns) as kafka:
        job = DetectJob(
            inputs=tuple(Path(p) for p in ns.inputs),
            output=Path(ns.output),
            registry=models_config(ns).registry,
            model=models_config(ns).model,
            kafka=kafka,
            progress=not ns.no_progress,
        )
        written = detect(job)
    print(f"wrote {len(written)} result files ({sum(written.values())} rows) to {ns.output}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "detect", help="score CSV files through the real pipeline (NAB results format)"
    )
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", required=True)
    add_model_flags(p)
    p.add_argument("--no-progress", dest="no_progress", action="store_true")
    add_kafka_flags(p)
    p.set_defaults(func=run)
