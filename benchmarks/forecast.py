"""Forecast skill per file: the model beside persistence, seasonal naive, EWMA and an
online Holt-Winters (statsmodels ETS), at h=1 and h=H, with interval coverage.

    .venv/bin/python benchmarks/forecast.py --data ../shared/data/nab-dev \\
        [--registry exported_models --model default] [--json docs/bench/forecast.json]
        [--no-season | --bins N] [--gain-rate R]
    .venv/bin/python benchmarks/forecast.py --corpus 2026 ...     # generated series instead
    .venv/bin/python benchmarks/forecast.py --corpus 2026 --coarse [--no-week]  # 30/60-min
    .venv/bin/python benchmarks/forecast.py --data ../shared/data/nab-dev --choose A.json B.json

The model runs offline through the engine's own stepping code (``training.evaluate.replay``:
the normaliser, the ONNX step and the forecast exactly as the scorer computes them,
batched across files, without Kafka). For the same figure through the whole pipeline, run
``statecast detect`` and ``../shared/tools/forecast_check.py`` on its output.

Each file's first 15% (NAB's probationary period) is skipped. Seasonal naive is the value
one day earlier (the lag from the median sampling step); Holt-Winters is fitted once on
the first 15% (additive trend and daily season where the file holds two days in it, else
simple exponential smoothing) and then filters the rest with those parameters, one step
at a time. Ratios are MAE / MAE(persistence), floored at 0.05, and summarised by their
geometric mean (as forecast_check.py does).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.csvdata import Series, load_paths  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402

F64 = npt.NDArray[np.float64]
SKIP = 0.15


def _mae(fc: F64, actual: F64) -> float:
    ok = np.isfinite(fc) & np.isfinite(actual)
    return float(np.abs(fc[ok] - actual[ok]).mean()) if ok.any() else float("nan")


def seasonal_lag(ts: F64) -> int:
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    return round(86400.0 / step) if step > 0 else 0


def ewma_forecasts(v: F64, alpha: float = 0.5) -> F64:
    """Forecast of v[t+1] made at t: the EWMA of v[..t]."""
    out = np.empty_like(v)
    level = v[0]
    for t, x in enumerate(v):
        level = alpha * x + (1 - alpha) * level if t else x
        out[t] = level
    return out


def holt_winters_forecasts(v: F64, lag: int, start: int, horizon: int) -> F64:
    """``out[t, k]``: forecast of v[t+k+1] made at t, for t >= start (NaN before).

    statsmodels fits additive Holt-Winters (damped trend, daily season when the first 15%
    holds two days, else simple exponential smoothing) on ``v[:start]``; the textbook
    recursion then filters the whole series with those parameters, one step at a time.
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = lag if lag >= 2 and 2 * lag <= start else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(
            v[:start],
            trend="add" if seasonal else None,
            damped_trend=bool(seasonal),
            seasonal="add" if seasonal else None,
            seasonal_periods=seasonal,
            initialization_method="estimated",
        ).fit()
    prm = fit.params
    a = float(prm["smoothing_level"])
    b = float(np.nan_to_num(prm.get("smoothing_trend", 0.0))) if seasonal else 0.0
    g = float(np.nan_to_num(prm.get("smoothing_seasonal", 0.0))) if seasonal else 0.0
    phi = float(np.nan_to_num(prm.get("damping_trend", 1.0), nan=1.0)) if seasonal else 1.0
    level = float(prm["initial_level"])
    trend = float(np.nan_to_num(prm.get("initial_trend", 0.0))) if seasonal else 0.0
    m = seasonal or 1
    season = (
        list(np.asarray(prm["initial_seasons"], float)) if seasonal else [0.0]
    )  # season[i % m] for the step i
    out = np.full((len(v), horizon), np.nan)
    damp = np.cumsum(phi ** np.arange(1, horizon + 1))
    for t, x in enumerate(v):
        s_t = season[t % m]
        new_level = a * (x - s_t) + (1 - a) * (level + phi * trend)
        trend = b * (new_level - level) + (1 - b) * phi * trend
        season[t % m] = g * (x - new_level) + (1 - g) * s_t
        level = new_level
        if t >= start:
            for k in range(horizon):
                out[t, k] = level + damp[k] * trend + season[(t + k + 1) % m]
    return out


def _persistence(v: F64, horizon: int) -> F64:
    return np.repeat(v[:, None], horizon, axis=1)


def _seasonal(v: F64, lag: int, horizon: int) -> F64:
    out = np.full((len(v), horizon), np.nan)
    if lag <= 0:
        return out
    for k in range(horizon):
        idx = np.arange(len(v))
        src = idx + k + 1 - lag
        ok = src >= 0
        out[ok, k] = v[src[ok]]
    return out


