"""What a state store's first touch of fresh memory costs, with numpy's huge-page advice at
allocation against the store's own advice after it (pipeline/engine/pages.py).

    .venv/bin/python benchmarks/first_touch.py [--streams 100000] [--rounds 3]

Each measurement runs in a fresh process (a process that has freed memory reuses its
pages, which hides the cost), alternating the two ways: ``numpy`` (the store as it was:
numpy advises huge pages when it allocates, so the first writes fault them in, compacting
memory where ``transparent_hugepage/defrag`` is ``madvise``) and ``after`` (as the store
does now: allocated without the advice, faulted in, then advised; khugepaged collapses the
pages later; a snapshot's copy in 4 KB pages, never advised). It times what a restore
does first, ``reserve`` room for ``--streams`` streams and ``prefault`` it, a doubling of
the store as streams arrive (copy and fault in), and a snapshot's copy of ``--streams``
rows made 4,096 rows a loop turn as the scorer makes it (its total and longest turn), for
the default model's real layout. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import contextlib, json, sys, time
sys.path.insert(0, {repo!r})
from pipeline.engine import pages
from pipeline.engine.registry import Registry
from pipeline.engine.state import StateStore
if {mode!r} == "numpy":  # the store before pages.py: numpy's advice, nothing after
    pages.without_advice = contextlib.nullcontext
    pages.advise = lambda arrays: 0
meta = Registry(__import__("pathlib").Path({registry!r})).meta({model!r})
store = StateStore.for_model(meta, capacity=16384, ring=64)
t = time.perf_counter()
rows = store.reserve({streams}, touch=False)
store.prefault(rows)
restore = time.perf_counter() - t
t = time.perf_counter()
store._alloc(store.capacity * 2)
double = time.perf_counter() - t
# A snapshot's copy of every row, 4,096 rows a loop turn (pipeline.engine.row_copy).
import numpy as np
slots = np.arange({streams}, dtype=np.int64)
t = time.perf_counter()
copy = store.blank_copy(slots)
turns = []
for at in range(0, len(slots), 4096):
    t1 = time.perf_counter()
    store.copy_rows(copy, np.arange(at, min(at + 4096, len(slots))), slots[at : at + 4096])
    turns.append(time.perf_counter() - t1)
snapshot = time.perf_counter() - t
print(json.dumps({{"reserve_prefault_s": restore, "doubling_s": double,
                   "snapshot_copy_s": snapshot, "copy_turn_max_s": max(turns),
                   "capacity": store.capacity, "bytes": store.memory_bytes()}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--registry", default=str(REPO / "exported_models"))
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    got: dict[str, list[dict[str, float]]] = {"numpy": [], "after": []}
    for r in range(args.rounds):
        for mode in ("numpy", "after") if r % 2 == 0 else ("after", "numpy"):
            code = _CHILD.format(
                repo=str(REPO),
                mode=mode,
                registry=args.registry,
                model=args.model,
                streams=args.streams,
            )
            out = subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            got[mode].append(res)
            print(
                f"round {r + 1} {mode:>5}: reserve+prefault {args.streams:,} streams "
                f"{res['reserve_prefault_s']:.3f} s, doubling to {res['capacity']:,} "
                f"{res['doubling_s']:.3f} s ({res['bytes'] / 1e6:.0f} MB); a snapshot's copy "
                f"of {args.streams:,} rows {res['snapshot_copy_s']:.3f} s, longest turn "
                f"{res['copy_turn_max_s']:.3f} s"
            )
    for mode, runs in got.items():
        a = statistics.median(r["reserve_prefault_s"] for r in runs)
        b = statistics.median(r["doubling_s"] for r in runs)
        c = statistics.median(r["snapshot_copy_s"] for r in runs)
        d = statistics.median(r["copy_turn_max_s"] for r in runs)
        print(
            f"median {mode:>5}: reserve+prefault {a:.3f} s, doubling {b:.3f} s, "
            f"snapshot copy {c:.3f} s (longest turn {d:.3f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
