"""NAB benchmark through the real pipeline: (optionally) train, `statecast detect`, score.

    python benchmarks/nab.py --data ../shared/data/nab-dev --scorer ../shared/tools/nab_score.py \\
        [--train-on generated|nab|none] [--registry DIR] [--model NAME] [--json out.json]

* ``--train-on generated`` (default) trains on feeds from ``statecast generate``, so the
  model never saw the scored files (the honest check); ``nab`` trains on the data itself
  (for comparison); ``none`` uses the registry's promoted model as it is.
* Scores with NAB's three profiles, once with the threshold optimised as NAB does (on
  the scored files themselves: in-sample), once at the threshold the model itself uses
  (``anomaly.threshold`` in model.json), and leave-one-category-out: each category at
  the threshold optimised on the other categories.
* ``--engine --set K=V``: score with an anomaly parameter changed (ablations);
  ``--variant K=V[,K=V]`` (repeatable): also score these variants and report
  leave-one-category-out over the choice among them and the run as set (each held-out
  category scored with the variant and threshold best on the other categories), which
  says what choosing among them on nab-dev is worth on data that took no part.
* Reports per file, at the standard optimum, the windows found and the false positives
  (with ``--engine``, each channel's share of them: where the false positives are), and
  forecast skill vs persistence per file (horizon 1, scale-free MAE).
* ``--plot out.png``: every file's values with NAB's label windows shaded and the
  detections at the optimised threshold marked (first in a window green, others red).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def statecast(*args: str) -> str:
    """``statecast ARGS`` from this environment; its stdout, or exit with its stderr."""
    proc = subprocess.run(
        [str(BIN / "statecast"), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"statecast {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip()


def _scorer(path: Path) -> object:
    spec = importlib.util.spec_from_file_location("nab_score", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _skill(results: Path, data: Path) -> dict[str, float]:
    out = {}
    for f in sorted(results.rglob("*.csv")):
        rows = np.genfromtxt(f, delimiter=",", names=True, dtype=None, encoding="utf-8")
        v = np.asarray(rows["value"], float)
        fc = np.asarray(rows["forecast"], float)
        start = int(len(v) * 0.15)
        model = np.abs(fc[start:-1] - v[start + 1 :]).mean()
        persist = np.abs(v[start:-1] - v[start + 1 :]).mean()
        out[str(f.relative_to(results).with_suffix(""))] = (
            float(1 - model / persist) if persist else 0.0
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--scorer", type=Path, required=True, help="path to nab_score.py")
    ap.add_argument("--train-on", choices=["generated", "nab", "none"], default="generated")
    ap.add_argument("--registry", type=Path)
    ap.add_argument("--model", default="bench")
    ap.add_argument("--max-epochs", default="30")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path, help="PNG of every file with windows and detections")
    ap.add_argument(
        "--engine",
        action="store_true",
        help="score through the engine's stepping code offline (as the scorer steps, without "
        "Kafka: for ablations) instead of `statecast detect`",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --engine: override a field of the model's anomaly parameters",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="with --engine: also score these variants of the anomaly parameters, and report "
        "leave-one-category-out over the choice among them and the default (see _nested_loco)",
    )
    a = ap.parse_args()
    if (a.set or a.variant) and not a.engine:
        ap.error("--set and --variant need --engine")

    work = Path(tempfile.mkdtemp(prefix="statecast-nab-"))
    registry = a.registry or work / "models"
    if a.train_on == "generated":
        statecast("generate", "--out", str(work / "gen"), "--streams", "24", "--length", "4000")
        statecast(
            "train",
            "--data",
            str(work / "gen"),
            "--registry",
            str(registry),
            "--model",
            a.model,
            "--promote",
            "always",
            "--max-epochs",
            a.max_epochs,
        )
    elif a.train_on == "nab":
        statecast(
            "train",
            "--data",
            str(a.data),
            "--registry",
            str(registry),
            "--model",
            a.model,
            "--promote",
            "always",
            "--max-epochs",
            a.max_epochs,
        )
    results = work / "results"
    if a.engine:
        _engine_detect(a.data, results, registry, a.model, a.set)
    else:
        statecast(
            "detect",
            str(a.data),
            "--output",
            str(results),
            "--registry",
            str(registry),
            "--model",
            a.model,
            "--no-progress",
        )
    current = (registry / a.model / "CURRENT").read_text().strip()
    meta = json.loads((registry / a.model / current / "model.json").read_text())
    own = float(meta["anomaly"]["threshold"])
    nab = _scorer(a.scorer)
    labels = str(a.data / "combined_windows.json")
    optimised = nab.score_detector(str(a.data), labels, str(results))  # type: ignore[attr-defined]
    fixed = nab.score_detector(str(a.data), labels, str(results), threshold=own)  # type: ignore[attr-defined]
    report: dict[str, Any] = {
        "model": f"{a.model}/{current}",
        "trained_on": a.train_on,
        "path": "engine" if a.engine else "pipeline",
        "overrides": a.set,
        "profiles": {},
    }
    print(f"model {a.model}/{current} (trained on {a.train_on}); results in {results}")
    print(
        f"{'profile':<20} {'optimised':>10} {'thr':>8} {'TP':>4} {'FP':>4} | {'own thr':>8} {'score':>8} {'TP':>4} {'FP':>4}"
    )
    for prof in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        o, f = optimised[prof], fixed[prof]
        print(
            f"{prof:<20} {o['score']:>10.2f} {o['threshold']:>8.4f} {o['counts']['TP']:>4} "
            f"{o['counts']['FP']:>4} | {own:>8.4f} {f['score']:>8.2f} {f['counts']['TP']:>4} {f['counts']['FP']:>4}"
        )
        report["profiles"][prof] = {
            "optimised": o["score"],
            "optimised_threshold": o["threshold"],
            "own_threshold": own,
            "at_own_threshold": f["score"],
        }
    report["leave_one_category_out"] = loco = _leave_one_category_out(nab, a.data, labels, results)
    if a.variant:
        runs = {"(as set)": results}
        for k, v in enumerate(a.variant):
            runs[v] = work / f"variant-{k}"
            _engine_detect(a.data, runs[v], registry, a.model, [*a.set, *v.split(",")])
        report["variants"] = _variants(nab, a.data, labels, runs)
        report["variant_choice_loco"] = _nested_loco(nab, a.data, labels, runs)
    print(
        "\nleave-one-category-out (each category scored at the threshold optimised on the others):"
    )
    for prof, res in loco.items():
        cats = ", ".join(f"{c} {t:.4f}" for c, t in sorted(res["thresholds"].items()))
        print(f"  {prof:<20} {res['score']:8.2f}   thresholds: {cats}")
    per_cat: dict[str, list[float]] = {}
    for pf in optimised["standard"]["per_file"]:
        per_cat.setdefault(pf["file"].split("/")[0], []).append(pf["raw"])
    print(
        "\nstandard profile raw score per category: at the optimised threshold, and at the "
        "threshold optimised on the other categories (leave-one-category-out):"
    )
    left_out = loco["standard"]["per_category_raw"]
    for cat, raws in sorted(per_cat.items()):
        print(
            f"  {cat:<24} {sum(raws):+8.3f}  left out {left_out[cat]:+8.3f}  over {len(raws)} files"
        )
    if a.engine:
        thr = optimised["standard"]["threshold"]
        report["channels"] = channels = _channels(nab, results, a.data, thr)
        print(
            f"\nrecords flagged at the standard optimum ({thr:.4f}) by the channel that scored "
            "highest (after NAB's probationary period):"
        )
        for name, c in channels.items():
            print(f"  {name:<10} in a window {c['in_window']:>4}   outside {c['outside']:>4}")
    report["per_file"] = per_file = _per_file(optimised["standard"], report.get("channels", {}))
    print("\nper file at the standard optimum: windows found, false positives (by channel):")
    for name, pf in per_file.items():
        by = ", ".join(f"{ch} {n}" for ch, n in sorted(pf["fp_by_channel"].items()))
        print(f"  {name:<55} {pf['found']:>2}/{pf['windows']:<2} FP {pf['fp']:>3}  {by}")
    skill = _skill(results, a.data)
    print("\nforecast skill vs persistence (h=1, after the probationary period):")
    for name, s in skill.items():
        print(f"  {name:<55} {s:+.3f}")
    report["per_category_raw"] = {k: sum(v) for k, v in per_cat.items()}
    report["skill"] = skill
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    if a.plot:
        _plot(results, a.data, optimised["standard"]["threshold"], a.plot)
        print(f"plot: {a.plot}")
    return 0


def _engine_detect(
    data: Path, results: Path, registry: Path, model: str, overrides: list[str]
) -> None:
    """``statecast detect``'s output without Kafka: every file stepped through the engine
    (:func:`training.evaluate.replay`, the scorer's own stepping code) with 48 warm-up steps,
    written in the same layout."""
    import csv
    import dataclasses

    sys.path.insert(0, str(REPO))
    from pipeline.commands.replay import collect_streams
    from pipeline.engine.registry import Registry
    from pipeline.engine.stepper import REASONS
    from training.evaluate import replay

    meta = Registry(registry).meta(model)
    over: dict[str, float] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        over[key] = float(value)
    anom = dataclasses.replace(meta.anomaly, **over)
    streams = collect_streams([data])
    for s, r in zip(streams, replay(meta, streams, anomaly=anom), strict=True):
        path = results / f"{s.name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                ["timestamp", "value", "anomaly_score", "forecast", "is_anomaly", "anomaly_reason"]
            )
            for i in range(len(s.ts)):
                score = float(np.nan_to_num(r.score[i])) if i >= 48 else 0.0
                w.writerow(
                    [
                        s.ts_text[i] if s.ts_text else s.ts[i],
                        s.values[i, 0],
                        f"{score:.9f}",
                        r.forecast[i, 0, 0],
                        int(score >= anom.threshold),
                        REASONS[r.reason[i]] if score > 0 else "",
                    ]
                )


def _per_file(standard: dict[str, Any], channels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per file at NAB's standard optimum: windows found of all, false positives, and
    (with ``--engine``) the false positives of each channel, from :func:`_channels`."""
    out: dict[str, Any] = {}
    for pf in standard["per_file"]:
        name = str(Path(pf["file"]).with_suffix(""))
        by = {ch: c[f"outside:{name}"] for ch, c in channels.items() if f"outside:{name}" in c}
        out[name] = {
            "windows": pf["windows"],
            "found": pf["TP"],
            "fp": pf["FP"],
            "fp_by_channel": by,
        }
    return out


def _channels(nab: Any, results: Path, data: Path, threshold: float) -> dict[str, dict[str, int]]:
    """Records flagged at ``threshold`` per channel (the ``anomaly_reason`` column of
    :func:`_engine_detect`), inside NAB's windows or outside them, after each file's
    probationary period: the scorer's own reading of each file (``load_file``)."""
    import csv

    out: dict[str, dict[str, int]] = {}
    for rel, spans in sorted(json.loads((data / "combined_windows.json").read_text()).items()):
        f = nab.load_file(str(data), str(results), rel, spans)
        with (results / rel).open() as fh:
            reasons = [row["anomaly_reason"] for row in csv.DictReader(fh)]
        for i in np.flatnonzero(f.scorable & (f.scores >= threshold)).tolist():
            where = "in_window" if f.win[i] >= 0 else "outside"
            c = out.setdefault(reasons[i], {"in_window": 0, "outside": 0})
            c[where] += 1
            if where == "outside":  # which files the false positives fall on
                key = f"outside:{Path(rel).with_suffix('')}"
                c[key] = c.get(key, 0) + 1
    return out


def _leave_one_category_out(
    nab: Any, data: Path, labels: str, results: Path
) -> dict[str, dict[str, Any]]:
    """NAB scores where nothing is chosen on the category being scored: each category's
    files are scored at the threshold NAB's optimiser picks on all the other categories,
    and the raw scores are summed and normalised over the whole corpus (each category's
    raw score kept as ``per_category_raw``)."""
    files = sorted(json.loads(Path(labels).read_text()))
    cats = sorted({f.split("/")[0] for f in files})
    out: dict[str, dict[str, Any]] = {}
    for cat in cats:
        mine = [f for f in files if f.split("/")[0] == cat]
        others = [f for f in files if f.split("/")[0] != cat]
        chosen = nab.score_detector(str(data), labels, str(results), files=others)
        thresholds = {prof: res["threshold"] for prof, res in chosen.items() if prof != "_meta"}
        scored = nab.score_detector(
            str(data), labels, str(results), files=mine, threshold=thresholds
        )
        for prof, res in scored.items():
            if prof == "_meta":
                continue
            acc = out.setdefault(
                prof,
                {"raw": 0.0, "null": 0.0, "perfect": 0.0, "thresholds": {}, "per_category_raw": {}},
            )
            acc["raw"] += res["raw"]
            acc["per_category_raw"][cat] = res["raw"]
            acc["null"] += res["null_raw"]
            acc["perfect"] += res["perfect_raw"]
            acc["thresholds"][cat] = thresholds[prof]
    for acc in out.values():
        span = acc["perfect"] - acc["null"]
        acc["score"] = 100.0 * (acc["raw"] - acc["null"]) / span if span else 0.0
    return out


def _variants(
    nab: Any, data: Path, labels: str, runs: dict[str, Path]
) -> dict[str, dict[str, float]]:
    """Each variant's own figures, in-sample (threshold optimised on all of nab-dev) and
    leave-one-category-out, so a table of variants shows what each is worth alone."""
    profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
    out: dict[str, dict[str, float]] = {}
    print(f"  {'variant':<40}" + "".join(f"{p[:13]:>14}{'LOCO':>8}" for p in profiles))
    for name, res in runs.items():
        opt = nab.score_detector(str(data), labels, str(res))
        loco = _leave_one_category_out(nab, data, labels, res)
        out[name] = {p: opt[p]["score"] for p in profiles}
        out[name].update({f"{p}_loco": loco[p]["score"] for p in profiles})
        cells = "".join(f"{opt[p]['score']:>14.2f}{loco[p]['score']:>8.2f}" for p in profiles)
        print(f"  {name:<40}{cells}")
    return out


def _nested_loco(
    nab: Any, data: Path, labels: str, runs: dict[str, Path]
) -> dict[str, dict[str, Any]]:
    """Leave-one-category-out over a choice among variants: for each category, the variant
    *and* threshold that NAB's optimiser scores best on the other categories are used to
    score it, so the figure says what choosing among these variants on nab-dev is worth
    on a category that took no part in the choice."""
    files = sorted(json.loads(Path(labels).read_text()))
    cats = sorted({f.split("/")[0] for f in files})
    profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
    out: dict[str, dict[str, Any]] = {
        p: {"raw": 0.0, "null": 0.0, "perfect": 0.0, "chosen": {}} for p in profiles
    }
    for cat in cats:
        mine = [f for f in files if f.split("/")[0] == cat]
        others = [f for f in files if f.split("/")[0] != cat]
        fits = {
            name: nab.score_detector(str(data), labels, str(res), files=others)
            for name, res in runs.items()
        }
        for prof in profiles:
            best = max(fits, key=lambda name: fits[name][prof]["score"])
            scored = nab.score_detector(
                str(data), labels, str(runs[best]), files=mine,
                threshold={p: fits[best][p]["threshold"] for p in profiles},
            )[prof]  # fmt: skip
            acc = out[prof]
            acc["raw"] += scored["raw"]
            acc["null"] += scored["null_raw"]
            acc["perfect"] += scored["perfect_raw"]
            acc["chosen"][cat] = best
    for prof, acc in out.items():
        span = acc["perfect"] - acc["null"]
        acc["score"] = 100.0 * (acc["raw"] - acc["null"]) / span if span else 0.0
        picks = ", ".join(f"{c}: {v}" for c, v in sorted(acc["chosen"].items()))
        print(f"  choosing among {len(runs)} variants, {prof:<20} {acc['score']:8.2f}   ({picks})")
    return out


def _plot(results: Path, data: Path, threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = json.loads((data / "combined_windows.json").read_text())
    files = sorted(results.rglob("*.csv"))
    fig, axes = plt.subplots(len(files), 1, figsize=(14, 1.6 * len(files)), squeeze=False)
    for ax, f in zip(axes[:, 0], files, strict=True):
        rel = str(f.relative_to(results))
        rows = np.genfromtxt(f, delimiter=",", names=True, dtype=None, encoding="utf-8")
        ts = np.asarray(rows["timestamp"], "datetime64[s]")
        v = np.asarray(rows["value"], float)
        flagged = np.asarray(rows["anomaly_score"], float) >= threshold
        flagged[: min(int(0.15 * len(v)), 750)] = False  # NAB's probationary period
        ax.plot(ts, v, lw=0.5, color="black")
        inside = np.zeros(len(v), bool)
        for a, b in windows.get(rel, []):
            lo, hi = np.datetime64(a[:19]), np.datetime64(b[:19])
            ax.axvspan(lo, hi, color="orange", alpha=0.3, lw=0)
            hit = np.flatnonzero(flagged & (ts >= lo) & (ts <= hi))
            if len(hit):
                ax.plot(ts[hit[0]], v[hit[0]], "o", color="green", ms=5)
            inside |= (ts >= lo) & (ts <= hi)
        fp = flagged & ~inside
        ax.plot(ts[fp], v[fp], "x", color="red", ms=5)
        ax.set_title(rel, fontsize=8, loc="left")
        ax.tick_params(labelsize=6)
    fig.suptitle(
        f"NAB windows (orange), first detection per window (green), false positives (red x) "
        f"at threshold {threshold:.4f}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
