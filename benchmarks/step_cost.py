"""Model-only cost of two registered versions, side by side in one process.

    .venv/bin/python benchmarks/step_cost.py --model default --versions A,B [--rounds 5]

The scorer's compute path for a batch of ``B`` streams (gather the state, covariates,
one batched ONNX step with scoring, intervals and gain, scatter), timed in alternating
rounds of about a second per version and batch size, so both see the same machine;
prints the median µs per event and the ratio B/A.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import model_only_steps  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402


def _round(version: str, registry: Registry, model: str, batch: int, seconds: float) -> float:
    n, took = model_only_steps(registry.meta(model, version), max(4 * batch, 1024), batch, seconds)
    return took * 1e6 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--versions", required=True, help="A,B")
    ap.add_argument("--batches", default="256,2000")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    registry = Registry(a.registry)
    versions = a.versions.split(",")
    for batch in (int(b) for b in a.batches.split(",")):
        got: dict[str, list[float]] = {v: [] for v in versions}
        for _ in range(a.rounds):
            for v in versions:
                got[v].append(_round(v, registry, a.model, batch, 1.0))
        med = {v: float(np.median(got[v])) for v in versions}
        cells = "  ".join(f"{v} {med[v]:6.2f} us/event" for v in versions)
        print(f"B={batch:<5} {cells}  ratio {med[versions[-1]] / med[versions[0]]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
