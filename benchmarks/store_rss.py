"""Resident memory per stream of a store that grows as new streams arrive.

    .venv/bin/python benchmarks/store_rss.py [--streams 20000,100000,200000]
        [--trees DIR1,DIR2] [--rounds 2]

Each measurement is a fresh process: a served model (the default, from the registry of
the tree) starts with room for 1,024 streams, as a scorer's store does before its
streams arrive, and scores three events for each of ``--streams`` streams in batches of
2,000 (the store doubles as they come). Prints the resident memory it gained per stream
(``/proc/self/statm``), the state arrays' bytes per stream at the capacity reached, and
the capacity. ``--trees``: the same in processes running the code of two source trees
(checkouts of two commits), alternating: what a change to the store's allocation costs
or saves. No Kafka: the store alone (``statecast bench`` measures the whole scorer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import numpy as np
from pipeline.engine.events import DecodedBatch
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

n = int(sys.argv[2])
served = ServedModel("default", Registry(Path(sys.argv[1]) / "exported_models"), capacity=1024)
ids = [f"sensor-{i:07d}" for i in range(n)]
base = resident()
for step in range(3):
    ts = 1_764_000_000.0 + 60.0 * step
    for at in range(0, n, 2000):
        chunk = ids[at : at + 2000]
        k = len(chunk)
        batch = DecodedBatch(index=np.arange(k, dtype=np.int64), stream_ids=chunk,
                             ts=np.full(k, ts), values=np.full((k, 1), 20.0 + step),
                             ts_raw=[ts] * k, rejections=[])
        served.score(batch, np.arange(k, dtype=np.int64), now=ts)
store = served.store
print(json.dumps({"streams": n, "rss_per_stream": (resident() - base) / n,
                  "arrays_per_stream": store.memory_bytes() / n, "capacity": store.capacity}))
"""


def measure(tree: Path, streams: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(streams)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="20000,100000,200000")
    ap.add_argument("--trees", help="DIR1,DIR2 (default: this checkout alone)")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    trees = [Path(t) for t in a.trees.split(",")] if a.trees else [REPO]
    for rnd in range(a.rounds):
        for n in (int(s) for s in a.streams.split(",")):
            for tree in trees:
                r = measure(tree, n)
                print(
                    f"round {rnd + 1}  {tree}  {n:>9,} streams  capacity {r['capacity']:>9,}"
                    f"  resident {r['rss_per_stream']:7,.0f} B/stream"
                    f"  arrays at capacity {r['arrays_per_stream']:7,.0f} B/stream",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
