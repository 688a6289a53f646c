"""The departure channel's screen: how its block, fit, gap, history and ratio were chosen.

    .venv/bin/python benchmarks/departures.py [--data ../shared/data/nab-dev] [--seeds 5]

Replays the generated sets of ``benchmarks/synthetic.py`` (weekly taxi-like feeds, demo
and week feeds, contextual days, clean shapes) and, with ``--data``, a NAB folder through
the engine with the channel off (the detector as it was), keeps each stream's raw values
and score, then runs :func:`pipeline.engine.anomaly.departure_step` itself over the
values for each configuration of a grid: its onsets (once per incident) are judged as
``benchmarks/accumulators.py`` judges a statistic, alone and beside the detector (adds:
incidents no channel found / onsets outside incidents and more than 50 steps after an
alarm). The default configuration was chosen on the generated sets (the demo's drifts
found, no added false onset, in the middle of a flat neighbourhood); the NAB columns are
a check, printed beside. Offline, so the novelty rule's interplay with the other
channels is not modelled: ``benchmarks/synthetic.py`` measures the built channel.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.accumulators import Item, Recorded, collect, judge  # noqa: E402
from pipeline.engine.anomaly import DEPARTURE_BLOCKS, AnomalyParams, departure_step  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from training.evaluate import replay  # noqa: E402

# (block, fit, gap) x history x ratio; the default is among them.
SHAPES = ((15, 6, 3), (15, 5, 2), (15, 4, 2), (20, 5, 2), (20, 4, 2))
HISTORY = (8, 10, 12)
RATIO = (2.0, 2.2, 2.5, 3.0)


def recorder(meta: Any, series: list[Any]) -> list[Recorded]:
    """Each stream's first feature's raw values and the detector's score without the channel."""
    off = dataclasses.replace(meta.anomaly, departure_block=0)
    got = replay(meta, series, anomaly=off)
    return [
        (np.asarray(s.values, np.float64)[:, 0], np.nan_to_num(r.score))
        for s, r in zip(series, got, strict=True)
    ]


def onsets(p: AnomalyParams, items: list[Item]) -> list[Recorded]:
    """The channel's onsets (1.0) per stream, all streams of a set stepped as one batch."""
    xs = [x for (x, _), _ in items]
    B, T = len(xs), max(len(x) for x in xs)
    x = np.zeros((B, T))
    for i, v in enumerate(xs):
        x[i, : len(v)] = v
    lengths = np.asarray([len(v) for v in xs])
    # No frozen reading known offline (dl 0): the built channel also skips fits that hold
    # the block of a frozen reading (benchmarks/synthetic.py measures it).
    dk, dn, dq, dl = np.zeros(B), np.zeros(B), np.zeros(B), np.zeros(B)
    ds, dref, dmax = np.zeros((B, 1)), np.zeros((B, 1)), np.zeros((B, 1))
    db = np.zeros((B, DEPARTURE_BLOCKS, 1), np.float32)
    out = np.zeros((B, T))
    for t in range(T):
        d = departure_step(p, x[:, t : t + 1], lengths > t, dk, dn, dq, dl, ds, dref, dmax, db)
        out[:, t] = d.onset
    return [(out[i, : lengths[i]], score) for i, ((_, score), _) in enumerate(items)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data", type=Path, help="a NAB folder with combined_windows.json")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    sets = collect(meta, a.seeds, a.data, recorder)
    default = AnomalyParams()
    report: dict[str, Any] = {}
    print("alone: found/false onsets; beside the detector: +incidents added/+false onsets added")
    for (m, w, g), hist, ratio in itertools.product(SHAPES, HISTORY, RATIO):
        p = dataclasses.replace(
            default,
            departure_block=m,
            departure_fit=w,
            departure_gap=g,
            departure_history=hist,
            departure_ratio=ratio,
        )
        res = {}
        for group, items in sets.items():
            on = onsets(p, items)
            res[group] = judge(
                group, [(r, inc) for r, (_, inc) in zip(on, items, strict=True)], _id, 0.5
            )
        gen = [g for g in res if g != "nab"]
        adds = sum(res[g]["adds"] for g in gen)
        adds_false = sum(res[g]["adds_false"] for g in gen)
        drift = res["demo"]["by_kind"].get("drift", [0, 0])
        mark = (
            " <- default"
            if (m, w, g, hist, ratio)
            == (
                default.departure_block,
                default.departure_fit,
                default.departure_gap,
                default.departure_history,
                default.departure_ratio,
            )
            else ""
        )
        cells = "  ".join(f"{k} +{v['adds']}/{v['adds_false']}" for k, v in res.items())
        print(
            f"block {m:>2} fit {w} gap {g} history {hist:>2} ratio {ratio:.1f}: demo drifts "
            f"{drift[0]}/{drift[1]}, generated adds {adds}/{adds_false} | {cells}{mark}",
            flush=True,
        )
        report[f"{m},{w},{g},{hist},{ratio}"] = res
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


def _id(stat: np.ndarray) -> np.ndarray:
    return stat


if __name__ == "__main__":
    raise SystemExit(main())