def evaluate_file(
    s: Series, model_fc: F64, lo: F64 | None, hi: F64 | None, horizon: int
) -> dict[str, Any]:
    v = s.values[:, 0]
    n = len(v)
    start = int(SKIP * n)
    lag = seasonal_lag(s.ts)
    fcs = {
        "model": model_fc,
        "persistence": _persistence(v, horizon),
        "seasonal_naive": _seasonal(v, lag, horizon),
        "ewma_0.5": np.repeat(ewma_forecasts(v)[:, None], horizon, axis=1),
    }
    try:
        fcs["holt_winters"] = holt_winters_forecasts(v, lag, start, horizon)
    except Exception as exc:  # a file statsmodels cannot fit: reported, not fatal
        print(f"  holt-winters failed on {s.name}: {exc}", file=sys.stderr)
    row: dict[str, Any] = {"file": s.name, "points": n, "season_lag": lag}
    for k, label in ((0, "h1"), (horizon - 1, f"h{horizon}")):
        t = np.arange(start, n - (k + 1))
        actual = v[t + k + 1]
        for name, fc in fcs.items():
            row[f"{name}_{label}"] = _mae(fc[t, k], actual)
    if lo is not None and hi is not None:
        t = np.arange(start, n - 1)
        inside = (v[t + 1] >= lo[t]) & (v[t + 1] <= hi[t])
        row["covered"], row["covered_of"] = int(inside.sum()), len(t)
    return row


