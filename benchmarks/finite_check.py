"""The scorer's per-step finiteness check, as it is and as it was, side by side.

    .venv/bin/python benchmarks/finite_check.py [--batches 256,2000] [--rounds 7]

``StepState.finite_rows`` runs after every batched step (a stream whose state would turn
non-finite is reset instead). Until 2026-12-06 it checked the float16 LSTM state with
``np.isfinite(...).all``, which has no fast float16 loop in numpy; it now reads the bits
(pipeline.engine.state._finite_half). This times the whole check both ways on gathered
states of the default model, alternating in rounds of ~0.3 s, and prints the median µs per
call and per event; it also checks that both give the same answer.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.engine.state import StateStore, StepState  # noqa: E402


def as_it_was(st: StepState) -> npt.NDArray[np.bool_]:
    """``StepState.finite_rows`` before 2026-12-06: the LSTM state through ``np.isfinite``
    (the statistics' check is the same code either way)."""
    ok = np.asarray(np.isfinite(st.h).all(axis=(0, 2)), np.bool_)
    ok &= np.isfinite(st.c).all(axis=(0, 2))
    return ok & st.finite_statistics()


def _time(f: Callable[[], object]) -> float:
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 0.3:
        f()
        n += 1
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--batches", default="256,2000")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    batches = [int(b) for b in a.batches.split(",")]
    store = StateStore.for_model(meta, capacity=max(batches), ring=64)
    slots = store.slots_for([f"s{i}" for i in range(max(batches))], now=0.0)
    rng = np.random.default_rng(0)
    print(f"model {a.model}/{meta.version}: {meta.layers}x{meta.hidden} LSTM state in float16")
    for batch in batches:
        st = store.gather(slots[:batch])
        st.h[...] = rng.normal(0.0, 1.0, st.h.shape)
        st.c[...] = rng.normal(0.0, 1.0, st.c.shape)
        st.h[0, batch // 2, 0] = np.inf  # one stream's state gone bad
        assert (as_it_was(st) == st.finite_rows()).all(), "the two checks disagree"
        got: dict[str, list[float]] = {"as it was": [], "now": []}
        for r in range(a.rounds):
            for name in ("as it was", "now") if r % 2 == 0 else ("now", "as it was"):
                f = functools.partial(as_it_was, st) if name == "as it was" else st.finite_rows
                got[name].append(_time(f))
        med = {name: statistics.median(v) for name, v in got.items()}
        print(
            f"B={batch}: as it was {med['as it was']:.1f} µs a call "
            f"({med['as it was'] / batch:.3f} µs/event), now {med['now']:.1f} "
            f"({med['now'] / batch:.3f}); now / as it was {med['now'] / med['as it was']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
