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
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.covariates import covariates  # noqa: E402
from pipeline.engine.inference import StepSession  # noqa: E402
from pipeline.engine.interval import Band, IntervalParams  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.engine.state import StateStore  # noqa: E402
from pipeline.engine.stepper import advance  # noqa: E402


def _round(version: str, registry: Registry, model: str, batch: int, seconds: float) -> float:
    meta = registry.meta(model, version)
    session = StepSession(meta)
    band = None if meta.distribution is None else Band.of(meta.distribution, IntervalParams())
    streams = max(4 * batch, 1024)
    store = StateStore(
        layers=meta.layers,
        hidden=meta.hidden,
        features=len(meta.features),
        horizon=meta.horizon,
        capacity=streams,
        ring=0,
    )
    slots = store.slots_for([f"s{i}" for i in range(streams)], now=0.0)
    rng = np.random.default_rng(0)
    ts, n = 1_764_000_000.0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        sl = rng.choice(slots, size=batch, replace=False)
        st = store.gather(sl)
        times = np.full(batch, ts)
        cov = covariates(times, times - 60.0, meta.covariates) if meta.covariates else None
        advance(
            session, meta.normalisation, meta.anomaly, st, rng.normal(50, 5, (batch, 1)), cov, band
        )
        if band is not None:
            band.bounds(st.fc, st.fs, st.qlog)
        store.scatter(sl, st)
        n += batch
        ts += 60.0
    return (time.perf_counter() - started) * 1e6 / n


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
