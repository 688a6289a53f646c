"""Could the daily profile's bins live in 8 bits? The profile's learning rule, simulated.

    .venv/bin/python benchmarks/profile_bits.py [--days 30] [--seeds 5]

The profile is most of a stream's state (288 bins of 2 bytes: 576 of its 1,706 bytes,
`benchmarks/state_size.py`), so 8-bit bins are the largest single saving left towards
issue #18's ≤ 1 KB per stream. This measures what they would cost, on the rule the
profile learns by (:data:`pipeline.engine.season.SEASON_RATE`: each day a bin moves by
that share of its value's offset from it), not through the engine: a daily sine of
amplitude 1 sampled once per bin, with Gaussian noise, learnt from zeros for ``--days``
days, the bins stored after every update as

* ``float64``: no rounding (the reference);
* ``float16``: as the store keeps them today (in a power-of-two unit per stream, which
  does not change float16's relative precision, so plain float16 here);
* ``int8 top 2^5`` / ``int8 top 2^6``: int8 in a power-of-two unit that puts the
  stream's largest bin at 2^5 (room to grow 4-fold before the unit must change, as the
  float16 store keeps 32-fold) or 2^6 (2-fold), rounded to nearest;
* ``int8 dithered``: top 2^5, rounded up or down with a deterministic dither per bin and
  day (stochastic rounding, unbiased on average).

Printed: the mean and largest absolute error of the learnt bins against the sine over
the last day (in the sine's amplitude), the mean over ``--seeds`` noise draws.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.season import BINS, SEASON_RATE  # noqa: E402

F64 = npt.NDArray[np.float64]
NOISE = (0.0, 0.02, 0.05, 0.1, 0.2)


def _int8(top: int) -> Callable[[F64, int], F64]:
    unit = 2.0 ** (0 - top)  # the sine's peak, 1 = 2^0, at 2^top

    def store(bins: F64, day: int) -> F64:
        out: F64 = np.clip(np.round(bins / unit), -127, 127) * unit
        return out

    return store


def _dithered(bins: F64, day: int) -> F64:
    unit = 2.0**-5
    at = np.arange(len(bins), dtype=np.uint64)
    u = ((at * np.uint64(2654435761) + np.uint64(day * 40503)) % np.uint64(2**32)) / 2.0**32
    out: F64 = np.clip(np.floor(bins / unit + u), -127, 127) * unit
    return out


STORES: dict[str, Callable[[F64, int], F64]] = {
    "float64": lambda b, d: b,
    "float16": lambda b, d: b.astype(np.float16).astype(np.float64),
    "int8 top 2^5": _int8(5),
    "int8 top 2^6": _int8(6),
    "int8 dithered": _dithered,
}


def learn(store: Callable[[F64, int], F64], noise: float, days: int, seed: int) -> F64:
    """The last day's error of bins learnt by the profile's rule and kept by ``store``."""
    rng = np.random.default_rng(seed)
    true = np.sin(2 * np.pi * np.arange(BINS) / BINS)
    bins = np.zeros(BINS)
    for day in range(days):
        x = true + noise * rng.standard_normal(BINS)
        bins = store(bins + SEASON_RATE * (x - bins), day)
    out: F64 = bins - true
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    print(f"{BINS} bins, rate {SEASON_RATE}, {a.days} days, mean of {a.seeds} seeds")
    print("error of the learnt bins over the last day, in the sine's amplitude: mean / max")
    print(f"{'noise':>6} " + " ".join(f"{name:>15}" for name in STORES))
    for noise in NOISE:
        cells = []
        for store in STORES.values():
            errs = [learn(store, noise, a.days, seed) for seed in range(a.seeds)]
            mean = float(np.mean([np.abs(e).mean() for e in errs]))
            peak = float(np.mean([np.abs(e).max() for e in errs]))
            cells.append(f"{mean:.4f} / {peak:.3f}")
        print(f"{noise:>6.2f} " + " ".join(f"{c:>15}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
