"""How much of the detection figures is the model's luck: the default model's recipe
retrained with other seeds, each scored as the shipped model is.

    python benchmarks/seeds.py --data ../shared/data/nab-dev \\
        --scorer ../shared/tools/nab_score.py --seeds 1,2 --out docs/bench/seeds-DATE \\
        [--max-epochs 20] [--hidden N] [--layers N] [--set KEY=VALUE ...] [--force]

For every seed ``s``, the recipe of ``make default-model`` (the generated pretraining
corpus, 200 series, plus the 24 synthetic sensor feeds, 20 epochs) with the corpus drawn
with seed ``s`` and the network initialised and shuffled with seed ``s`` (the synthetic
feeds keep seed 0, as shipped: other seeds of that generator are what
``benchmarks/synthetic.py`` scores); then ``benchmarks/nab.py --train-on none`` and
``benchmarks/synthetic.py`` against that model, as for the shipped one (which
``--registry``/``--model`` name, measured too). Each seed's data and model are kept under
``--work`` (a seed whose model is there is not trained again), the JSON in ``--out`` (a
run whose JSON is there is not repeated unless ``--force``). Prints the table as
markdown. About 12 minutes per seed on 2 cores.

``--hidden``/``--layers``: the recipe with another network (e.g. ``--hidden 32``): what a
smaller, cheaper step costs in quality, against the seeds of the default's size (its
seeds' data, models and JSON are kept apart, tagged ``h32x2``).

``--set KEY=VALUE`` (repeatable): every model scored with these anomaly parameters
overridden (nab.py's and synthetic.py's ``--set``; the JSON tagged with them), so a
detection variant's seed spread is one command beside the default's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.channels import print_table, row, run_bench  # noqa: E402
from benchmarks.nab import statecast  # noqa: E402
from training.config import TrainConfig  # noqa: E402


def _statecast(*args: str) -> None:
    print("$ statecast", " ".join(args), file=sys.stderr, flush=True)
    statecast(*args)


def _train(seed: int, work: Path, max_epochs: int, shape: list[str]) -> Path:
    """The default model's recipe with ``seed`` (and ``shape``: train's ``--hidden`` /
    ``--layers`` arguments, if any); returns its registry."""
    registry = work / "models"
    if (registry / "default" / "CURRENT").exists():
        return registry
    corpus, feeds = work / "corpus", work / "synthetic"
    _statecast(
        "generate", "--corpus", "--out", str(corpus), "--streams", "200", "--length", "3000",
        "--seed", str(seed), "--prefix", "corpus",
    )  # fmt: skip
    _statecast(
        "generate", "--out", str(feeds), "--streams", "24", "--length", "4000", "--seed", "0"
    )
    _statecast(
        "train", "--data", str(corpus), "--data", str(feeds), "--registry", str(registry),
        "--model", "default", "--promote", "always", "--max-epochs", str(max_epochs),
        "--seed", str(seed), *shape,
    )  # fmt: skip
    return registry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--scorer", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=REPO / ".statecast" / "seeds")
    ap.add_argument("--seeds", default="1,2", help="comma-separated seeds to retrain with")
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default", help="the shipped model, measured beside")
    ap.add_argument("--max-epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, help="units per LSTM layer (default: the recipe's)")
    ap.add_argument("--layers", type=int, help="stacked LSTM layers (default: the recipe's)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="score with this anomaly parameter overridden (repeatable)",
    )  # fmt: skip
    ap.add_argument("--force", action="store_true", help="rerun seeds whose JSON exists")
    a = ap.parse_args()
    shape = [*(["--hidden", str(a.hidden)] if a.hidden else []),
             *(["--layers", str(a.layers)] if a.layers else [])]  # fmt: skip
    # Tagged by the network's size whenever one is given (the recipe's own size changes).
    arch = f"h{a.hidden or TrainConfig.hidden}x{a.layers or TrainConfig.layers}-" if shape else ""
    a.out.mkdir(parents=True, exist_ok=True)
    data, scorer = str(a.data.resolve()), str(a.scorer.resolve())
    runs: list[tuple[str, Path, str, str]] = [
        ("shipped", a.registry.resolve(), a.model, f"the shipped model (`{a.model}`)")
    ]
    for s in (int(x) for x in a.seeds.split(",") if x.strip()):
        work = a.work.resolve() / f"{arch}seed-{s}"
        label = f"{arch.rstrip('-')} seed {s}".strip()
        trained = _train(s, work, a.max_epochs, shape)
        runs.append((f"{arch}seed-{s}", trained, "default", label))
    sets = [arg for kv in a.set for arg in ("--set", kv)]
    variant = "".join(f"-{kv}" for kv in a.set)
    rows = []
    for tag, registry, model, label in runs:
        where = ["--registry", str(registry), "--model", model, *sets]
        nab = run_bench(
            "nab.py",
            ["--data", data, "--scorer", scorer, "--train-on", "none", *where, "--engine"],
            a.out / f"nab-{tag}{variant}.json",
            a.force,
        )
        syn = run_bench("synthetic.py", where, a.out / f"syn-{tag}{variant}.json", a.force)
        rows.append(row(f"{label} {' '.join(a.set)}".strip(), nab, syn))
    print_table("model", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
