"""The spread a stream's deviations are measured in: the profile's variance subtracted from
the stream's, or learnt (``pipeline.engine.stepper.learn_residual``), side by side.

    .venv/bin/python benchmarks/residual_spread.py [--seeds 3] [--first-seed 1]

The sustained and day channels measure each value's deviation from where the stream's
profile expects it, ``d = (x - centre) / spread``. Until session 26 the spread was
``sqrt(max(var - var(profile), 0.01 var))``: on a stream whose day is most of its
variance (a taxi-like feed: its noise about 1% of it) that is a small difference of two
large numbers, and it swung with the generated weekly feeds' slow level swing (5% over 60
days), by 4x on seed 1, so that a routine weekend read as a day unlike the others. This
replays the generated weekly set of ``benchmarks/synthetic.py`` through the engine and
prints, per feed, both spreads (in the stream's long-run standard deviations) as daily
means every ten days from day 20, and their range over the feed (largest / smallest
daily mean). The engine runs with the learnt spread; the subtracted one is computed from
the same step's variances, as the code before computed it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline.engine.stepper as stepper  # noqa: E402
from benchmarks.synthetic import weekly_feeds  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from training.evaluate import replay  # noqa: E402

FLOOR = stepper.RESIDUAL_FLOOR


def record(meta: Any, series: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(subtracted, learnt) [T, B]``: both spreads at each step, in long-run spreads
    (NaN where the profile has not settled)."""
    old: list[np.ndarray] = []
    new: list[np.ndarray] = []
    std_of, deseasoned, learn = stepper.std_of, stepper.season.deseasoned, stepper.learn_residual
    last: dict[str, Any] = {}

    def spy_std(*a: Any) -> Any:
        last["std"] = out = std_of(*a)
        return out

    def spy_deseasoned(*a: Any) -> Any:
        offset, spread = deseasoned(*a)
        share = 1.0 - spread[:, 0] / last["std"][:, 0] ** 2
        old.append(np.sqrt(np.maximum(share, FLOOR**2)))
        return offset, spread

    def spy_learn(norm: Any, rv: Any, *a: Any) -> Any:
        new.append(np.where(rv[:, 0] > 0, np.sqrt(np.maximum(rv[:, 0], FLOOR**2)), np.nan))
        return learn(norm, rv, *a)

    stepper.std_of, stepper.season.deseasoned = spy_std, spy_deseasoned  # type: ignore[assignment]
    stepper.learn_residual = spy_learn  # type: ignore[assignment]
    try:
        replay(meta, series)
    finally:
        stepper.std_of, stepper.season.deseasoned = std_of, deseasoned  # type: ignore[assignment]
        stepper.learn_residual = learn  # type: ignore[assignment]
    o, n = np.asarray(old), np.asarray(new)
    return np.where(np.isfinite(n), o, np.nan), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1)
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    feeds = [weekly_feeds(s)[0] for s in seeds]
    old, new = record(meta, feeds)
    for i, (seed, f) in enumerate(zip(seeds, feeds, strict=True)):
        day = ((f.ts - f.ts[0]) // 86400).astype(int)[: len(old)]
        days = np.arange(20, day.max() + 1)
        o = np.asarray([np.nanmean(old[day == d, i]) for d in days])
        n = np.asarray([np.nanmean(new[day == d, i]) for d in days])
        print(f"weekly seed {seed}: day " + " ".join(f"{d:>5}" for d in days[::10]))
        print("  subtracted     " + " ".join(f"{v:5.3f}" for v in o[::10]))
        print("  learnt         " + " ".join(f"{v:5.3f}" for v in n[::10]))
        print(
            f"  range from day 20 (largest / smallest daily mean): subtracted "
            f"{np.nanmax(o) / np.nanmin(o):.2f}x, learnt {np.nanmax(n) / np.nanmin(n):.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
