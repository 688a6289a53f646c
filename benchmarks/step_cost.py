"""Model-only cost of two registered versions (or of one with and without the daily
profile), side by side in one process.

    .venv/bin/python benchmarks/step_cost.py --model default --versions A,B [--rounds 5]
    .venv/bin/python benchmarks/step_cost.py --model default --versions A --season
    .venv/bin/python benchmarks/step_cost.py --model default --versions A --trees DIR1,DIR2
    .venv/bin/python benchmarks/step_cost.py --model default --versions A \
        --env NUMPY_MADVISE_HUGEPAGE=0 --streams 100000

The scorer's compute path for a batch of ``B`` streams (gather the state, covariates,
one batched ONNX step with scoring, intervals and gain, the daily profile and its blend,
scatter), timed in alternating rounds of about a second per version and batch size, so
both see the same machine; prints the median µs per event and the ratio B/A. ``--season``:
the one version without the profile (A) and with it (B). ``--trees``: the one version
stepped by the code of two source trees (checkouts of two commits), each round in a
process of its own, alternating: what a change to the step's code costs or saves.
``--env NAME=VALUE``: the one version in processes without and with that environment
variable, alternating. ``--streams``: how many streams a round draws its batches from
(default: 4 batches' worth; a scorer's store is often far larger).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import model_only_steps  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402


def _streams(batch: int) -> int:
    """How many streams a round draws its batches from."""
    return max(4 * batch, 1024)


def _round(
    version: str, registry: Registry, model: str, batch: int, seconds: float, seasonal: bool
) -> float:
    meta = registry.meta(model, version)
    n, took = model_only_steps(meta, _streams(batch), batch, seconds, seasonal)
    return took * 1e6 / n


_IN_TREE = """
import sys
sys.path.insert(0, sys.argv[1])
{prelude}
from pathlib import Path
from pipeline.commands.bench import model_only_steps
from pipeline.engine.registry import Registry
meta = Registry(Path(sys.argv[2])).meta(sys.argv[3], sys.argv[4])
streams, batch, warmup, seconds = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
if warmup:
    model_only_steps(meta, streams, batch, warmup)
n, took = model_only_steps(meta, streams, batch, seconds)
print(took * 1e6 / n)
"""


def _process_round(
    tree: str,
    registry: Path,
    model: str,
    version: str,
    batch: int,
    streams: int,
    env: dict[str, str] | None = None,
    *,
    prelude: str = "",
    warmup: float = 0.0,
    seconds: float = 1.0,
) -> float:
    """One round in a process of its own: the step's code from ``tree``, in ``env``,
    after ``prelude`` (Python run once the tree is importable, e.g. to switch a module
    constant), ``warmup`` seconds untimed, then ``seconds`` timed: µs per event."""
    argv = [str(tree), str(registry), model, version, str(streams), str(batch)]
    argv += [str(warmup), str(seconds)]
    out = subprocess.run(
        [sys.executable, "-c", _IN_TREE.replace("{prelude}", prelude), *argv],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--versions", required=True, help="A,B")
    ap.add_argument("--batches", default="256,2000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--season", action="store_true", help="one version, without and with")
    ap.add_argument("--trees", help="DIR1,DIR2: one version stepped by two source trees")
    ap.add_argument("--env", help="NAME=VALUE: one version without and with it set")
    ap.add_argument("--streams", type=int, help="streams a round draws its batches from")
    a = ap.parse_args()
    registry = Registry(a.registry)
    versions = a.versions.split(",")
    if a.trees or a.env:
        if len(versions) != 1:
            ap.error("--trees and --env take one version")
        # label -> (source tree, extra environment), each round in a process of its own
        if a.trees:
            trees = a.trees.split(",")
            if len(trees) != 2:
                ap.error("--trees takes two directories")
            sides = {t: (t, {}) for t in trees}
        else:
            name, _, value = a.env.partition("=")
            sides = {"without": (str(REPO), {}), a.env: (str(REPO), {name: value})}
        for batch in (int(b) for b in a.batches.split(",")):
            streams = a.streams or _streams(batch)
            labels = list(sides)
            runs: dict[str, list[float]] = {t: [] for t in labels}
            for k in range(a.rounds):
                for t in labels if k % 2 == 0 else labels[::-1]:
                    tree, env = sides[t]
                    runs[t].append(
                        _process_round(tree, a.registry, a.model, versions[0], batch, streams, env)
                    )
            med = {t: float(np.median(runs[t])) for t in labels}
            cells = "  ".join(f"{t} {med[t]:6.2f} us/event" for t in labels)
            ratio = med[labels[1]] / med[labels[0]]
            print(f"B={batch:<5} streams={streams:<7} {cells}  ratio {ratio:.2f}", flush=True)
        return 0
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
