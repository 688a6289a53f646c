"""Changelog frames: the batched encoder writes exactly the bytes of the per-stream one."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.changelog import decode_snapshot, encode_snapshot, encode_snapshots
from pipeline.state import StateStore


@pytest.mark.parametrize(("features", "ring"), [(1, 5), (2, 4), (1, 0)])
def test_batched_frames_equal_single_frames(features: int, ring: int) -> None:
    rng = np.random.default_rng(features + ring)
    store = StateStore(
        layers=2,
        hidden=3,
        features=features,
        horizon=2,
        capacity=8,
        ring=ring,
        prior_mu=0.7,
        prior_var=0.04,
    )
    slots = store.slots_for([f"s{i}" for i in range(12)], now=0.0)
    # Ring lengths from empty through full to wrapped around several times.
    for i, slot in enumerate(slots.tolist()):
        for _ in range(i * 2):
            store.push_inputs(np.asarray([slot]), rng.normal(size=(1, features)))
    for name in ("h", "c"):
        getattr(store, name)[...] = rng.normal(size=getattr(store, name).shape)
    for name in (
        "n",
        "en",
        "es",
        "emu",
        "evar",
        "run",
        "rep_p",
        "last_ts",
        "mean",
        "var",
        "fc",
        "last_x",
    ):
        arr = getattr(store, name)
        arr[...] = rng.normal(size=arr.shape)
    store.steps[slots] = rng.integers(0, 1000, len(slots))
    store.src_offset[slots] = rng.integers(0, 10**9, len(slots))
    store.has_fc[slots] = rng.random(len(slots)) < 0.5

    picked = slots[rng.permutation(len(slots))]
    batched = encode_snapshots(store, picked, "model-a", "v2")
    single = [encode_snapshot(store.snapshot(s, "model-a", "v2")) for s in picked.tolist()]
    assert batched == single
    assert all(decode_snapshot(b).model == "model-a" for b in batched)