def summarise(rows: list[dict[str, Any]], horizon: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = sorted({k.rsplit("_", 1)[0] for r in rows for k in r if k.endswith("_h1")})
    for label in ("h1", f"h{horizon}"):
        for name in names:
            ratios = [
                max(0.05, r[f"{name}_{label}"] / r[f"persistence_{label}"])
                for r in rows
                if np.isfinite(r.get(f"{name}_{label}", np.nan)) and r[f"persistence_{label}"] > 0
            ]
            out[f"{name}_{label}_geo_ratio"] = (
                float(np.exp(np.mean(np.log(ratios)))) if ratios else float("nan")
            )
        best_naive = [
            min(r[f"persistence_{label}"], np.nan_to_num(r[f"seasonal_naive_{label}"], nan=np.inf))
            for r in rows
        ]
        out[f"model_beats_best_naive_{label}"] = sum(
            r[f"model_{label}"] < b for r, b in zip(rows, best_naive, strict=True)
        )
    out["files"] = len(rows)
    covered = sum(r.get("covered", 0) for r in rows)
    of = sum(r.get("covered_of", 0) for r in rows)
    out["interval_coverage"] = covered / of if of else None
    return out


def _log_ratios(row: dict[str, Any], label: str) -> float:
    return float(np.log(max(0.05, row[f"model_{label}"] / row[f"persistence_{label}"])))


def choose_loco(runs: list[dict[str, Any]], data: Path, horizon: int) -> dict[str, Any]:
    """Leave-one-category-out over a choice among ``runs`` (``--json`` outputs on the same
    files): each category is scored with the run whose h=1 and h=H log ratios (summed) are
    best on the other categories, which says what choosing among them on these files is
    worth on a category that took no part in the choice."""
    category = {p.stem: p.parent.name for p in data.rglob("*.csv")}
    files = [r["file"] for r in runs[0]["rows"]]
    labels = ("h1", f"h{horizon}")
    held: dict[str, list[float]] = {label: [] for label in labels}
    beats = {label: 0 for label in labels}
    picks = {}
    for cat in sorted({category[f] for f in files}):
        others = [i for i, f in enumerate(files) if category[f] != cat]
        score = [
            sum(_log_ratios(run["rows"][i], label) for i in others for label in labels)
            for run in runs
        ]
        best = int(np.argmin(score))
        picks[cat] = runs[best]["name"]
        for i, f in enumerate(files):
            if category[f] == cat:
                row = runs[best]["rows"][i]
                for label in labels:
                    held[label].append(_log_ratios(row, label))
                    naive = min(row[f"persistence_{label}"], row[f"seasonal_naive_{label}"])
                    beats[label] += int(row[f"model_{label}"] < naive)
    return {
        "picks": picks,
        **{f"model_{label}_geo_ratio": float(np.exp(np.mean(held[label]))) for label in labels},
        **{f"model_beats_best_naive_{label}": beats[label] for label in labels},
        "files": len(files),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="CSV file or folder (NAB layout)")
    ap.add_argument(
        "--corpus",
        type=int,
        metavar="SEED",
        help="instead of --data: 60 series of 4,000 points from the generated pretraining "
        "corpus (training.corpus) with this seed (the default model was trained on seed 0); "
        "where the daily profile and blend were designed",
    )
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--version", default=None)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--gain-rate",
        type=float,
        help="override the per-stream gain's rate (pipeline.engine.gain.RATE) for this run; "
        "0: the model's forecast as trained, without the gain",
    )
    ap.add_argument(
        "--no-season",
        action="store_true",
        help="the model's forecast alone, without each stream's daily profile and blend "
        "(pipeline.engine.season, pipeline.engine.blend)",
    )
    ap.add_argument(
        "--coarse",
        action="store_true",
        help="with --corpus: every series sampled every 30 or 60 minutes (where a stream's "
        "profile has room for the week, pipeline.engine.season)",
    )
    ap.add_argument(
        "--no-week",
        action="store_true",
        help="the daily profile without the week (pipeline.engine.season) for this run",
    )
    ap.add_argument(
        "--bins",
        type=int,
        help="cap the daily profile's bins per day (pipeline.engine.season.BINS, at most "
        "its default) for this run: the ablation of its resolution",
    )
    ap.add_argument(
        "--choose",
        type=Path,
        nargs="+",
        metavar="RUN_JSON",
        help="no run: leave-one-category-out over the choice among these --json outputs "
        "(each category of --data scored with the run best on the others)",
    )
    args = ap.parse_args()
    if args.choose:
        if args.data is None:
            ap.error("--choose needs --data (the files' categories)")
        runs = [{**json.loads(p.read_text()), "name": p.stem} for p in args.choose]
        # The runs' horizon H, from their per-file columns (model_h1, model_hH).
        H = max(int(k[len("model_h") :]) for k in runs[0]["rows"][0] if k.startswith("model_h"))
        result = choose_loco(runs, args.data, H)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return 0
    if args.bins is not None:
        from pipeline.engine import season

        if not season.MIN_BINS <= args.bins <= season.BINS:
            ap.error(f"--bins must be in [{season.MIN_BINS}, {season.BINS}]")
        season.BINS = args.bins
    if args.no_week:
        from pipeline.engine import season

        season.WEEK_ROWS = season.BINS + 1  # never room for it
    if args.gain_rate is not None:
        from pipeline.engine import gain

        gain.RATE = args.gain_rate

    from training.evaluate import replay

    meta = Registry(args.registry).meta(args.model, args.version)
    if args.corpus is not None:
        from training import corpus as generated

        if args.coarse:
            generated.PERIODS_S = (1800.0, 3600.0)
        streams = generated.held_out(args.corpus)
    elif args.data is not None:
        streams = load_paths([args.data])
    else:
        ap.error("give --data or --corpus")
    H = meta.horizon
    print(f"model {args.model}/{meta.version}: {len(streams)} files, horizon {H}", file=sys.stderr)
    replayed = replay(meta, streams, seasonal=not args.no_season)
    rows = []
    for s, r in zip(streams, replayed, strict=True):
        banded = meta.distribution is not None
        lo = r.lo[:, 0, 0] if banded else None
        hi = r.hi[:, 0, 0] if banded else None
        rows.append(evaluate_file(s, r.forecast[:, :, 0], lo, hi, H))
    summary = summarise(rows, H)
    names = ["model", "persistence", "seasonal_naive", "ewma_0.5", "holt_winters"]
    print(f"{'file':58s} " + " ".join(f"{n[:12]:>12s}" for n in names) + "   (MAE h1)")
    for r in rows:
        print(
            f"{r['file'][-58:]:58s} "
            + " ".join(f"{r.get(n + '_h1', float('nan')):12.4g}" for n in names)
        )
    for label in ("h1", f"h{H}"):
        print(
            f"geo-mean MAE ratio vs persistence at {label}: "
            + ", ".join(f"{n} {summary[f'{n}_{label}_geo_ratio']:.3f}" for n in names)
            + f"; model beats the better of persistence/seasonal naive on "
            f"{summary[f'model_beats_best_naive_{label}']}/{summary['files']} files"
        )
    if summary["interval_coverage"] is not None:
        print(f"interval coverage: {100 * summary['interval_coverage']:.1f}%")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": f"{args.model}/{meta.version}",
                    "gain_rate": args.gain_rate,
                    "data": str(args.data) if args.corpus is None else f"corpus seed {args.corpus}",
                    "season": not args.no_season,
                    "bins": args.bins,
                    "coarse": args.coarse,
                    "week": not args.no_week,
                    "rows": rows,
                    "summary": summary,
                },
                indent=1,
                default=lambda o: o.item() if hasattr(o, "item") else str(o),
            )
        )
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
