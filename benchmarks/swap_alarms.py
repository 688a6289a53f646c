"""Does a model refresh raise alarms? The demo's machines, scored with a live swap.

    .venv/bin/python benchmarks/swap_alarms.py [--before v20261201T044523Z]
        [--after v20261201T070904Z] [--seeds 7-12] [--hours 0,12] [--swap-at 200]
        [--replay-steps 64[,32,...]]

``make demo``'s feed (12 generated machines, 600 values a minute apart, one injected
anomaly each after the first 35%) is scored through the scorer's own served model
(:class:`pipeline.engine.serving.ServedModel`) three ways, each in a private copy of the
registry: ``--before`` serving throughout, ``--after`` serving throughout, and ``--before``
swapped live for ``--after`` at value ``--swap-at`` (``maybe_swap``, as a promotion makes
the scorer do). Alarms (score at the model's threshold, after the stream's warm-up) more
than 5 values before or 30 after every injected anomaly are false; the script prints
them per feed (seed and start hour: the daily profile depends on the time of day) and in
total, with the mean absolute forecast error (in the stream's spread) over the
``AFTER_SWAP`` values after ``--swap-at`` outside those anomaly spans: how good the
rebuilt state's forecasts are at once. ``--replay-steps``: the swap with each of these
replay-ring lengths (the scorer's ``replay_steps``, 64 by default; the ring is a quarter
of a stream's state). Defaults: the 2026-12-01 default's two versions the demo swapped
between (the first without a scale head).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.events import DecodedBatch  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.engine.serving import ServedModel  # noqa: E402
from pipeline.engine.stepper import REASONS  # noqa: E402
from training.synthetic import generate  # noqa: E402

Alarm = tuple[str, int, float, str]
AFTER_SWAP = 100  # values after the swap whose forecast error is averaged


def false_alarms(
    registry: Path,
    model: str,
    first: str,
    second: str | None,
    swap_at: int,
    seed: int,
    hour: int,
    replay_steps: int = 64,
) -> tuple[list[Alarm], list[float]]:
    """The feed of ``seed`` starting at ``hour`` scored by ``first``, swapped for ``second``
    at value ``swap_at`` (None: no swap); its false alarms (stream, value, score, reason)
    and the absolute errors of the ``AFTER_SWAP`` values after ``swap_at`` outside the
    anomalies' spans."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(registry / model, Path(tmp) / model)
        reg = Registry(Path(tmp))
        reg.promote(model, first)
        served = ServedModel(model, reg, replay_steps=replay_steps)
        feed = generate(
            streams=12,
            length=600,
            seed=seed,
            step_s=60.0,
            start=datetime(2026, 12, 3, hour, 17, tzinfo=UTC),
            prefix="machine",
            anomalies_per_stream=1,
            clean_fraction=0.35,
        )
        names = [s.name for s in feed]
        rows = np.arange(len(feed), dtype=np.int64)
        out: list[Alarm] = []
        errors: list[float] = []
        for t in range(len(feed[0].ts)):
            if second is not None and t == swap_at:
                reg.promote(model, second)
                if served.maybe_swap() != second:
                    raise SystemExit(f"the served model did not swap to {second}")
            batch = DecodedBatch(
                index=rows,
                stream_ids=names,
                ts=np.asarray([s.ts[t] for s in feed]),
                values=np.asarray([[s.values[t]] for s in feed]),
                ts_raw=[s.ts[t] for s in feed],
                rejections=[],
            )
            scored = served.score(batch, rows, now=float(feed[0].ts[t]))
            for j, r in enumerate(scored.rows.tolist()):
                s = feed[r]
                near = any(a.start - 5 <= t <= a.end + 30 for a in s.anomalies)
                if scored.warm[j] and scored.score[j] >= served.threshold and not near:
                    out.append((s.name, t, float(scored.score[j]), REASONS[int(scored.reason[j])]))
                err = np.nan if scored.abs_error is None else float(scored.abs_error[j])
                if swap_at <= t < swap_at + AFTER_SWAP and not near and np.isfinite(err):
                    errors.append(err)
        return out, errors


def _span(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(v) for v in text.split(",")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--before", default="v20261201T044523Z")
    ap.add_argument("--after", default="v20261201T070904Z")
    ap.add_argument("--seeds", default="7-12")
    ap.add_argument("--hours", default="0,12")
    ap.add_argument("--swap-at", type=int, default=200)
    ap.add_argument("--replay-steps", default="64", help="replay-ring lengths, comma-separated")
    args = ap.parse_args()
    ways: dict[str, tuple[str, str | None, int]] = {
        f"{args.before} throughout": (args.before, None, 64),
        f"{args.after} throughout": (args.after, None, 64),
    }
    for r in _span(args.replay_steps):
        label = f"{args.before} -> {args.after} at {args.swap_at}, replay {r}"
        ways[label] = (args.before, args.after, r)
    feeds = [(seed, hour) for seed in _span(args.seeds) for hour in _span(args.hours)]
    for label, (first, second, replay) in ways.items():
        total, errors = 0, []
        for seed, hour in feeds:
            got, errs = false_alarms(
                args.registry, args.model, first, second, args.swap_at, seed, hour, replay
            )
            total += len(got)
            errors += errs
            shown = ", ".join(f"{n} @{t} {sc:.2f} {why}" for n, t, sc, why in got)
            print(f"  {label:<58} seed {seed:>2} hour {hour:>2}: {len(got)}  {shown}")
        print(
            f"{label}: {total} false alarms over {12 * len(feeds)} streams of 600 values; "
            f"mean |error| over the {AFTER_SWAP} values after value {args.swap_at}: "
            f"{np.mean(errors):.4f} of the stream's spread ({len(errors)} values)\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
