"""What the replay ring costs the poll loop and a swap, in two source trees side by side.

    .venv/bin/python benchmarks/ring_cost.py --trees DIR1,DIR2 [--rounds 5]
        [--streams 100000] [--batch 2000]

Each round runs in a process of its own, the trees alternating: a store of ``--streams``
streams of the default model with full 64-input rings; timed, ``push_inputs`` of a
batch of ``--batch`` random streams (one input and its time each, as every scored event
pushes) for about a second, then ``recent_window`` of such batches (what a model swap
reads to replay). Prints µs per event of each, per round and their medians per tree.
No Kafka, no model step: the ring alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import numpy as np
from pipeline.engine.registry import Registry
from pipeline.engine.state import StateStore

streams, batch = int(sys.argv[2]), int(sys.argv[3])
meta = Registry(Path(sys.argv[1]) / "exported_models").meta("default")
store = StateStore.for_model(meta, capacity=streams, ring=64)
slots = store.slots_for([f"s{i}" for i in range(streams)], now=0.0)
rng = np.random.default_rng(0)
ts = 1_764_000_000.0
for k in range(65):  # full rings, wrapped once
    for at in range(0, streams, 10_000):
        sl = slots[at : at + 10_000]
        store.push_inputs(sl, rng.normal(50, 5, (len(sl), 1)), np.full(len(sl), ts + 60.0 * k))
out = {}
for name in ("push", "window"):
    n, took, k = 0, 0.0, 65
    while took < 1.0:
        sl = rng.choice(slots, size=batch, replace=False)
        x, t = rng.normal(50, 5, (batch, 1)), np.full(batch, ts + 60.0 * k)
        t0 = time.perf_counter()
        if name == "push":
            store.push_inputs(sl, x, t)
        else:
            store.recent_window(sl)
        took += time.perf_counter() - t0
        n, k = n + batch, k + 1
    out[name] = took * 1e6 / n
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", required=True, help="DIR1,DIR2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2000)
    a = ap.parse_args()
    trees = a.trees.split(",")
    got: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for rnd in range(a.rounds):
        for tree in trees:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(Path(tree)), str(a.streams), str(a.batch)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            got[tree].append(r)
            print(
                f"round {rnd + 1} {tree}: push_inputs {r['push']:.3f} µs/event, "
                f"recent_window {r['window']:.3f} µs/event",
                flush=True,
            )
    for tree in trees:
        push = statistics.median(r["push"] for r in got[tree])
        window = statistics.median(r["window"] for r in got[tree])
        print(f"median {tree}: push_inputs {push:.3f} µs/event, recent_window {window:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
