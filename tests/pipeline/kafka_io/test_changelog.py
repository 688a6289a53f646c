"""Changelog frames: the batched encoder writes exactly the bytes of the per-stream one."""

from __future__ import annotations

import contextlib
import dataclasses
import struct

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.engine import season
from pipeline.engine.state import Snapshot, StateStore
from pipeline.kafka_io.changelog import (
    FORMAT,
    decode_snapshot,
    decode_snapshots,
    encode_snapshot,
    encode_snapshots,
    source_offset_of,
)


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
        "tu",
        "tb",
        "pm",
        "pv",
        "pq",
        "dk",
        "dn",
        "dq",
        "dl",
        "yq",
        "yrec",
        "yb",
        "yp",
        "yblk",
        "yt0",
        "yon",
        "ds",
        "dref",
        "dmax",
        "db",
        "rv",
        "hm",
        "te",
        "tq",
        "tt",
        "sp",
        "sbin",
        "slev",
        "st0",
        "sfc",
        "mfc",
        "bm",
    ):
        arr = getattr(store, name)
        arr[...] = rng.normal(size=arr.shape)
    store.su[...], store.sw[...] = 0.5, rng.normal(size=store.sw.shape)
    store.steps[slots] = rng.integers(0, 1000, len(slots))
    store.src_offset[slots] = rng.integers(0, 10**9, len(slots))
    store.has_fc[slots] = rng.random(len(slots)) < 0.5

    picked = slots[rng.permutation(len(slots))]
    batched = encode_snapshots(store, picked, "model-a", "v2")
    single = [encode_snapshot(store.snapshot(s, "model-a", "v2")) for s in picked.tolist()]
    assert batched == single
    assert all(decode_snapshot(b).model == "model-a" for b in batched)


# Fields a frame carries that the tests fill with random values and expect back.
CARRIED = (
    "h", "c", "mean", "var", "fc", "fs", "last_x", "lo", "hi", "n", "en", "emu", "peak",
    "qlog", "gxy", "gxx", "gn", "dlt", "tu", "tb", "sbin", "st0", "slev", "sfc", "mfc",
    "bm", "sp", "pm", "pv", "pq", "dk", "dn", "dq", "dl", "ds", "dref", "dmax",
    "db", "yq", "yrec", "yb", "yp", "yblk", "yt0", "yon", "rv", "hm",
    "te", "tq", "tt",
)  # fmt: skip


def _filled_store(features: int = 2) -> StateStore:
    rng = np.random.default_rng(7)
    store = StateStore(layers=1, hidden=3, features=features, horizon=2, capacity=4, ring=3)
    store.slots_for(["a"], now=0.0)
    for name in CARRIED:
        arr = getattr(store, name)
        arr[...] = np.abs(rng.normal(size=arr.shape))
    # The profile's bins are kept in a unit; the week's rows beside them.
    store.su[...], store.sw[...] = 0.25, np.abs(rng.normal(size=store.sw.shape))
    store.rec[...] = 0.01
    store.trate[...] = 0.002
    # A ring wrapped once, of inputs far from zero (their codes are not the inputs).
    for x in 1000.0 + rng.normal(size=(5, 1, features)):
        store.push_inputs(np.asarray([0]), x)
    return store


def _profile(store: StateStore, slot: int) -> npt.NDArray[np.float32]:
    """One stream's profile in sensor units, laid out as frames carry it."""
    return store.profiles(np.asarray([slot])).unpack(store.sbin[[slot]])[0]


def test_a_frame_restores_every_field_it_carries() -> None:
    store = _filled_store()
    snap = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", snap, partition=0, now=0.0)
    np.testing.assert_array_equal(other.recent_inputs(slot), store.recent_inputs(0))
    for name in CARRIED:
        src = getattr(store, name)
        dst = getattr(other, name)
        if name in ("h", "c"):
            np.testing.assert_array_equal(dst[:, slot], src[:, 0], err_msg=name)
        elif name == "sp":
            # In the stream's units (a store picks the unit its bins are kept in).
            np.testing.assert_array_equal(_profile(other, slot), _profile(store, 0))
        else:
            np.testing.assert_array_equal(dst[slot], src[0], err_msg=name)
    assert other.rec[slot] == 0.01 and other.trate[slot] == 0.002


