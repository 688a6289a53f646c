"""``statecast backtest``: files replayed in event time through the real pipeline, with
model refreshes along the way, as production would have run them.

1. copy the model from the registry into a work registry (the backtest never promotes
   anything in yours) and cut the files' common timeline into periods: the first ends
   ``--learn`` after the earliest event, the next ones every ``--refresh``;
2. for each period: replay its rows (of every file, in event time) into one input topic
   and run the real :class:`~pipeline.scorer.Scorer` until idle; every period's scorer
   joins the same group, so offsets and per-stream state (changelog) carry over exactly
   as across a restart;
3. after each period but the last: train on everything seen so far (rows before the
   period's end: causal, no look-ahead), warm-started from the champion, through the
   champion/challenger gate (``--promote auto``); a promoted version is what the next
   period's scorer serves, its streams' state rebuilt from their recent inputs;
4. read the scores back (one per input record) and write, per file, ``detect``'s columns
   plus ``model_version``; print per period the served version, the one-step MAE against
   persistence and the alarm count.

Without ``--refresh`` it is ``detect`` with a report per period.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.commands.flags import add_kafka_flags, add_model_flags, kafka_for, models_config
from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.engine.csvdata import Series
from pipeline.errors import ConfigError

__all__ = ["BacktestJob", "Period", "add_parser", "backtest", "run"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BacktestJob:
    inputs: tuple[Path, ...]
    output: Path
    registry: Path = Path("exported_models")
    model: str = "default"
    kafka: KafkaConfig = dataclasses.field(default_factory=KafkaConfig)
    refresh_s: float | None = None  # event time between refreshes; None: no refresh
    learn_s: float | None = None  # event time before the first refresh (default: refresh_s)
    max_epochs: int = 5
    warmup_steps: int = 48
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("refresh_s", "learn_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.max_epochs < 1:
            raise ConfigError("max_epochs must be >= 1")


@dataclasses.dataclass
class Period:
    """One stretch of event time: what was served on it and how it went."""

    start: float
    end: float
    rows: int
    version: str
    mae_ratio: float  # one-step MAE / persistence's on the period's rows (NaN: too few)
    alarms: int
    trained: str | None = None  # the version trained after it, if any
    promoted: bool = False
    trained_until: float | None = None  # the newest event time that training saw
    warm_from: str | None = None  # the version its weights started from


def _cuts(streams: list[Series], job: BacktestJob) -> list[float]:
    """Period boundaries in event time: [t0, t1, ..., t_end + 1)."""
    t0 = min(float(s.ts.min()) for s in streams)
    t_end = max(float(s.ts.max()) for s in streams)
    cuts = [t0]
    if job.refresh_s is not None:
        at = t0 + (job.learn_s or job.refresh_s)
        while at <= t_end:
            cuts.append(at)
            at += job.refresh_s
    cuts.append(t_end + 1.0)
    return cuts


def _slice(s: Series, lo: float, hi: float) -> Series:
    keep = (s.ts >= lo) & (s.ts < hi)
    text = tuple(t for t, k in zip(s.ts_text, keep.tolist(), strict=True) if k) if s.ts_text else ()
    return Series(s.name, s.ts[keep], s.values[keep], s.features, text)


def _write_prefix(streams: list[Series], until: float, folder: Path) -> list[Path]:
    """Every stream's rows before ``until`` as CSV (the data a refresh may learn from)."""
    paths = []
    for s in streams:
        part = _slice(s, -np.inf, until)
        if not len(part.ts):
            continue
        path = folder / f"{s.name.replace('/', '__')}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", *s.features])
            for t, row in zip(part.ts.tolist(), part.values.tolist(), strict=True):
                w.writerow([t, *row])
        paths.append(path)
    return paths


