"""Model-only cost of two registered versions (or of one with and without the daily
profile), side by side in one process.

    .venv/bin/python benchmarks/step_cost.py --model default --versions A,B [--rounds 5]
    .venv/bin/python benchmarks/step_cost.py --model default --versions A --season

The scorer's compute path for a batch of ``B`` streams (gather the state, covariates,
one batched ONNX step with scoring, intervals and gain, the daily profile and its blend,
scatter), timed in alternating rounds of about a second per version and batch size, so
both see the same machine; prints the median µs per event and the ratio B/A. ``--season``:
the one version without the profile (A) and with it (B).
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


def _round(
    version: str, registry: Registry, model: str, batch: int, seconds: float, seasonal: bool
) -> float:
    meta = registry.meta(model, version)
    n, took = model_only_steps(meta, max(4 * batch, 1024), batch, seconds, seasonal)
    return took * 1e6 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--versions", required=True, help="A,B")
    ap.add_argument("--batches", default="256,2000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--season", action="store_true", help="one version, without and with")
    a = ap.parse_args()
    registry = Registry(a.registry)
    versions = a.versions.split(",")
    if a.season:
        if len(versions) != 1:
            ap.error("--season takes one version")
        versions = [f"{versions[0]}:no-season", f"{versions[0]}:season"]
    for batch in (int(b) for b in a.batches.split(",")):
        got: dict[str, list[float]] = {v: [] for v in versions}
        for _ in range(a.rounds):
            for v in versions:
                version, _, mode = v.partition(":")
                got[v].append(_round(version, registry, a.model, batch, 1.0, mode != "no-season"))
        med = {v: float(np.median(got[v])) for v in versions}
        cells = "  ".join(f"{v} {med[v]:6.2f} us/event" for v in versions)
        print(f"B={batch:<5} {cells}  ratio {med[versions[-1]] / med[versions[0]]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
