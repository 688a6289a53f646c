"""Which streams does the daily profile serve? Each series with its profile and without.

    .venv/bin/python benchmarks/profile_worth.py [--data ../shared/data/nab-dev] [--corpus 2026]
        [--json out.json]

The profile (288 bins, 576 of a stream's 1,706 bytes) is the largest part of a stream's
state. Issue #18's ≤ 1 KB per stream could only be had by giving profiles to the streams
that use them (a pool, a slot index per stream) rather than to every stream. This
measures how many streams that would be: every series is replayed through the engine's
stepping code (:func:`training.evaluate.replay`) as the store serves it, and again
without profiles (``seasonal=False``: the model's forecast alone), and the one-step
forecast's mean absolute error is compared from each series' third day on (the profile
serves from its second, settles in two). Printed per series: the error ratio, with the
profile to without; and per set, how many series the profile helps by more than 2% and
5%, and what a stream would keep on average if only those had one (the state arrays
without the bins, 1,130 bytes, plus 576 for each stream that keeps them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.narrow_state import add_series_arguments, series_sets  # noqa: E402
from pipeline.engine.season import DAY  # noqa: E402
from training.evaluate import replay  # noqa: E402

BINS_BYTES = 576  # benchmarks/state_size.py: the profile's bins, float16
WITHOUT_BINS = 1_130  # the state arrays less the bins (1,706 - 576)


def _mae_from_day_three(values: np.ndarray, ts: np.ndarray, forecast: np.ndarray) -> float:
    err = np.abs(values[1:, 0] - forecast[:-1, 0, 0])
    late = (ts[1:] - ts[0]) >= 2 * DAY
    return float(np.nanmean(err[late])) if late.any() else float(np.nanmean(err))


def measure(meta: Any, streams: list[Any]) -> dict[str, Any]:
    with_profile = replay(meta, streams)
    without = replay(meta, streams, seasonal=False)
    rows = []
    for s, a, b in zip(streams, with_profile, without, strict=True):
        ts = np.asarray(s.ts, np.float64)
        mae_with = _mae_from_day_three(s.values, ts, a.forecast)
        mae_without = _mae_from_day_three(s.values, ts, b.forecast)
        ratio = mae_with / mae_without if mae_without > 0 else 1.0
        rows.append({"series": s.name, "days": float((ts[-1] - ts[0]) / DAY), "ratio": ratio})
    ratios = np.asarray([r["ratio"] for r in rows])
    helped2, helped5 = int((ratios < 0.98).sum()), int((ratios < 0.95).sum())
    return {
        "series": rows,
        "geomean_ratio": float(np.exp(np.mean(np.log(np.maximum(ratios, 1e-9))))),
        "helped_by_2pct": helped2,
        "helped_by_5pct": helped5,
        "bytes_if_only_helped_by_2pct": WITHOUT_BINS + BINS_BYTES * helped2 / len(rows),
        "bytes_if_only_helped_by_5pct": WITHOUT_BINS + BINS_BYTES * helped5 / len(rows),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_series_arguments(ap)
    a = ap.parse_args()
    meta, sets = series_sets(a)
    report: dict[str, Any] = {"model": f"{a.model}/{meta.version}", "sets": {}}
    for label, streams in sets.items():
        report["sets"][label] = r = measure(meta, streams)
        print(f"{label}: {len(streams)} series, one-step MAE with the profile / without")
        for row in sorted(r["series"], key=lambda x: x["ratio"]):
            print(f"  {row['ratio']:7.3f}  {row['days']:6.1f} days  {row['series']}")
        n = len(streams)
        print(
            f"  geometric mean {r['geomean_ratio']:.3f}; helped by > 2%: {r['helped_by_2pct']} "
            f"of {n}, by > 5%: {r['helped_by_5pct']} of {n}; state arrays per stream if only "
            f"those kept a profile: {r['bytes_if_only_helped_by_2pct']:,.0f} / "
            f"{r['bytes_if_only_helped_by_5pct']:,.0f} bytes (every stream: 1,706)"
        )
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
