"""Bytes of per-stream state and of one changelog frame, for a model and profile size.

    .venv/bin/python benchmarks/state_size.py [--model default] [--ring 64] [--season-bins 288]

The state arrays a scorer keeps per stream (``StateStore.memory_bytes`` / capacity), split
into the LSTM state, the replay ring, the daily profile with its blend
(pipeline.engine.season, blend) and the rest; and the size of one stream's changelog
frame (format and layout as the scorer writes them). RSS per stream, which adds the id
index and the frames queued for a checkpoint, is what ``statecast bench`` measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.engine.season import BINS  # noqa: E402
from pipeline.engine.state import StateStore  # noqa: E402
from pipeline.kafka_io.changelog import FORMAT, encode_snapshots  # noqa: E402

GROUPS = {
    "LSTM h, c": ("h", "c"),
    "replay ring": ("ring_buf", "ring_ref", "ring_unit", "ring_gap", "ring_last"),
    "daily profile and blend": ("sp", "ss", "sbin", "slev", "st0", "sfc", "mfc", "bm"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--ring", type=int, default=64)
    ap.add_argument("--season-bins", type=int, default=BINS)
    a = ap.parse_args()
    meta = Registry(a.registry).meta(a.model)
    n = 10_000
    store = StateStore.for_model(meta, capacity=n, ring=a.ring, season_bins=a.season_bins)
    total = store.memory_bytes() / n
    print(
        f"model {a.model}/{meta.version}: {meta.layers}x{meta.hidden} LSTM, horizon "
        f"{meta.horizon}, {len(meta.features)} feature(s), ring {a.ring}, profile bins "
        f"{a.season_bins}"
    )
    grouped = 0.0
    for label, names in GROUPS.items():
        size = sum(getattr(store, name).nbytes for name in names) / n
        grouped += size
        print(f"  {label:<26} {size:8,.0f} bytes per stream")
    print(f"  {'the rest (statistics)':<26} {total - grouped:8,.0f} bytes per stream")
    print(f"  {'state arrays in all':<26} {total:8,.0f} bytes per stream")
    slot = store.slots_for(["s"], now=0.0)
    for _ in range(a.ring + 1):
        store.push_inputs(slot, np.ones((1, len(meta.features))))
    (frame,) = encode_snapshots(store, slot, a.model, meta.version)
    print(f"  changelog frame (format {FORMAT}, full ring) {len(frame):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
