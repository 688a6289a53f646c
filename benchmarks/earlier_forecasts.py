"""Would a channel on the forecasts made *earlier* find what the detector misses?

The detection issue's "evidence over several steps": a value far from the h = 2..H step
forecasts made before it, after a change that the one-step forecast already followed.
This measures the idea offline before it is built (it needs H forecasts of state per
stream): every file of a NAB folder is replayed through the engine (the scorer's own
stepping code, :func:`training.evaluate.replay`), and for each step t

    z_h(t) = (x_t - forecast of t made at t-h) / its Laplace scale (from its 90% interval)

    shift(t) = 2 * min(|z_1(t-1)|, min over h=2..H of |z_h(t)|)   (all on one side)

in nats: the previous value was far from its one-step forecast *and* the current one is
still as far from every forecast made before that, the evidence of a level shift
confirmed by a second value (two independent Laplace tails: twice the nats). It prints,
per labelled window, the detector's largest score in it (found: at least the model's
threshold) beside the channel's largest value there, and per file the channel's largest
values outside the windows (after NAB's probationary 15%), which a threshold would have
to stay above.

    .venv/bin/python benchmarks/earlier_forecasts.py --data ../shared/data/nab-dev
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.replay import collect_streams  # noqa: E402
from pipeline.engine.events import parse_ts  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from training.evaluate import Replayed, replay  # noqa: E402

WARMUP = 48  # as benchmarks/nab.py: no score before it


def earlier_z(r: Replayed, horizon: int) -> np.ndarray:
    """``z[t, h-1]``: the error of the forecast of step t made at t-h, in its Laplace scale
    (a 90% interval's half-width is ln(10) scales)."""
    x = r.values[:, 0]
    z = np.full((len(x), horizon), np.nan)
    for h in range(1, horizon + 1):
        b = (r.hi[:-h, h - 1, 0] - r.lo[:-h, h - 1, 0]) / 2 / math.log(10.0)
        z[h:, h - 1] = (x[h:] - r.forecast[:-h, h - 1, 0]) / np.maximum(b, 1e-12)
    return z


def shift_nats(z: np.ndarray) -> np.ndarray:
    """The confirmed-shift surprise of every step (module docstring)."""
    prev = np.r_[np.nan, z[:-1, 0]]
    before = z[:, 1:]
    same = (np.sign(before) == np.sign(prev)[:, None]).all(axis=1)
    m = np.where(same, np.minimum(np.abs(prev), np.abs(before).min(axis=1)), 0.0)
    out: np.ndarray = 2.0 * np.nan_to_num(m)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, required=True, help="a NAB folder with combined_windows.json"
    )
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    threshold = meta.anomaly.threshold
    windows = json.loads((a.data / "combined_windows.json").read_text())
    streams = collect_streams([a.data])
    print(f"{'window (file, start)':<62} {'score max':>9} {'found':>5} {'shift nats':>10}")
    outside: list[tuple[str, np.ndarray]] = []
    for s, r in zip(streams, replay(meta, streams), strict=True):
        shift = shift_nats(earlier_z(r, meta.horizon))
        score = np.nan_to_num(r.score)
        score[:WARMUP] = 0.0
        ts = np.asarray(s.ts, float)
        start = int(len(ts) * 0.15)
        inside = np.zeros(len(ts), bool)
        for lo, hi in windows.get(f"{s.name}.csv", []):
            w = (ts >= parse_ts(lo)) & (ts <= parse_ts(hi))
            inside |= w
            found = score[w].max() >= threshold
            print(
                f"{s.name[:44] + ' ' + lo[:16]:<62} {score[w].max():>9.3f} "
                f"{'yes' if found else 'NO':>5} {shift[w].max():>10.1f}"
            )
        rest = shift[start:][~inside[start:]]
        outside.append((s.name, np.sort(rest)[-5:]))
    print("\nthe channel's five largest values outside the windows, after the first 15%:")
    for name, top in outside:
        print(f"  {name[:58]:<58} {' '.join(f'{v:6.1f}' for v in top)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