def test_a_format_1_frame_from_before_the_upgrade_still_restores() -> None:
    """Format 1 had no range, record rate, tail rate or novelty peak: the range is
    estimated from the normaliser (mean +- 6 std), the rates start afresh."""
    import struct

    from pipeline.kafka_io.changelog import _HEADS, LEGACY_RANGE_STDS, MAGIC

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
            _HEADS[1].pack(
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
    assert (old.peak, old.rec, old.trate, old.qlog) == (0.0, 0.0, 0.0, 0.0)
    assert old.fs is not None and np.isnan(old.fs).all()
    unknown = FORMAT + 1
    with pytest.raises(ValueError, match=f"format {unknown}"):
        decode_snapshot(frame[:3] + bytes([unknown]) + frame[4:])


def test_a_format_2_frame_from_before_intervals_restores_with_an_unknown_scale() -> None:
    from pipeline.kafka_io.changelog import _HEADS, MAGIC

    store = _filled_store(features=1)
    s = store.snapshot(0, "m", "v")
    L, H = s.h.shape
    Z, F = s.fc.shape
    R = s.ring.shape[0]
    frame = b"".join(
        (
            MAGIC,
            bytes([2]),
            struct.pack(">H", 1) + b"m",
            struct.pack(">H", 1) + b"v",
            _HEADS[2].pack(
                s.source_offset, s.last_ts, s.steps, s.ring_len, int(s.has_fc),
                L, H, F, Z, R, s.n, s.en, s.es, s.emu, s.evar, s.run, s.rep_p,
                s.peak, s.rec, s.trate,
            ),
            s.h.astype("<f4").tobytes(),
            s.c.astype("<f4").tobytes(),
            s.mean.astype("<f8").tobytes(),
            s.var.astype("<f8").tobytes(),
            s.fc.astype("<f8").tobytes(),
            s.last_x.astype("<f8").tobytes(),
            s.lo.astype("<f8").tobytes(),
            s.hi.astype("<f8").tobytes(),
            s.ring_values().astype("<f4").tobytes(),
        )
    )  # fmt: skip
    old = decode_snapshot(frame)
    np.testing.assert_array_equal(old.fc, s.fc)
    np.testing.assert_array_equal(old.ring, s.ring_values().astype(np.float32))
    assert (old.peak, old.rec, old.trate) == (s.peak, s.rec, s.trate)
    assert old.qlog == 0.0 and old.fs is not None and np.isnan(old.fs).all()
    assert (old.gxy, old.gxx, old.gn) == (0.0, 0.0, 0.0)


def _pre_season_frame(fmt: int, s: Snapshot) -> bytes:
    """``s`` as format 3 (before the tail fit) or 4 (before the daily profile) wrote it."""
    from pipeline.kafka_io.changelog import _HEADS, _STATS, _STATS_IN, MAGIC

    L, H = s.h.shape
    Z, F = s.fc.shape
    stats = [getattr(s, name) for name in _STATS[: _STATS_IN[fmt]]]
    assert s.fs is not None and s.dlt is not None
    return b"".join(
        (
            MAGIC,
            bytes([fmt]),
            struct.pack(">H", 1) + b"m",
            struct.pack(">H", 1) + b"v",
            _HEADS[fmt].pack(
                s.source_offset, s.last_ts, s.steps, s.ring_len, int(s.has_fc),
                L, H, F, Z, s.ring.shape[0], *stats,
            ),
            s.h.astype("<f4").tobytes(),
            s.c.astype("<f4").tobytes(),
            *(getattr(s, n).astype("<f8").tobytes() for n in ("mean", "var", "fc", "last_x")),
            *(getattr(s, n).astype("<f8").tobytes() for n in ("lo", "hi", "fs", "dlt")),
            s.ring_values().astype("<f4").tobytes(),
        )
    )  # fmt: skip


def test_a_format_3_frame_from_before_the_tail_fit_restores_unseeded() -> None:
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.tb != 0.0
    old = decode_snapshot(_pre_season_frame(3, s))
    assert (old.tu, old.tb) == (0.0, 0.0)  # seeded from the priors at the next step
    assert (old.emu, old.gn, old.qlog) == (s.emu, s.gn, s.qlog)
    np.testing.assert_array_equal(old.ring, s.ring_values().astype(np.float32))
    np.testing.assert_array_equal(old.dlt, s.dlt)


def test_a_format_4_frame_from_before_the_daily_profile_restores_with_it_starting_afresh() -> None:
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.sbin != 0.0
    old = decode_snapshot(_pre_season_frame(4, s))
    assert (old.tu, old.tb, old.gn) == (s.tu, s.tb, s.gn)
    assert old.sp is None and old.bm is None and old.slev is None
    np.testing.assert_array_equal(old.ring, s.ring_values().astype(np.float32))
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    # The profile starts at the stream's next values; the model's forecast stands alone.
    assert other.sbin[slot] == 0.0 and not other.sp[slot].any() and not other.bm[slot].any()
    assert np.isnan(other.slev[slot]).all() and np.isnan(other.mfc[slot]).all()
    assert other.gather(np.asarray([slot])).finite_rows().all()


def _same(a: object, b: object) -> bool:
    import dataclasses

    da, db = dataclasses.asdict(a), dataclasses.asdict(b)  # type: ignore[call-overload]
    return da.keys() == db.keys() and all(
        np.array_equal(da[k], db[k], equal_nan=True)
        if isinstance(da[k], np.ndarray)
        else da[k] == db[k]
        for k in da
    )


def test_batched_decoding_equals_one_by_one_across_layouts_and_skips_bad_frames() -> None:
    frames: list[bytes] = []
    for features, ring in ((1, 5), (2, 4), (1, 0)):
        store = StateStore(layers=1, hidden=3, features=features, horizon=2, capacity=4, ring=ring)
        slots = store.slots_for(["a", "b", "c"], now=0.0)
        for i, slot in enumerate(slots.tolist()):
            for _ in range(i * 3):
                store.push_inputs(np.asarray([slot]), np.full((1, features), float(i)))
        store.lo[slots] = -1.0
        store.hi[slots] = 2.0
        store.src_offset[slots] = [7, 8, 9]
        frames += encode_snapshots(store, slots, "m", "v1")
    frames.insert(2, b"SCS\x02garbage")
    frames.insert(5, frames[0][:-3])
    decoded = decode_snapshots(frames)
    assert decoded[2] is None and decoded[5] is None
    for frame, snap in zip(frames, decoded, strict=True):
        if snap is not None:
            assert _same(snap, decode_snapshot(frame))
            assert source_offset_of(frame) == snap.source_offset
    assert sum(s is not None for s in decoded) == 9


def test_a_damaged_frame_is_a_value_error_never_anything_else() -> None:
    """A restore skips frames that raise ValueError; any other exception would stop it."""
    frame = encode_snapshots(_filled_store(), np.asarray([0]), "model", "v")[0]
    rng = np.random.default_rng(11)
    damaged = [frame[:n] for n in range(0, len(frame), 7)]
    for _ in range(300):
        b = bytearray(frame)
        for pos in rng.integers(0, len(b), 3):
            b[pos] = int(rng.integers(0, 256))
        damaged.append(bytes(b))
    for bad in damaged:
        for parse in (decode_snapshot, source_offset_of):
            with contextlib.suppress(ValueError):
                parse(bad)


def test_frames_too_short_to_have_a_format_byte_are_skipped_not_an_index_error() -> None:
    from pipeline.kafka_io.changelog import source_offset_of

    assert decode_snapshots([b"SCS", b"", b"S", b"SCS\x02"]) == [None, None, None, None]
    for frame in (b"SCS", b""):
        with pytest.raises(ValueError):
            source_offset_of(frame)


def test_frames_carry_the_profile_size_and_a_store_of_another_size_restarts_it() -> None:
    """A scorer may keep fewer bins per stream (``--season-bins``) or none: its frames say
    how many, and a store of another size restores everything else."""
    rng = np.random.default_rng(3)
    frames = {}
    for bins in (0, 24, 288):
        store = StateStore(layers=1, hidden=3, features=1, horizon=2, capacity=2, season_bins=bins)
        store.slots_for(["a"], now=0.0)
        store.sp[...], store.su[...] = rng.normal(size=store.sp.shape), 0.5
        store.sbin[...] = min(bins, 24)
        store.emu[...] = 0.25
        (frame,) = encode_snapshots(store, np.asarray([0]), "m", "v")
        assert frame == encode_snapshot(store.snapshot(0, "m", "v"))
        frames[bins] = (frame, _profile(store, 0))
    for bins, (frame, sp) in frames.items():
        snap = decode_snapshot(frame)
        assert snap.sp is not None and snap.sp.shape == (bins, 1)
        for other_bins in (0, 24, 288):
            other = StateStore(
                layers=1, hidden=3, features=1, horizon=2, capacity=2, season_bins=other_bins
            )
            slot = other.load("a", snap, partition=0, now=0.0)
            assert other.emu[slot] == 0.25
            if other_bins == bins:
                np.testing.assert_array_equal(_profile(other, slot), sp)
                assert other.sbin[slot] == min(bins, 24)
            else:
                assert other.sbin[slot] == 0.0 and not other.sp[slot].any()


# Where a frame of model "m", version "v" ends its header's dimensions (format 5 on).
_HEAD_END = 4 + 2 + 1 + 2 + 1 + 8 + 8 + 8 + 8 + 1 + 2 * 6


def _values(s: Snapshot) -> Snapshot:
    """``s`` with its ring as a frame before format 14 carries it: float32 inputs."""
    ring = s.ring_values().astype(np.float32)
    return dataclasses.replace(s, ring=ring, ring_ref=None, ring_unit=None)


def _format_13_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 13 wrote it: format 14 with the ring's float32
    inputs instead of its codes, reference and unit."""
    s = store.snapshot(0, "m", "v")
    frame = encode_snapshots(store, np.asarray([0]), "m", "v")[0]
    assert frame[3] == 14 and s.ring_ref is not None and s.ring_unit is not None
    tail = len(frame) - 2 * s.ring.size - 4 * s.ring_ref.size - 4 * s.ring_unit.size
    inputs = s.ring_values().astype("<f4").tobytes()
    return frame[:3] + bytes([13]) + frame[4:tail] + inputs


def _format_12_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 12 wrote it: format 13 without the profile's errors
    by hour of day (their mean and start the header's last two statistics, their bins
    before the ring)."""
    from pipeline.kafka_io.changelog import _STATS_IN

    s = store.snapshot(0, "m", "v")
    frame = _format_13_frame(store)
    assert frame[3] == 13 and s.te is not None
    ring, te = s.ring.size * 4, s.te.size * 2
    tail = len(frame) - ring
    frame = frame[: tail - te] + frame[tail:]
    stats_end = _HEAD_END + 8 * _STATS_IN[13]
    return frame[:3] + bytes([12]) + frame[4 : stats_end - 8 * 2] + frame[stats_end:]


def _format_11_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 11 wrote it: format 12 without the level channel's
    habit (its rows before the ring)."""
    s = store.snapshot(0, "m", "v")
    frame = _format_12_frame(store)
    assert frame[3] == 12 and s.hm is not None
    ring, hm = s.ring.size * 4, s.hm.size * 4
    tail = len(frame) - ring
    return frame[:3] + bytes([11]) + frame[4 : tail - hm] + frame[tail:]


def _format_10_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 10 wrote it: format 11 without the profile's
    residual share (its vector before the ring)."""
    s = store.snapshot(0, "m", "v")
    frame = _format_11_frame(store)
    assert frame[3] == 11 and s.rv is not None
    ring, rv = s.ring.size * 4, s.rv.size * 8
    tail = len(frame) - ring
    return frame[:3] + bytes([10]) + frame[4 : tail - rv] + frame[tail:]


def _format_9_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 9 wrote it: format 10 without the day channel (its
    seven statistics at the header's end)."""
    from pipeline.kafka_io.changelog import _STATS_IN

    frame = _format_10_frame(store)
    assert frame[3] == 10
    stats_end = _HEAD_END + 8 * _STATS_IN[10]
    return frame[:3] + bytes([9]) + frame[4 : stats_end - 8 * 7] + frame[stats_end:]


def _format_8_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 8 wrote it: format 9 without the departure
    channel (its four statistics at the header's end, its vectors before the ring)."""
    from pipeline.kafka_io.changelog import _STATS_IN

    s = store.snapshot(0, "m", "v")
    frame = _format_9_frame(store)
    assert frame[3] == 9 and s.ds is not None and s.db is not None
    stats_end = _HEAD_END + 8 * _STATS_IN[9]
    ring = s.ring.size * 4
    vectors = 3 * 8 * s.ds.size + 4 * s.db.size
    return b"".join(
        (
            frame[:3],
            bytes([8]),
            frame[4 : stats_end - 8 * 4],
            frame[stats_end : len(frame) - ring - vectors],
            frame[len(frame) - ring :],
        )
    )


def _format_7_frame(store: StateStore) -> bytes:
    """Stream 0 of ``store`` as format 7 wrote it: format 8 with the profile in float32
    sensor units, the week's rows in place, instead of float16 bins, unit and week."""
    s = store.snapshot(0, "m", "v")
    frame = _format_8_frame(store)
    assert frame[3] == 8 and s.sp is not None and s.su is not None and s.sw is not None
    ring = s.ring.size * 4
    start = len(frame) - ring - s.sw.size * 4 - s.su.size * 4 - s.sp.size * 2
    flat = _profile(store, 0).astype("<f4").tobytes()
    return frame[:3] + bytes([7]) + frame[4:start] + flat + frame[len(frame) - ring :]


def _format_6_frame(store: StateStore, s: Snapshot) -> bytes:
    """Stream 0 of ``store`` as format 6 wrote it: format 7 with ``h`` and ``c`` in float32."""
    from pipeline.kafka_io.changelog import _STATS_IN

    frame = _format_7_frame(store)
    stats_end = _HEAD_END + 8 * _STATS_IN[7]
    state_end = stats_end + 2 * s.h.size * 2
    return b"".join(
        (
            frame[:3],
            bytes([6]),
            frame[4:stats_end],
            s.h.astype("<f4").tobytes(),
            s.c.astype("<f4").tobytes(),
            frame[state_end:],
        )
    )


def test_a_format_6_frame_with_a_float32_state_restores_it_in_float16() -> None:
    """Format 6 kept ``h`` and ``c`` in float32: a frame of it restores every field, its
    state rounded to the store's float16; format 7 is the same frame with the state in
    half the bytes."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    wide = s.h.astype(np.float32) + np.float32(1e-4)  # not a float16 value
    s6 = dataclasses.replace(s, h=wide)  # type: ignore[arg-type]
    frame7 = _format_7_frame(store)
    frame6 = _format_6_frame(store, s6)
    assert len(frame6) - len(frame7) == 2 * s.h.size * 2
    old, new = decode_snapshot(frame6), decode_snapshot(frame7)
    assert old.h.dtype == old.c.dtype == new.h.dtype == np.float16
    np.testing.assert_array_equal(old.h, wide.astype(np.float16))
    np.testing.assert_array_equal(new.h, s.h)
    np.testing.assert_array_equal(old.c, s.c)
    assert _same(dataclasses.replace(old, h=s.h), new)


def test_a_format_7_frame_with_a_float32_profile_restores_it_packed() -> None:
    """Format 7 carried the daily profile in float32 sensor units, the week's trackers
    and level in its rows: a frame of it restores the same profile into the store's
    float16 bins and float32 week, and its sums; format 8 carries the store's form, two
    bytes per bin less."""
    store = _filled_store(features=2)
    store.sbin[0] = 24.0  # an hourly stream: its week's rows are in the profile
    frame8 = _format_8_frame(store)
    frame7 = _format_7_frame(store)
    P, F = store.sp.shape[1:]
    assert len(frame7) - len(frame8) == 2 * P * F - 4 * F * (1 + season.WEEK_STATE)
    for frame in (frame7, frame8):
        other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
        slot = other.load("a", decode_snapshot(frame), partition=0, now=0.0)
        np.testing.assert_array_equal(_profile(other, slot), _profile(store, 0))
        np.testing.assert_array_equal(other.sw[slot], store.sw[0])
        sums = season.row_stats(store.profiles(np.asarray([0])), store.sbin[:1])[0]
        np.testing.assert_allclose(other.ss[slot], sums, rtol=1e-12)


def test_a_format_5_frame_from_before_the_sustained_channel_restores_it_unseeded() -> None:
    """Format 5 (the daily profile, no sustained-deviation statistics): everything else
    restores; the channel starts afresh (``pm``, ``pv``, ``pq`` 0: seeded at the next
    step)."""
    from pipeline.kafka_io.changelog import _STATS, _STATS_IN

    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.pv != 0.0
    frame = _format_6_frame(store, s)
    # Format 6 differs from 5 only by the three statistics at the end of the header.
    stats_end = _HEAD_END + 8 * _STATS_IN[6]
    old_frame = frame[:3] + bytes([5]) + frame[4 : stats_end - 8 * 3] + frame[stats_end:]
    assert (
        len(_STATS) == _STATS_IN[13] == _STATS_IN[10] + 2 == _STATS_IN[9] + 9 == _STATS_IN[6] + 13
    )
    old = decode_snapshot(old_frame)
    assert (old.pm, old.pv, old.pq) == (0.0, 0.0, 0.0)
    assert (old.tu, old.tb, old.sbin) == (s.tu, s.tb, s.sbin)
    assert old.sp is not None and old.su is None  # in sensor units, as format 7 carried it
    np.testing.assert_array_equal(old.sp, _profile(store, 0))
    np.testing.assert_array_equal(old.ring, s.ring_values().astype(np.float32))


def test_a_format_8_frame_from_before_the_departure_channel_restores_it_afresh() -> None:
    """Format 8 (no departure channel): everything else restores as format 9 carries it;
    the channel starts afresh (no blocks, no record), and a store installs it so."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.dn != 0.0 and s.db is not None and s.db.any()
    old = decode_snapshot(_format_8_frame(store))
    new = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    assert (old.dk, old.dn, old.dq, old.dl) == (0.0, 0.0, 0.0, 0.0)
    assert old.ds is None and old.dref is None and old.dmax is None and old.db is None
    blank = {"dk": 0.0, "dn": 0.0, "dq": 0.0, "dl": 0.0}
    blank |= {"ds": None, "dref": None, "dmax": None, "db": None}
    blank |= dict.fromkeys(_DAY, 0.0) | {"rv": None, "hm": None, "te": None, "tq": 0.0, "tt": 0.0}
    assert _same(old, dataclasses.replace(_values(new), **blank))
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    assert other.dn[slot] == 0.0 and not other.db[slot].any() and not other.dmax[slot].any()
    np.testing.assert_array_equal(other.mean[slot], store.mean[0])


_DAY = ("yq", "yrec", "yb", "yp", "yblk", "yt0", "yon")


def test_a_format_9_frame_from_before_the_day_channel_restores_it_afresh() -> None:
    """Format 9 (no day channel): everything else restores as format 10 carries it; the
    channel starts afresh (no energy, no record, not started), and a store installs it so."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert all(getattr(s, name) != 0.0 for name in _DAY)
    old = decode_snapshot(_format_9_frame(store))
    new = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    assert all(getattr(old, name) == 0.0 for name in _DAY)
    assert _same(
        old,
        dataclasses.replace(
            _values(new), **dict.fromkeys(_DAY, 0.0), rv=None, hm=None, te=None, tq=0.0, tt=0.0
        ),
    )
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    assert all(getattr(other, name)[slot] == 0.0 for name in _DAY)
    np.testing.assert_array_equal(other.mean[slot], store.mean[0])


def test_a_format_10_frame_from_before_the_residual_share_learns_it_afresh() -> None:
    """Format 10 (no ``rv``): everything else restores as format 11 carries it; the share
    is unknown (None) and a store installs it as not learnt (0: the deviation's spread
    falls back to the profile's variance until it is)."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.rv is not None and s.rv.all()
    old = decode_snapshot(_format_10_frame(store))
    new = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    assert old.rv is None
    np.testing.assert_array_equal(new.rv, s.rv)
    assert _same(old, dataclasses.replace(_values(new), rv=None, hm=None, te=None, tq=0.0, tt=0.0))
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    assert not other.rv[slot].any()
    np.testing.assert_array_equal(other.mean[slot], store.mean[0])


def test_a_format_11_frame_from_before_the_habit_learns_it_afresh() -> None:
    """Format 11 (no ``hm``): everything else restores as format 12 carries it; the habit
    is unknown (None) and a store installs it as empty (0: no deviation is a habit yet,
    so the level channel judges as it did before the habit)."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.hm is not None and s.hm.all()
    old = decode_snapshot(_format_11_frame(store))
    new = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    assert old.hm is None
    np.testing.assert_array_equal(new.hm, s.hm)
    assert _same(old, dataclasses.replace(_values(new), hm=None, te=None, tq=0.0, tt=0.0))
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    assert not other.hm[slot].any()
    np.testing.assert_array_equal(other.rv[slot], store.rv[0])


def test_a_format_12_frame_from_before_the_errors_by_hour_learns_them_afresh() -> None:
    """Format 12 (no ``te``, ``tq``, ``tt``): everything else restores as format 13 carries it;
    the errors by hour are unknown (None, 0) and a store installs them as unseen (the
    profile's scale is then the blend's whole-day one until the hours are learnt)."""
    store = _filled_store(features=2)
    store.last_ts[0] = 1_764_000_000.0
    s = store.snapshot(0, "m", "v")
    assert s.te is not None and s.te.all() and s.tq != 0.0 and s.tt != 0.0
    old = decode_snapshot(_format_12_frame(store))
    new = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    assert old.te is None and old.tq == 0.0 and old.tt == 0.0
    np.testing.assert_array_equal(new.te, s.te)
    assert (new.tq, new.tt) == (s.tq, s.tt)
    assert _same(old, dataclasses.replace(_values(new), te=None, tq=0.0, tt=0.0))
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    assert not other.te[slot].any() and other.tq[slot] == 0.0
    # Its hours count from the restore, however old its profile.
    assert other.tt[slot] == s.last_ts
    np.testing.assert_array_equal(other.hm[slot], store.hm[0])


def test_a_format_13_frame_restores_its_ring_encoded() -> None:
    """Format 13 carried the replay ring as float32 inputs: everything restores as format
    14 carries it, and a store keeps those inputs as codes of its own, to within 2^-11 of
    how far apart they lie (pipeline.engine.relative16)."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    old = decode_snapshot(_format_13_frame(store))
    new = decode_snapshot(encode_snapshots(store, np.asarray([0]), "m", "v")[0])
    assert old.ring_ref is None and old.ring.dtype == np.float32 and new.ring_ref is not None
    assert _same(old, _values(new))
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", old, partition=0, now=0.0)
    want = s.ring_values()[-3:]
    got = other.recent_inputs(slot)
    bound = 2.0**-11 * (want.max() - want.min()) + 2.0**-24 * np.abs(want)
    assert got.shape == want.shape and (np.abs(got - want) <= bound).all()
    # Written again, the frame is format 14's, with the codes the store made.
    again = decode_snapshot(encode_snapshot(old))
    np.testing.assert_array_equal(again.ring_values()[-3:], got)


@pytest.mark.parametrize("damage", ["unit inf", "unit 0", "reference NaN", "a code NaN"])
def test_a_frame_with_a_damaged_ring_restores_and_its_ring_recovers(damage: str) -> None:
    """A frame whose ring cannot be decoded (only damage makes one) restores the stream
    with an empty ring, or with the bad input taken as the reference when the ring next
    wraps; either way what the ring holds is finite again after one ring of inputs."""
    store = _filled_store(features=2)
    s = store.snapshot(0, "m", "v")
    assert s.ring_ref is not None and s.ring_unit is not None
    bad = {
        "unit inf": {"ring_unit": np.full_like(s.ring_unit, np.inf)},
        "unit 0": {"ring_unit": np.zeros_like(s.ring_unit)},
        "reference NaN": {"ring_ref": np.full_like(s.ring_ref, np.nan)},
        "a code NaN": {"ring": np.where(np.arange(3)[:, None] == 1, np.nan, s.ring)},
    }[damage]
    frame = encode_snapshot(dataclasses.replace(s, **bad))  # type: ignore[arg-type]
    other = StateStore(layers=1, hidden=3, features=2, horizon=2, capacity=4, ring=3)
    slot = other.load("a", decode_snapshot(frame), partition=0, now=0.0)
    for v in (5.0, 6.0, 7.0):
        other.push_inputs(np.asarray([slot]), np.full((1, 2), v))
    got = other.recent_inputs(slot)
    assert np.isfinite(got).all()
    # Exact from an empty ring; after the damaged one, within 2^-11 of their distance from
    # the reference the ring took at its wrap (the median of its old inputs, ~1,000).
    exact = damage != "a code NaN"
    np.testing.assert_allclose(got[:, 0], [5.0, 6.0, 7.0], atol=0.0 if exact else 2.0**-11 * 1e3)
