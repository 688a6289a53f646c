"""How far the replay ring's 16-bit inputs and times are from what was pushed.

    .venv/bin/python benchmarks/ring_precision.py --data ../shared/data/nab-dev [--ring 64]

Every series under ``--data`` (NAB layout) is pushed, value by value with its time, into
a store's replay ring (:meth:`pipeline.engine.state.StateStore.push_inputs`: inputs as
:mod:`pipeline.engine.relative16` codes, times as 16-bit gaps). After every push the
ring is read back as a model swap reads it (:meth:`StateStore.recent_window`) and
compared with the last ``--ring`` values and times pushed. Prints per series the largest
and the median error of an input, in the series' standard deviation (what the replay's
normaliser divides by); the largest as the model sees the input (standardised by the
series' mean and deviation and clipped at ±10, as the normaliser clips it: a spike's
own error, 2^-11 of its distance, is past the clip); and the largest error of a time, in
seconds (time of day and the gap before it are what the model takes from it); then the
largest over all series.
No Kafka, no model: the ring alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.covariates import WEEK  # noqa: E402
from pipeline.engine.csvdata import load_paths  # noqa: E402
from pipeline.engine.state import StateStore  # noqa: E402


def errors(ts: np.ndarray, values: np.ndarray, ring: int) -> tuple[float, float, float, float]:
    """(largest, median) input error in the series' spread, the largest as the model sees
    it, the largest time error in s."""
    store = StateStore(layers=1, hidden=1, features=1, horizon=1, capacity=1, ring=ring)
    slots = store.slots_for(["s"], now=0.0)
    spread = float(np.std(values)) or 1.0
    mean = float(np.mean(values))
    worst, med, worst_t, worst_z = 0.0, [], 0.0, 0.0
    for t in range(len(ts)):
        store.push_inputs(slots, values[t : t + 1, None], ts[t : t + 1])
        inputs, times, lengths = store.recent_window(slots)
        n = int(lengths[0])
        want = values[t + 1 - n : t + 1].astype(np.float32).astype(np.float64)
        got = inputs[0, ring - n :, 0].astype(np.float64)
        err = np.abs(got - want) / spread
        worst = max(worst, float(err.max()))
        z_got = np.clip((got - mean) / spread, -10, 10)
        z_want = np.clip((want - mean) / spread, -10, 10)
        worst_z = max(worst_z, float(np.abs(z_got - z_want).max()))
        med.append(float(np.median(err)))
        off = np.abs(times[0, ring - n :] - np.mod(ts[t + 1 - n : t + 1], WEEK))
        worst_t = max(worst_t, float(np.minimum(off, WEEK - off).max()))
    return worst, float(np.median(med)), worst_z, worst_t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--ring", type=int, default=64)
    a = ap.parse_args()
    worst_all, worst_z_all, worst_t_all = 0.0, 0.0, 0.0
    series = load_paths([a.data])
    for s in series:
        worst, med, worst_z, worst_t = errors(s.ts, s.values[:, 0], a.ring)
        worst_all, worst_z_all = max(worst_all, worst), max(worst_z_all, worst_z)
        worst_t_all = max(worst_t_all, worst_t)
        print(
            f"{s.name:40s} {len(s.ts):6d} values  input error max {worst:.2e} median "
            f"{med:.2e} of its spread, as the model sees it {worst_z:.2e}; time error max "
            f"{worst_t:.1f} s",
            flush=True,
        )
    print(
        f"all {len(series)} series: input error at most {worst_all:.2e} of a series' spread "
        f"({worst_z_all:.2e} as the model sees it), time error at most {worst_t_all:.1f} s "
        f"(ring {a.ring})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
