"""Evidence over several steps: the sustained channel's statistic against other ways of
adding up the same deviations, measured before building any of them.

    .venv/bin/python benchmarks/accumulators.py [--data ../shared/data/nab-dev] [--seeds 5]

The sustained channel (``pipeline.engine.anomaly.sustained_step``) turns each value's
signed deviation ``d`` from where it is expected (in the spread values show there) into
a surprise: the EW mean ``pm`` of ``d`` against its own learnt spread. This replays the
generated sets of ``benchmarks/synthetic.py`` (weekly taxi-like feeds, week and demo
feeds, contextual days, clean shapes) and, with ``--data``, a NAB folder through the
engine, records ``d`` at every step (the channel's input, as the scorer computes it) and
the detector's score, then runs candidate accumulators over the recorded ``d`` offline:

* ``current``: the channel's own statistic recomputed (rate 0.05), and at faster rates;
* ``cusum``: a two-sided CUSUM of ``d`` in its own mean absolute size (learnt at 1/1000,
  clipped at 4 per step) with allowance ``k``, alarming at ``h``;
* ``energy``: the EW mean of ``min(d², c²)`` (a deviation of either sign, as a holiday's
  shape change mixes them) against its learnt mean and spread, as a Gaussian tail.

Each alarms once per incident (an onset after 20 quiet steps, as the channel does).
Two tables: each statistic alone (incidents of the multi-step kinds found, false onsets;
a ROC over thresholds), and what each would add to the detector as it stands (incidents
no channel finds now, and onsets outside incidents and more than 50 steps after an
alarm, which the refractory rule would not absorb). Offline, so an alarm's feedback (the
profile not learning an incident's values) is not modelled: a screen, not a verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import log_ndtr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pipeline.engine.stepper as stepper  # noqa: E402
from benchmarks.synthetic import SHAPES, contextual_feeds, weekly_feeds  # noqa: E402
from pipeline.engine.events import parse_ts  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from training.evaluate import replay  # noqa: E402
from training.shapes import HEAVY, clean_feeds  # noqa: E402
from training.shapes import SHAPES as CLEAN_SHAPES  # noqa: E402
from training.synthetic import generate  # noqa: E402

QUIET = 20  # steps without the statistic at its threshold before a new onset
REFRACTORY = 50  # an onset this close after an alarm is the same incident
ONE_STEP = ("spike", "stuck", "noise_burst")  # the other channels' kinds: not counted
NATS = 0.6 / 0.4 * math.log(1e5)  # the alarm level (threshold 0.6) in nats

Recorded = tuple[np.ndarray, np.ndarray]  # (d [T], score [T])
Item = tuple[Recorded, list[tuple[str, int, int]]]  # and the incidents (kind, first, last)


def record(meta: Any, series: list[Any]) -> list[Recorded]:
    """Every stream stepped through the engine: ``d`` where the channel learns, else NaN."""
    steps: list[np.ndarray] = []
    own = stepper.sustained_step

    def spy(p: Any, d: Any, n: Any, pm: Any, pv: Any, learn: Any) -> Any:
        steps.append(np.where(learn, d, np.nan))
        return own(p, d, n, pm, pv, learn)

    stepper.sustained_step = spy  # type: ignore[assignment]
    try:
        got = replay(meta, series)
    finally:
        stepper.sustained_step = own  # type: ignore[assignment]
    lengths = np.asarray([len(s.ts) for s in series])
    d = np.full((len(series), int(lengths.max())), np.nan)
    for t, row in enumerate(steps):  # replay steps the streams still running at t
        d[np.nonzero(lengths > t)[0], t] = row
    return [(d[i, : lengths[i]], np.nan_to_num(r.score)) for i, r in enumerate(got)]


def collect(
    meta: Any,
    seeds: int,
    data: Path | None,
    recorder: Callable[[Any, list[Any]], list[Recorded]] | None = None,
    first: int = 1,
) -> dict[str, list[Item]]:
    """The generated sets of seeds ``first .. first + seeds - 1`` (and ``data``, a NAB
    folder) as ``recorder`` records each stream (default :func:`record`: ``d`` and the
    detector's score), with their incidents."""
    rec = recorder or record
    sets: dict[str, list[Item]] = {}
    seed_range = range(first, first + seeds)
    weekly = [weekly_feeds(s) for s in seed_range]
    got = rec(meta, [f for f, _ in weekly])
    sets["weekly"] = [(r, list(ch)) for r, (_, ch) in zip(got, weekly, strict=True)]
    for label, (length, step, clean) in SHAPES.items():
        items: list[Item] = []
        for seed in seed_range:
            feed = generate(12, length, step, seed, 1, clean_fraction=clean)
            got = rec(meta, [s.series() for s in feed])
            items += [
                (r, [(a.kind, a.start, a.end) for a in s.anomalies])
                for s, r in zip(feed, got, strict=True)
            ]
        sets[label.split()[0]] = items
    items = []
    for seed in seed_range:
        ctx = contextual_feeds(seed)
        got = rec(meta, [f for f, _, _ in ctx])
        items += [
            (r, [(f.name.split("-")[0], a, b)]) for r, (f, a, b) in zip(got, ctx, strict=True)
        ]
    sets["contextual"] = items
    clean = [f for s in seed_range for f in clean_feeds(s, shapes=(*CLEAN_SHAPES, *HEAVY))]
    sets["clean"] = [(r, []) for r in rec(meta, [f.series() for f in clean])]
    if data is not None:
        from pipeline.commands.replay import collect_streams

        windows = json.loads((data / "combined_windows.json").read_text())
        streams = collect_streams([data])
        items = []
        for s, r in zip(streams, rec(meta, streams), strict=True):
            ts = np.asarray(s.ts, float)
            spans = []
            for lo, hi in windows.get(f"{s.name}.csv", []):
                at = np.flatnonzero((ts >= parse_ts(lo)) & (ts <= parse_ts(hi)))
                spans.append(("window", int(at[0]), int(at[-1])))
            items.append((r, spans))
        sets["nab"] = items
    return sets


def current(d: np.ndarray, rate: float = 0.05, alpha: float = 1e-3) -> np.ndarray:
    """The sustained channel's surprise (``anomaly.sustained_step``), one stream at a time."""
    out = np.zeros(len(d))
    pm, pv = 0.0, 1.0
    for k, t in enumerate(np.flatnonzero(np.isfinite(d)).tolist(), start=1):
        pm += rate * (d[t] - pm)
        out[t] = max(-(math.log(2.0) + log_ndtr(-abs(pm) / math.sqrt(pv))), 0.0)
        if out[t] < math.log(1e5):
            pv += max(1.0 / (k + 10), alpha) * (pm * pm - pv)
    return out


def cusum(d: np.ndarray, k: float, clip: float = 4.0, alpha: float = 1e-3) -> np.ndarray:
    """Two-sided CUSUM of ``d`` in units of its learnt mean absolute size."""
    out = np.zeros(len(d))
    size, up, down = 0.0, 0.0, 0.0
    for m, t in enumerate(np.flatnonzero(np.isfinite(d)).tolist(), start=1):
        size = size or max(abs(d[t]), 1e-3)
        u = min(max(d[t] / size, -clip), clip)
        up, down = max(0.0, up + u - k), max(0.0, down - u - k)
        out[t] = max(up, down)
        if out[t] < 8.0:
            size += max(1.0 / (m + 10), alpha) * (abs(d[t]) - size)
    return out


def energy(d: np.ndarray, rate: float, clip: float, alpha: float = 1e-3) -> np.ndarray:
    """EW mean of ``min(d², clip²)`` against its learnt mean and spread (Gaussian tail)."""
    out = np.zeros(len(d))
    q, mu, var = math.nan, 1.0, 1.0
    for m, t in enumerate(np.flatnonzero(np.isfinite(d)).tolist(), start=1):
        y = min(d[t] * d[t], clip * clip)
        q = y if math.isnan(q) else q + rate * (y - q)
        z = (q - mu) / math.sqrt(max(var, 1e-6))
        out[t] = -log_ndtr(-z) if z > 0 else 0.0
        if out[t] < math.log(1e5):
            a = max(1.0 / (m + 10), alpha)
            mu, var = mu + a * (q - mu), (1 - a) * (var + a * (q - mu) ** 2)
    return out


def onsets(stat: np.ndarray, level: float) -> np.ndarray:
    """Steps where ``stat`` reaches ``level`` after :data:`QUIET` steps below it."""
    out, quiet = [], QUIET
    for t, v in enumerate(stat.tolist()):
        if v >= level:
            if quiet >= QUIET:
                out.append(t)
            quiet = 0
        else:
            quiet += 1
    return np.asarray(out, np.int64)


def _span(group: str, first: int, last: int) -> tuple[int, int]:
    """Where an incident counts as found: a day either side on the weekly feeds (as
    ``benchmarks/synthetic.py``), the window on NAB, else to 10 steps after it."""
    if group == "weekly":
        return max(first - 48, 0), last + 49
    return (first, last + 1) if group == "nab" else (first, last + 11)


def judge(
    group: str, items: list[Item], stat: Callable[[np.ndarray], np.ndarray], level: float
) -> dict[str, Any]:
    """The statistic alone and beside the detector: found / added / false / added false."""
    res = {"incidents": 0, "found": 0, "false": 0, "now_found": 0, "adds": 0, "adds_false": 0}
    by: dict[str, list[int]] = {}
    for (d, score), incidents in items:
        on = onsets(stat(d), level)
        n = np.shape(d)[-1]  # a recorder may stack more than d (the times)
        start = int(0.15 * n) if group in ("weekly", "contextual", "nab") else 48
        alarms = np.flatnonzero(score >= 0.6)
        alarms = alarms[alarms >= start]
        expected = np.zeros(n, bool)
        for kind, first, last in incidents:
            lo, hi = _span(group, first, last)
            expected[lo:hi] = True
            if kind in ("level_shift", "drift"):
                expected[first:] = True  # the new level is part of it
            if kind in ONE_STEP:
                continue
            hit = bool(np.any((on >= lo) & (on < hi)))
            now = bool(np.any((alarms >= lo) & (alarms < hi)))
            res["incidents"] += 1
            res["found"] += hit
            res["now_found"] += now
            res["adds"] += hit and not now
            by.setdefault(kind, [0, 0])
            by[kind][0] += hit
            by[kind][1] += 1
        on = on[on >= start]
        near = np.zeros(n, bool)
        for i in alarms.tolist():
            near[i : i + REFRACTORY] = True
        res["false"] += int(np.sum(~expected[on]))
        res["adds_false"] += int(np.sum(~expected[on] & ~near[on]))
    res["by_kind"] = by
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data", type=Path, help="a NAB folder with combined_windows.json")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    sets = collect(meta, a.seeds, a.data)
    candidates: list[tuple[str, Callable[[np.ndarray], np.ndarray], list[float]]] = [
        ("current (rate 0.05)", current, [8.0, 12.0, NATS, 25.0]),
        ("current, rate 0.1", lambda d: current(d, 0.1), [NATS]),
        ("current, rate 0.2", lambda d: current(d, 0.2), [NATS]),
        ("cusum k=1", lambda d: cusum(d, 1.0), [20.0, 40.0]),
        ("cusum k=1.5", lambda d: cusum(d, 1.5), [10.0, 20.0, 40.0]),
        ("energy rate 0.05 clip 4", lambda d: energy(d, 0.05, 4.0), [12.0, NATS, 25.0]),
        ("energy rate 0.05 clip 5", lambda d: energy(d, 0.05, 5.0), [NATS, 25.0, 35.0, 50.0]),
    ]
    synthetic = [g for g in sets if g != "nab"]
    report: dict[str, Any] = {}
    print(
        "each statistic alone, then beside the detector (adds: incidents no channel finds now "
        "/ onsets outside incidents and refractory)"
    )
    for name, stat, levels in candidates:
        for level in levels:
            res = {g: judge(g, sets[g], stat, level) for g in sets}
            report[f"{name} @ {level:.2f}"] = res
            syn = {
                k: sum(res[g][k] for g in synthetic)
                for k in ("found", "false", "adds", "adds_false")
            }
            total = sum(res[g]["incidents"] for g in synthetic)
            cells = "  ".join(
                f"{g} {res[g]['found']}/{res[g]['incidents']} FA {res[g]['false']}"
                for g in synthetic
            )
            line = (
                f"{name:<25} {level:6.2f} nats | generated: found {syn['found']}/{total} "
                f"false {syn['false']:>4}; adds {syn['adds']} / {syn['adds_false']} | {cells}"
            )
            if "nab" in res:
                n = res["nab"]
                line += (
                    f" | nab windows {n['found']}/{n['incidents']} FP {n['false']}; "
                    f"adds {n['adds']} / {n['adds_false']}"
                )
            print(line, flush=True)
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
