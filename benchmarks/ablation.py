"""Ablation of the method: which parts of the forecaster earn their keep.

    .venv/bin/python benchmarks/ablation.py --data ../shared/data/nab-dev \\
        [--corpus-streams 60] [--epochs 8] [--variants lstm,gru,...] [--json out.json]

Every variant is trained the same way on the same generated data (a smaller slice of the
default model's recipe: ``statecast generate --corpus`` plus the synthetic sensor feeds,
so the figures compare variants, not the shipped model), exported, and then replayed
over the files of ``--data`` through the engine's own stepping code, exactly as
``benchmarks/forecast.py`` does: MAE at h=1 and h=H against persistence (geometric mean of
the per-file ratios), files where the model beats the better of persistence and seasonal
naive, and the pooled coverage of the 90% interval.

Variants (``TrainConfig`` fields changed from the default):

* ``lstm``: the default (2 LSTM layers of 32 since 2026-12-05, 64 before; covariates,
  Laplace scale head);
* ``gru``: GRU cells instead of LSTM;
* ``lstm-1layer``, ``lstm-3layer``: depth;
* ``lstm-nocov``: without the event-time covariates;
* ``lstm-gaussian``: a Gaussian rather than a Laplace scale head.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.forecast import evaluate_file, summarise  # noqa: E402
from benchmarks.nab import statecast  # noqa: E402
from pipeline.engine.csvdata import load_paths  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "lstm": {},
    "gru": {"cell": "gru"},
    "lstm-1layer": {"layers": 1},
    "lstm-3layer": {"layers": 3},
    "lstm-nocov": {"covariates": []},
    "lstm-gaussian": {"distribution": "gaussian"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="files to forecast (NAB layout)")
    ap.add_argument("--corpus-streams", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from training.evaluate import replay

    work = Path(tempfile.mkdtemp(prefix="statecast-ablation-"))
    corpus, synthetic = work / "corpus", work / "synthetic"
    statecast(
        "generate", "--corpus", "--out", str(corpus), "--streams", str(a.corpus_streams),
        "--length", "3000", "--seed", "0", "--prefix", "corpus",
    )  # fmt: skip
    statecast(
        "generate", "--out", str(synthetic), "--streams", "24", "--length", "4000", "--seed", "0"
    )
    streams = load_paths([a.data])
    registry = work / "models"
    rows: dict[str, dict[str, Any]] = {}
    for name in a.variants.split(","):
        cfg = work / f"{name}.json"
        cfg.write_text(json.dumps({**VARIANTS[name], "max_epochs": a.epochs}))
        print(f"training {name} ...", file=sys.stderr)
        statecast(
            "train", "--data", str(corpus), "--data", str(synthetic), "--registry",
            str(registry), "--model", name, "--promote", "always", "--config", str(cfg),
            "--no-plot",
        )  # fmt: skip
        meta = Registry(registry).meta(name)
        per_file = []
        for s, r in zip(streams, replay(meta, streams), strict=True):
            banded = meta.distribution is not None
            lo = r.lo[:, 0, 0] if banded else None
            hi = r.hi[:, 0, 0] if banded else None
            per_file.append(evaluate_file(s, r.forecast[:, :, 0], lo, hi, meta.horizon))
        summary = summarise(per_file, meta.horizon)
        val = meta.raw["validation"]
        rows[name] = {
            "config": VARIANTS[name],
            "h1": summary["model_h1_geo_ratio"],
            f"h{meta.horizon}": summary[f"model_h{meta.horizon}_geo_ratio"],
            "beats_best_naive_h1": summary["model_beats_best_naive_h1"],
            "files": summary["files"],
            "coverage": summary["interval_coverage"],
            "val_skill_h1": 1.0 - val["mae"][0] / val["persistence_mae"][0],
            "epochs": meta.raw["fit"]["epochs_run"],
            "train_seconds": meta.raw["train_seconds"],
        }
        r_ = rows[name]
        print(
            f"{name:<15} h1 {r_['h1']:.3f}  h{meta.horizon} {r_[f'h{meta.horizon}']:.3f}  "
            f"beats {r_['beats_best_naive_h1']}/{r_['files']}  coverage "
            f"{100 * (r_['coverage'] or 0):.1f}%  validation skill {r_['val_skill_h1']:+.3f}  "
            f"({r_['train_seconds']:.0f} s)",
            flush=True,
        )
    if a.json:
        a.json.write_text(
            json.dumps(
                {"epochs": a.epochs, "corpus_streams": a.corpus_streams, "variants": rows},
                indent=1,
                default=lambda o: o.item() if hasattr(o, "item") else str(o),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
