"""A day unlike the stream's recent days (a holiday, a storm), screened before building it.

    .venv/bin/python benchmarks/day_energy.py [--data ../shared/data/nab-dev] [--seeds 5]
        [--first-seed 1]

The generated weekly set (taxi-like feeds, 30-minute values, 215 days) misses half its
holidays (a weekday shaped like a weekend) and every midday event: their values are a
run of moderate deviations of both signs, which the sustained channel's signed mean
cancels and whose spread it has learnt from a stream's routine weeks. This replays the
generated sets of ``benchmarks/synthetic.py`` and, with ``--data``, a NAB folder through
the engine with the built channel (``day``) off, records the sustained channel's input ``d`` (each value's deviation from
where the stream's profile expects it, in the spread values show there) with its time,
and runs a candidate statistic over it offline:

* ``q``: the EW mean of ``min(d², clip²)`` with a time constant of ``memory`` days
  (a deviation of either sign counts; the clip keeps one outlier from making a day);
* its **record**: the largest ``q`` the stream has shown, forgetting with a time
  constant of ``forget`` days (so the record is its recent weeks', not its first
  immature days'), joined by each ``q`` half a day later (so an incident does not raise
  its own bar while it builds) and only where ``q`` was then below twice the record (an
  incident does not teach the record that incidents are usual);
* an alarm (once per incident, as the channels alarm) where ``q`` reaches ``ratio``
  times the record, once the stream is ``history`` days old. Scale-free and the
  stream's own, like the departure channel's record: nothing to calibrate.

Judged as ``benchmarks/accumulators.py`` judges a statistic: alone (incidents found /
false onsets) and beside the detector (incidents no channel finds now / onsets outside
incidents and more than 50 steps after an alarm). Offline, so an alarm's feedback on
the profile is not modelled: a screen, not a verdict.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.accumulators import Recorded, collect, judge, record  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402

DAY = 86400.0
HISTORY_DAYS = 14.0
GAP_DAYS = 0.5
QUIET_RATIO = 2.0
MEMORY = (0.5, 1.0)
FORGET = (14.0, 21.0, 28.0)
CLIP = (5.0, 10.0)
RATIO = (2.0, 2.5, 3.0)


def recorder(meta: Any, series: list[Any]) -> list[Recorded]:
    """Per stream ``([d, t], score)``: the sustained channel's input as
    ``benchmarks/accumulators.py`` records it (NaN where it does not learn) and the
    value's time, stacked, and the detector's score, both with the day channel off (the
    detector as it was before it; its incidents would otherwise shape ``d``)."""
    off = dataclasses.replace(meta, anomaly=dataclasses.replace(meta.anomaly, day_memory_s=0.0))
    return [
        (np.stack([d, np.asarray(s.ts, np.float64)]), score)
        for (d, score), s in zip(record(off, series), series, strict=True)
    ]


def day_ratio(dt: np.ndarray, memory: float, forget: float, clip: float) -> np.ndarray:
    """``q / record`` per step (0 before ``HISTORY_DAYS`` or without a record)."""
    d, ts = dt
    out = np.zeros(len(d))
    q, record, start = math.nan, 0.0, math.nan
    prev = math.nan
    pending: collections.deque[tuple[float, float, float]] = collections.deque()
    for t in np.flatnonzero(np.isfinite(d)).tolist():
        now = float(ts[t])
        y = min(d[t] * d[t], clip * clip)
        if math.isnan(q):
            q, start = y, now
        else:
            gap = max(now - prev, 0.0)
            q += (1.0 - math.exp(-gap / (memory * DAY))) * (y - q)
            record *= math.exp(-gap / (forget * DAY))
        prev = now
        ratio = q / record if record > 0 else 0.0
        out[t] = ratio if now - start >= HISTORY_DAYS * DAY else 0.0
        pending.append((now, q, ratio))
        while pending and now - pending[0][0] >= GAP_DAYS * DAY:
            _, old, r = pending.popleft()
            if r < QUIET_RATIO:
                record = max(record, old)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--data", type=Path, help="a NAB folder with combined_windows.json")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    sets = collect(meta, a.seeds, a.data, recorder, first=a.first_seed)
    report: dict[str, Any] = {}
    print(
        "alone: found/false onsets; beside the detector: +incidents no channel finds now/"
        "+onsets outside incidents and refractory; weekly kinds: found alone"
    )
    for memory, forget, clip, ratio in itertools.product(MEMORY, FORGET, CLIP, RATIO):

        def stat(dt: np.ndarray, m: float = memory, f: float = forget, c: float = clip) -> Any:
            return day_ratio(dt, m, f, c)

        res = {group: judge(group, items, stat, ratio) for group, items in sets.items()}
        kinds = " ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(res["weekly"]["by_kind"].items()))
        cells = "  ".join(
            f"{g} {v['found']}/{v['incidents']} FA {v['false']} (+{v['adds']}/{v['adds_false']})"
            for g, v in res.items()
        )
        print(
            f"memory {memory:.1f} d forget {forget:>4.0f} d clip {clip:>4.1f} ratio {ratio:.1f}"
            f" | weekly {kinds} | {cells}",
            flush=True,
        )
        report[f"{memory},{forget},{clip},{ratio}"] = res
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
