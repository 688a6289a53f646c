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
        "lo",
        "hi",
        "peak",
        "rec",
        "trate",
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


def _filled_store(features: int = 2) -> StateStore:
    rng = np.random.default_rng(7)
    store = StateStore(layers=1, hidden=3, features=features, horizon=2, capacity=4, ring=3)
    store.slots_for(["a"], now=0.0)
    for name in ("h", "c", "mean", "var", "fc", "last_x", "lo", "hi", "n", "en", "emu", "peak"):
        arr = getattr(store, name)
        arr[...] = np.abs(rng.normal(size=arr.shape))
    store.rec[...] = 0.01
    store.trate[...] = 0.002
    return store


def test_a_frame_restores_every_field_it_carries() -> None:
    store = _filled_store()
    snap = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", snap, partition=0, now=0.0)
    for name in ("h", "c", "mean", "var", "fc", "last_x", "lo", "hi", "n", "en", "emu", "peak"):
        src = getattr(store, name)
        dst = getattr(other, name)
        if name in ("h", "c"):
            np.testing.assert_array_equal(dst[:, slot], src[:, 0], err_msg=name)
        else:
            np.testing.assert_array_equal(dst[slot], src[0], err_msg=name)
    assert other.rec[slot] == 0.01 and other.trate[slot] == 0.002


def test_a_format_1_frame_from_before_the_upgrade_still_restores() -> None:
    """Format 1 had no range, record rate, tail rate or novelty peak: the range is
    estimated from the normaliser (mean +- 6 std), the rates start afresh."""
    import struct

    from pipeline.changelog import _HEAD_V1, LEGACY_RANGE_STDS, MAGIC

    store = _filled_store(features=1)
    s = store.snapshot(0, "m", "v")
    L, H = s.h.shape
    Z, F = s.fc.shape
    frame = b"".join(
        (
            MAGIC,
            bytes([1]),
            struct.pack(">H", 1) + b"m",
            struct.pack(">H", 1) + b"v",
            _HEAD_V1.pack(
                s.source_offset, s.last_ts, s.steps, s.ring_len, int(s.has_fc),
                L, H, F, Z, 0, s.n, s.en, s.es, s.emu, s.evar, s.run, s.rep_p,
            ),
            s.h.astype("<f4").tobytes(),
            s.c.astype("<f4").tobytes(),
            s.mean.astype("<f8").tobytes(),
            s.var.astype("<f8").tobytes(),
            s.fc.astype("<f8").tobytes(),
            s.last_x.astype("<f8").tobytes(),
        )
    )  # fmt: skip
    old = decode_snapshot(frame)
    np.testing.assert_array_equal(old.h, s.h)
    np.testing.assert_array_equal(old.fc, s.fc)
    spread = LEGACY_RANGE_STDS * np.sqrt(s.var)
    np.testing.assert_allclose(old.hi, s.mean + spread)
    np.testing.assert_allclose(old.lo, s.mean - spread)
    assert (old.peak, old.rec, old.trate) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="format 9"):
        decode_snapshot(frame[:3] + bytes([9]) + frame[4:])
