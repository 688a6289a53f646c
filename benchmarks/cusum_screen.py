"""Screen a change-point channel offline before building it: a clipped CUSUM of the
sustained channel's standardised deviation, judged against the stream's own record.

    .venv/bin/python benchmarks/cusum_screen.py --data ../shared/data/nab-dev \\
        [--k 3] [--clip 6] [--ratio 4] [--forget 4000] [--gap 50] [--quiet 1.5] [-v] \\
        [--scorer ../shared/tools/nab_score.py]

The detector as it is replays nab-dev, the generated weekly feeds and the clean and
heavy-tailed shapes (``training.evaluate.replay``, the engine's own step), and the input of
the sustained channel, ``d``, the value's deviation from where the stream's profile expects
it in the spread it leaves there, is captured per step. Then, per stream, in pure Python:

1. ``m``: the EW mean of ``|d|`` (rate ``max(1 / (n + 10), 1 / 1000)``, not from values
   beyond 5 m): the robust spread;
2. ``u = clip(d / m, ±clip)`` (one spike adds at most ``clip``); the two one-sided CUSUMs
   ``S+ = max(0, S+ + u - k)``, ``S- = max(0, S- - u - k)``, ``S = max(S+, S-)``;
3. the record ``R``: the largest ``S`` the stream has shown, forgetting by ``e^(-1/forget)``
   a step; a value joins it ``gap`` steps after it was seen, and only if it was quiet then
   (below ``quiet`` times the record of that time), so an incident does not raise its own bar;
4. an onset where ``S >= ratio * max(R, 3)`` once the stream has 400 values, once per
   incident (until the ratio falls below 1).

(``benchmarks/accumulators.py`` screened a CUSUM against a fixed level, its size learnt
while the statistic is low; this one learns the size from unremarkable values and is
judged against the stream's record; with the earlier size rule it finds fewer of the
weekly events.)

Prints, for nab-dev, the onsets inside windows, the outside onsets with no alarm of the
detector within the 50 steps before (new false positives) and the windows they would add;
for the weekly feeds the injected days found and the false alarms after the first 15%; for
the clean shapes the onsets after the 48-step warm-up. A screen, not the detector: the
novelty and refractory rules are not applied, and nothing is tuned per file.

With ``--scorer``, NAB's scores too: the detector's output (``benchmarks/nab.py --engine``'s
files) with every onset not within 50 steps after an alarm of the detector (at its own
threshold: the refractory rule, roughly) scored 2/3, as a once-per-incident channel's onset
scores, beside the detector alone: optimised and leave-one-category-out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.accumulators import record  # noqa: E402
from benchmarks.synthetic import weekly_feeds  # noqa: E402
from pipeline.engine.events import parse_ts  # noqa: E402

F64 = npt.NDArray[np.float64]


def capture(data: Path) -> dict[str, Any]:
    """The detector's scores and each step's ``d`` for nab-dev, the weekly and the clean
    feeds (recorded by :func:`accumulators.record`, the earlier screen's spy on the
    sustained channel)."""
    from pipeline.commands.replay import collect_streams
    from pipeline.engine.registry import Registry
    from training.shapes import HEAVY, SHAPES, clean_feeds

    meta = Registry(REPO / "exported_models").meta("default")

    def run(streams: list[Any]) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "ts": s.ts, "d": d, "score": score}
            for s, (d, score) in zip(streams, record(meta, streams), strict=True)
        ]

    weekly = [weekly_feeds(seed) for seed in range(1, 6)]
    names = (*SHAPES, *HEAVY)
    clean = [f.series() for seed in range(1, 6) for f in clean_feeds(seed, shapes=names)]
    return {
        "nab": run(collect_streams([data])),
        "weekly": (run([f for f, _ in weekly]), [c for _, c in weekly]),
        "clean": run(clean),
    }


def channel(d: F64, a: argparse.Namespace) -> npt.NDArray[np.bool_]:
    """Onsets of the CUSUM channel over one stream's ``d`` (steps 1-4 of the docstring)."""
    T = len(d)
    onset = np.zeros(T, np.bool_)
    S_at = np.zeros(T)
    quiet_at = np.zeros(T, np.bool_)
    m = sp = sn = R = 0.0
    n = 0
    on = False
    for t in range(T):
        v = float(d[t])
        if not math.isfinite(v):
            continue
        if n == 0:
            m = abs(v) + 1e-9
        u = max(-a.clip, min(a.clip, v / max(m, 1e-9)))
        sp, sn = max(0.0, sp + u - a.k), max(0.0, sn - u - a.k)
        S = S_at[t] = max(sp, sn)
        n += 1
        R *= math.exp(-1.0 / a.forget)
        if t >= a.gap and n >= 200 and quiet_at[t - a.gap]:
            R = max(R, S_at[t - a.gap])
        ratio = S / max(R, 3.0)
        quiet_at[t] = ratio < a.quiet
        if n >= 400 and ratio >= a.ratio and not on:
            onset[t] = on = True
        if ratio < 1.0:
            on = False
        if abs(v) < 5 * m or n < 50:
            m += max(1.0 / (n + 10), 1 / 1000) * (abs(v) - m)
    return onset