def backtest(job: BacktestJob) -> list[Period]:
    """Run the backtest; writes per-file results into ``job.output``."""
    from pipeline.commands.detect import _first_step, _read_outputs, write_results
    from pipeline.commands.replay import collect_streams, replay
    from pipeline.engine.registry import Registry
    from pipeline.scorer import Scorer

    streams = collect_streams(job.inputs)
    work = Path(tempfile.mkdtemp(prefix="statecast-backtest-"))
    # 1. A private registry, seeded with the model as it is.
    registry = work / "models"
    shutil.copytree(job.registry / job.model, registry / job.model)
    reg = Registry(registry)
    cuts = _cuts(streams, job)
    run = uuid.uuid4().hex[:8]
    topic = f"statecast-backtest-{run}"
    periods: list[Period] = []
    total = 0
    for k, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        # 2. This period through the real scorer (same group: offsets and state carry over).
        part = [_slice(s, lo, hi) for s in streams]
        part = [p for p in part if len(p.ts)]
        sent = replay(job.kafka, topic, part, progress=job.progress) if part else 0
        total += sent
        version = reg.current(job.model) or "?"
        Scorer(
            ScorerConfig(
                kafka=job.kafka,
                input_topic=topic,
                output_topic=topic + ".scores",
                dlq_topic=topic + ".dlq",
                group=f"statecast-backtest-{run}",
                registry=registry,
                model=job.model,
                until_idle=5.0,
                late_tolerance_s=1e12,
                gap_reset_s=1e12,
                warmup_steps=job.warmup_steps,
                max_poll_records=5000,
                state_capacity=max(64, len(streams)),
            )
        ).run()
        periods.append(Period(lo, hi, sent, version, float("nan"), 0))
        # 3. Refresh on everything seen so far.
        if k < len(cuts) - 2:
            _refresh(job, streams, hi, registry, work / f"seen-{k}", periods[-1])
    # 4. Results, and the report per period.
    by_stream = _read_outputs(job.kafka, topic + ".scores", total)
    model_err, persist_err = np.zeros(len(periods)), np.zeros(len(periods))
    for s in streams:
        docs = by_stream.get(s.name, [])
        write_results(job.output / f"{s.name}.csv", s, docs, extra=("model_version",))
        which = np.searchsorted(np.asarray(cuts), s.ts, side="right") - 1
        v = s.values[:, 0]
        fc = np.asarray([_number(_first_step(d["forecast"])) for d in docs])
        # The forecast made at row i (in period which[i]) is of row i + 1.
        np.add.at(model_err, which[:-1], np.abs(fc[:-1] - v[1:]))
        np.add.at(persist_err, which[:-1], np.abs(v[:-1] - v[1:]))
        for k, flagged in zip(which.tolist(), (bool(d["is_anomaly"]) for d in docs), strict=True):
            periods[k].alarms += flagged
    for p, m, q in zip(periods, model_err.tolist(), persist_err.tolist(), strict=True):
        p.mae_ratio = m / q if q > 0 else float("nan")
    shutil.rmtree(work, ignore_errors=True)
    return periods


def _number(x: object) -> float:
    return float(x) if isinstance(x, int | float) else float("nan")


def _refresh(
    job: BacktestJob,
    streams: list[Series],
    until: float,
    registry: Path,
    folder: Path,
    period: Period,
) -> None:
    """Train on the rows before ``until`` (warm start, champion/challenger gate); what
    happened goes into ``period``."""
    from pipeline.errors import DataError
    from training.config import TrainConfig
    from training.trainer import Trainer, TrainJob

    data = _write_prefix(streams, until, folder)
    try:
        outcome = Trainer(
            TrainJob(
                data=tuple(data),
                registry=registry,
                model=job.model,
                promote="auto",
                plot=False,
                progress=False,
                warm_start=True,
            ),
            _config_like_champion(registry, job.model, TrainConfig, job.max_epochs),
        ).run()
    except DataError as exc:  # too little data yet: keep serving, try at the next refresh
        print(f"  refresh at {until:.0f}: skipped ({exc})")
        return
    period.trained, period.promoted = outcome.version, outcome.promoted
    period.trained_until = float(outcome.doc["data_summary"]["time_range"][1])
    period.warm_from = outcome.doc.get("warm_start_from")


def _config_like_champion(registry: Path, model: str, cls: Any, max_epochs: int) -> Any:
    """The champion's own training config (so the warm start fits), fewer epochs."""
    import json

    from pipeline.engine.registry import Registry

    current = Registry(registry).current(model)
    doc = json.loads((registry / model / str(current) / "model.json").read_text())
    fields = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in doc.get("training_config", {}).items() if k in fields}
    if "covariates" in known:
        known["covariates"] = tuple(known["covariates"])
    return cls(**{**known, "max_epochs": max_epochs})


# -- the subcommand ------------------------------------------------------------


def run(ns: argparse.Namespace) -> int:
    from pipeline.commands.backtest import BacktestJob, backtest
    from training.data import parse_duration

    with kafka_for(ns) as kafka:
        job = BacktestJob(
            inputs=tuple(Path(p) for p in ns.inputs),
            output=Path(ns.output),
            registry=models_config(ns).registry,
            model=models_config(ns).model,
            kafka=kafka,
            refresh_s=parse_duration(ns.refresh) if ns.refresh else None,
            learn_s=parse_duration(ns.learn) if ns.learn else None,
            max_epochs=ns.max_epochs,
            progress=not ns.no_progress,
        )
        periods = backtest(job)
    print(f"{'period (event time, epoch s)':<32} {'rows':>7} {'served':<22} {'MAE/persist':>11} "
          f"{'alarms':>6}  refresh")  # fmt: skip
    for p in periods:
        after = (
            f"{p.trained} ({'promoted' if p.promoted else 'kept champion'})" if p.trained else "-"
        )
        print(
            f"{p.start:>14.0f} .. {p.end:<14.0f} {p.rows:>7} {p.version:<22} "
            f"{p.mae_ratio:>11.3f} {p.alarms:>6}  {after}"
        )
    print(f"results in {ns.output}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help="replay files in event time through the pipeline, refreshing the model as it goes",
    )
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", required=True)
    p.add_argument("--refresh", help="event time between refreshes, e.g. 7d (default: none)")
    p.add_argument("--learn", help="event time before the first refresh (default: --refresh)")
    p.add_argument("--max-epochs", dest="max_epochs", type=int, default=5)
    add_model_flags(p)
    p.add_argument("--no-progress", dest="no_progress", action="store_true")
    add_kafka_flags(p)
    p.set_defaults(func=run)
