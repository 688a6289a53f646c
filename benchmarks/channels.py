"""Each detection channel taken out on its own, on NAB and on the generated suite: the
channel table of docs/quality.md from one command; with ``--plateau``, each parameter
moved down and up from its default instead: how flat the default's neighbourhood is.

    python benchmarks/channels.py --data ../shared/data/nab-dev \\
        --scorer ../shared/tools/nab_score.py --out docs/bench/channels-DATE \\
        [--plateau] [--jobs 2] [--force]

For the default model and every variant below, runs ``benchmarks/nab.py --engine [--set
K=V]`` (standard, reward-low-FP and reward-low-FN at NAB's optimised threshold, standard
at the model's own threshold, and leave-one-category-out) and ``benchmarks/synthetic.py
[--set K=V]`` (5 seeds), keeps their JSON in ``--out`` (a run whose JSON is there is not
repeated unless ``--force``), and prints the table as markdown. Generated "found" counts
the demo, week, contextual and weekly sets; "false alarms" the demo and week feeds, the
contextual feeds after their first 15%, the weekly feeds and the clean shapes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.shapes import HEAVY  # noqa: E402

# (what is taken out, the anomaly parameter that takes it out)
VARIANTS: tuple[tuple[str, str | None], ...] = (
    ("nothing (default)", None),
    ("the forecast tail fitted per stream (`excess_rate=0`: a Gaussian tail)", "excess_rate=0"),
    ("errors in the predicted scale (`use_scale=0`: in the stream's spread)", "use_scale=0"),
    ("level novelty (`value_weight=0`)", "value_weight=0"),
    ("range novelty (`range_rate=0`)", "range_rate=0"),
    ("stuck sensor (`stuck_max_rate=0`)", "stuck_max_rate=0"),
    ("tail calibration (`tail_level=0`)", "tail_level=0"),
    (
        "a fitted forecast tail discounted again (`tail_forecast=1`: the rule before 2026-12-05)",
        "tail_forecast=1",
    ),
    ("novelty damping (`novelty_damp=1`)", "novelty_damp=1"),
    ("sustained deviation (`sustained_rate=0`)", "sustained_rate=0"),
    ("one alert per incident (`refractory=0`)", "refractory=0"),
    ("departure from the recent course (`departure_block=0`)", "departure_block=0"),
    ("a day unlike the recent days (`day_memory_s=0`)", "day_memory_s=0"),
    ("range counted from the forecast interval's reach (`range_interval=0`)", "range_interval=0"),
)
# (parameter, moved down, moved up): the plateau table of docs/quality.md.
PLATEAU: tuple[tuple[str, str, str], ...] = (
    ("refractory", "25", "100"),
    ("novelty_decay", "0.9", "0.98"),
    ("novelty_damp", "0.25", "0.75"),
    ("tail_level", "6.9", "11.5"),
    ("value_weight", "0.75", "1.5"),
    ("range_rate", "1000", "10000"),
    ("range_min_std", "0.25", "1"),
    ("range_max_rate", "0.025", "0.1"),
    ("range_history", "150", "600"),
    ("excess_rate", "0.01", "0.04"),
    ("long_alpha", "0.0005", "0.002"),
    ("sustained_rate", "0.025", "0.1"),
)
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
FOUND_SETS = ("demo (600 x 1 min)", "week (2000 x 5 min)", "contextual (14 d x 5 min)")


def run_bench(script: str, args: list[str], out: Path, force: bool) -> dict[str, Any]:
    """``benchmarks/<script> ARGS --json OUT`` unless OUT exists (or ``force``); its JSON."""
    if force or not out.exists():
        cmd = [sys.executable, str(REPO / "benchmarks" / script), *args, "--json", str(out)]
        print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def _found(syn: dict[str, Any]) -> tuple[int, int]:
    hit = total = 0
    for name in (*FOUND_SETS, "weekly (215 d x 30 min)"):
        for d, n in syn[name]["detected"].values():
            hit, total = hit + d, total + n
    return hit, total


def _false_alarms(syn: dict[str, Any]) -> int:
    demo, week = syn["demo (600 x 1 min)"], syn["week (2000 x 5 min)"]
    clean = syn["clean shapes (4032 x 5 min)"]
    return int(
        demo["false_alarms"]
        + week["false_alarms"]
        + syn["contextual (14 d x 5 min)"]["false_alarms_after_15pct"]
        + syn["weekly (215 d x 30 min)"]["false_alarms"]
        + sum(v["alarms"] for k, v in clean.items() if k not in HEAVY)
    )


def row(label: str, nab: dict[str, Any], syn: dict[str, Any]) -> str:
    """One markdown row of the table: NAB's and the generated suite's JSON of a run."""
    opt = "/".join(f"{nab['profiles'][p]['optimised']:.2f}" for p in PROFILES)
    loco = "/".join(f"{nab['leave_one_category_out'][p]['score']:.2f}" for p in PROFILES)
    own = nab["profiles"]["standard"]["at_own_threshold"]
    hit, total = _found(syn)
    return f"| {label} | {opt} | {own:.2f} | {loco} | {hit}/{total} | {_false_alarms(syn)} |"


def print_table(first: str, rows: list[str]) -> None:
    print(
        f"| {first} | NAB standard / low FP / low FN (optimised) | standard at the model's "
        "threshold | leave-one-category-out | generated: found | generated: false alarms |"
    )
    print("|---|---|---:|---|---:|---:|")
    print("\n".join(rows))


def _variants(plateau: bool) -> list[tuple[str, str | None]]:
    if not plateau:
        return list(VARIANTS)
    out: list[tuple[str, str | None]] = [("nothing (default)", None)]
    for name, low, high in PLATEAU:
        out += [(f"`{name}={low}`", f"{name}={low}"), (f"`{name}={high}`", f"{name}={high}")]
    return out


def _measure(a: argparse.Namespace, kv: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    tag = kv or "default"
    sets = ["--set", kv] if kv else []
    nab = run_bench(
        "nab.py",
        [
            "--data", str(a.data.resolve()), "--scorer", str(a.scorer.resolve()),
            "--train-on", "none", "--registry", str(a.registry.resolve()),
            "--model", a.model, "--engine", *sets,
        ],
        a.out / f"nab-{tag}.json",
        a.force,
    )  # fmt: skip
    syn = run_bench(
        "synthetic.py",
        ["--registry", str(a.registry.resolve()), "--model", a.model, *sets],
        a.out / f"syn-{tag}.json",
        a.force,
    )
    return nab, syn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--scorer", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--plateau", action="store_true", help="move each parameter down and up")
    ap.add_argument("--jobs", type=int, default=1, help="variants measured at once")
    ap.add_argument("--force", action="store_true", help="rerun variants whose JSON exists")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    variants = _variants(a.plateau)
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        measured = list(pool.map(lambda v: _measure(a, v[1]), variants))
    rows = [row(label, nab, syn) for (label, _), (nab, syn) in zip(variants, measured, strict=True)]
    print_table("with" if a.plateau else "without", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