def screen(cap: dict[str, Any], windows: dict[str, Any], a: argparse.Namespace) -> None:
    threshold = a.threshold
    inside = new_fp = new_windows = 0
    for f in cap["nab"]:
        wins = [(parse_ts(s), parse_ts(e)) for s, e in windows[f["name"] + ".csv"]]
        on = channel(f["d"], a)
        T, ts = len(on), f["ts"]
        start = int(0.15 * T)  # NAB's probationary period
        on[:start] = False
        alarm = np.nan_to_num(f["score"]) >= threshold
        alarm[:start] = False
        in_window = np.zeros(T, np.bool_)
        for s, e in wins:
            in_window |= (ts >= s) & (ts <= e)
        at = np.flatnonzero(on)
        k_in = int(in_window[at].sum())
        k_fp = sum(1 for t in at if not in_window[t] and not alarm[max(t - 50, 0) : t + 1].any())
        k_new = sum(
            1
            for s, e in wins
            if on[(ts >= s) & (ts <= e)].any() and not alarm[(ts >= s) & (ts <= e)].any()
        )
        inside, new_fp, new_windows = inside + k_in, new_fp + k_fp, new_windows + k_new
        if a.v and (k_in or k_fp):
            print(
                f"  {f['name']:<55} in windows {k_in}  new false positives {k_fp}  new windows {k_new}"
            )
    print(
        f"nab-dev: onsets in windows {inside}, new false positives {new_fp}, "
        f"windows not found by the detector {new_windows}"
    )
    runs, changed = cap["weekly"]
    found: dict[str, int] = {}
    alarms = 0
    for f, days in zip(runs, changed, strict=True):
        on = channel(f["d"], a)
        expected = np.zeros(len(on), np.bool_)
        for kind, first, last in days:
            w = slice(max(first - 48, 0), last + 49)
            expected[w] = True
            found[kind] = found.get(kind, 0) + int(on[w].any())
        alarms += int((on & ~expected)[int(0.15 * len(on)) :].sum())
    print(f"weekly (5 feeds): found {found}, false alarms after the first 15% {alarms}")
    by: dict[str, int] = {}
    for f in cap["clean"]:
        k = int(channel(f["d"], a)[48:].sum())
        if k:
            kind = f["name"].split("-")[0]
            by[kind] = by.get(kind, 0) + k
    print(f"clean and heavy-tailed shapes: onsets after the warm-up {sum(by.values())} {by}")


def nab_scores(cap: dict[str, Any], a: argparse.Namespace) -> None:
    """The detector alone and with the channel's onsets, through NAB's scorer."""
    import csv
    import shutil
    import tempfile

    from benchmarks.nab import _engine_detect, _leave_one_category_out, _scorer
    from pipeline.engine.registry import Registry

    own = Registry(REPO / "exported_models").meta("default").anomaly.threshold
    work = Path(tempfile.mkdtemp(prefix="statecast-cusum-"))
    alone, merged = work / "alone", work / "merged"
    _engine_detect(a.data, alone, REPO / "exported_models", "default", [])
    shutil.copytree(alone, merged)
    for f in cap["nab"]:
        on = channel(f["d"], a)
        alarm = np.nan_to_num(f["score"]) >= own
        path = merged / f"{f['name']}.csv"
        rows = list(csv.reader(path.open()))
        for t in np.flatnonzero(on).tolist():
            if t >= 48 and not alarm[max(t - 50, 0) : t].any():
                rows[t + 1][2] = f"{max(float(rows[t + 1][2]), 2 / 3):.9f}"
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    nab = _scorer(a.scorer)
    labels = str(a.data / "combined_windows.json")
    for name, results in (("detector alone", alone), ("with the CUSUM onsets", merged)):
        opt = nab.score_detector(str(a.data), labels, str(results))  # type: ignore[attr-defined]
        loco = _leave_one_category_out(nab, a.data, labels, results)
        profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
        ins = "/".join(f"{opt[p]['score']:.2f}" for p in profiles)
        out = "/".join(f"{loco[p]['score']:.2f}" for p in profiles)
        print(f"{name:<24} optimised {ins}  leave-one-category-out {out}")
    shutil.rmtree(work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--k", type=float, default=3.0, help="the CUSUM's reference (robust spreads)")
    ap.add_argument("--clip", type=float, default=6.0, help="the most one value adds (spreads)")
    ap.add_argument("--ratio", type=float, default=4.0, help="onset at this times the record")
    ap.add_argument("--forget", type=float, default=4000.0, help="the record's memory (steps)")
    ap.add_argument("--gap", type=int, default=50, help="steps before a value joins the record")
    ap.add_argument("--quiet", type=float, default=1.5, help="a value joins below this ratio")
    ap.add_argument("--threshold", type=float, default=0.602107988, help="the detector's")
    ap.add_argument("-v", action="store_true", help="per file")
    ap.add_argument("--scorer", type=Path, help="nab_score.py: NAB's scores with and without")
    a = ap.parse_args()
    windows = json.loads((a.data / "combined_windows.json").read_text())
    cap = capture(a.data)
    screen(cap, windows, a)
    if a.scorer:
        nab_scores(cap, a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
