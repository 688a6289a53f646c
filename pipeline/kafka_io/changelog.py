"""The state changelog: every stream's state on a compacted Kafka topic, and its restore.

One changelog topic per scorer group (``<group>.state-changelog``), partitioned like
the input topic; a stream's state goes to the partition its input came from, so a
scorer that is assigned input partition p restores exactly changelog partition p.

Record key: the stream id. Value: a versioned binary frame (never pickle)::

    b"SCS" | u8 format | u16 len + model name | u16 len + model version
    | i64 source offset (of the last input applied) | f64 last_ts
    | i64 steps, ring_len | u8 has_fc | u16 L, H, F, Z, R (, P: the profile's bins, format 5)
    | f64 n, en, es, emu, evar, run, rep_p, peak, rec, trate, qlog, gxy, gxx, gn, tu, tb,
      sbin, st0, pm, pv, pq (format 6), dk, dn, dq, dl (format 9), yq, yrec, yb, yp, yblk, yt0,
      yon (format 10), tq, tt (format 13)
    | f16 h[L,H] | f16 c[L,H] (f32 before format 7) | f64 mean[F] | f64 var[F] | f64 fc[Z,F] | f64 last_x[F]
    | f64 lo[F] | f64 hi[F] | f64 fs[Z,F] | f64 dlt[F]
    | f64 slev[F] | f64 sfc[F] | f64 mfc[F] | f64 bm[MOMENTS]
    | f16 sp[P,F] | f32 su[F] | f32 sw[3,F] (format 8; formats 5-7: f32 sp[P,F])
    | f64 ds[F] | f64 dref[F] | f64 dmax[F] | f32 db[DEPARTURE_BLOCKS,F] (format 9)
    | f64 rv[F] (format 11)
    | f32 hm[2 * HABIT_SLOTS, F] (format 12)
    | f16 te[HOURS] (format 13)
    | f16 ring[R,F] | f32 ring_ref[F] | f32 ring_unit[F] (format 14; before: f32 ring[R,F])

A tombstone (null value) marks an evicted stream. Older formats still restore, so an
upgrade keeps every stream's state: format 12 (before the errors by hour of day: no
``te``, ``tq``, ``tt``) learns them afresh; format 11 (before the level channel's habit: no
``hm``) learns it afresh; format 10 (before the profile's residual share: no
``rv``) learns it afresh; format 9 (before the day channel: no ``yq``, ``yrec``,
``yb``, ``yp``, ``yblk``, ``yt0``, ``yon``) starts that channel afresh; format 8 (before the departure channel: no ``dk``,
``dn``, ``dq``, ``dl``, ``ds``, ``dref``, ``dmax``, ``db``) starts that channel afresh; format 5 (before the sustained-deviation channel: no
``pm``, ``pv``, ``pq``) seeds that channel afresh; format 4 (before the daily profile and the seasonal
blend) restores with the profile starting afresh and the model's forecast alone until
the blend has evidence; format 3 (before the forecast channel's tail fit: no
``tu``, ``tb``) seeds that fit from the model's priors at the next step; format 2 (before forecast intervals and gains: no
``qlog``, ``gxy``, ``gxx``, ``gn``, ``fs``, ``dlt``) restores with an unknown scale until
the next step, the interval multiplier at 1 and the gain learning afresh; format 1 (also before range novelty and tail calibration: no ``peak``, ``rec``,
``trate``, ``lo``, ``hi``) takes the range as the normaliser's mean ± 6 standard
deviations, widening with the data.

Format 14 keeps the replay ring as the store does (pipeline.engine.state.StateStore.push_inputs,
pipeline.engine.relative16): float16 codes relative to a reference in a unit per feature;
older frames carry it as float32 inputs, which a restore encodes.

Format 7 keeps ``h`` and ``c`` in float16, as the store does (``STATE_DTYPE``,
pipeline.engine.state; the step session casts at the model: pipeline.engine.inference);
older frames restore with their float32 state rounded to it. Format 8 keeps the daily
profile as the store does (pipeline.engine.season.Profiles): its bins in float16 in a
unit per feature (``su``), the week's trackers and level beside them in float32 (``sw``);
formats 5-7 carry the profile in float32 sensor units with those rows in place, and
restore with it packed into that form.

Restore rule: for each key, of the frames after its last tombstone, the one with the
highest source offset *below* the committed offset of its input partition wins (of equal
offsets the newest: they describe the same state); frames at or above it describe
inputs that will be consumed again and are skipped. Not simply the newest below: at
least once, a scorer expelled from the group while it processed (paused past its session
timeout) still sends the frames of the batch in its hands before it learns of it, after
its successor's, with older source offsets; the newest would restore that older state
and skip the inputs between (the long chaos run found one). ``min.compaction.lag.ms``
keeps superseded records long enough for that rule to find the older state after a
crash. (Compaction keeps the newest record of a key: a stale frame that no later frame of
its stream follows within the lag can outlive the better one; the stream is then
restored from it.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.config import KafkaConfig
from pipeline.engine import relative16
from pipeline.engine.anomaly import DEPARTURE_BLOCKS, HABIT_SLOTS
from pipeline.engine.blend import MOMENTS
from pipeline.engine.dayspread import HOURS
from pipeline.engine.season import WEEK_STATE, Profiles
from pipeline.engine.state import STATE_DTYPE, Columns, Snapshot, StateStore
from pipeline.kafka_io import read_to_end

__all__ = [
    "FORMAT",
    "block_offsets",
    "frame_layout",
    "changelog_topic",
    "decode_block",
    "decode_columns",
    "decode_snapshot",
    "decode_snapshots",
    "encode_snapshot",
    "encode_snapshots",
    "Found",
    "frame_blocks",
    "read_covered",
    "read_partitions",
    "source_offset_of",
    "supersedes",
    "topic_config",
    "NO_STATE",
    "TOMBSTONE_AT",
]

MAGIC = b"SCS"
FORMAT = 14
# A stream's winning frame in a run of changelog records (the restore rule): the frame,
# its partition, its source offset, and whether a tombstone of the stream preceded it in
# the same run (then it replaces whatever earlier records gave the stream).
Found = tuple[bytes, int, int, bool]
_STATS = (
    "n", "en", "es", "emu", "evar", "run", "rep_p", "peak", "rec", "trate", "qlog", "gxy", "gxx",
    "gn", "tu", "tb", "sbin", "st0", "pm", "pv", "pq", "dk", "dn", "dq", "dl",
    "yq", "yrec", "yb", "yp", "yblk", "yt0", "yon", "tq", "tt",
)  # fmt: skip
# The f64 statistics a header carries per format: the first 7, 10, 14, 16, 18, 21, 25, 32 or
# 34 of _STATS.
_STATS_IN = {
    1: 7, 2: 10, 3: 14, 4: 16, 5: 18, 6: 21, 7: 21, 8: 21, 9: 25, 10: 32, 11: 32, 12: 32, 13: 34,
    14: 34,
}  # fmt: skip
_DEPARTURE_F64 = ("ds", "dref", "dmax")  # [F] each, from format 9
_SEASON_F64 = ("slev", "sfc", "mfc")  # [F] each, from format 5
# The dimensions a header carries: L, H, F, Z, R (, P: the profile's bins, from format 5).
_DIMS_IN = {fmt: 5 if fmt < 5 else 6 for fmt in _STATS_IN}
_HEADS = {
    fmt: struct.Struct(">qdqqB" + "H" * _DIMS_IN[fmt] + "d" * n) for fmt, n in _STATS_IN.items()
}
Dims = tuple[int, int, int, int, int, int]  # L, H, F, Z, R, P (0 before format 5)
_HEAD = _HEADS[FORMAT]
_STATE = {fmt: "<f2" if fmt >= 7 else "<f4" for fmt in _HEADS}  # h and c
LEGACY_RANGE_STDS = 6.0
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024


def changelog_topic(group: str) -> str:
    return f"{group}.state-changelog"


def topic_config(min_compaction_lag_ms: int = 60_000) -> dict[str, str]:
    """The changelog topic's settings: compacted soon enough that a cold restore reads
    little more than one frame per stream.

    The log cleaner only compacts closed segments, records older than
    ``min.compaction.lag.ms``, and a log at least ``min.cleanable.dirty.ratio`` dirty. The
    restore rule needs a stream's older frame only while its newest one is above the
    committed offset, i.e. until that checkpoint commits (seconds); a lag of a minute
    covers that many times over. (If commits keep failing for longer, a crash can then
    leave a stream with no frame below the committed offset: it cold-starts, it is not
    restored wrong.) Segments roll every minute (or 128 MB), so they become cleanable.
    """
    return {
        "cleanup.policy": "compact",
        "min.compaction.lag.ms": str(min_compaction_lag_ms),
        "segment.ms": "60000",
        "segment.bytes": str(128 * 1024 * 1024),
        "min.cleanable.dirty.ratio": "0.2",
        "max.message.bytes": str(MAX_SNAPSHOT_BYTES),
    }


def _str(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def encode_snapshot(s: Snapshot) -> bytes:
    L, H = s.h.shape
    Z, F = s.fc.shape
    R = s.ring.shape[0]
    P = 0 if s.sp is None else s.sp.shape[0]
    return b"".join(
        (
            MAGIC,
            bytes([FORMAT]),
            _str(s.model.encode()),
            _str(s.version.encode()),
            _HEAD.pack(
                s.source_offset,
                s.last_ts,
                s.steps,
                s.ring_len,
                int(s.has_fc),
                L,
                H,
                F,
                Z,
                R,
                P,
                s.n,
                s.en,
                s.es,
                s.emu,
                s.evar,
                s.run,
                s.rep_p,
                s.peak,
                s.rec,
                s.trate,
                s.qlog,
                s.gxy,
                s.gxx,
                s.gn,
                s.tu,
                s.tb,
                s.sbin,
                s.st0,
                s.pm,
                s.pv,
                s.pq,
                s.dk,
                s.dn,
                s.dq,
                s.dl,
                s.yq,
                s.yrec,
                s.yb,
                s.yp,
                s.yblk,
                s.yt0,
                s.yon,
                s.tq,
                s.tt,
            ),
            np.ascontiguousarray(s.h, _STATE[FORMAT]).tobytes(),
            np.ascontiguousarray(s.c, _STATE[FORMAT]).tobytes(),
            np.ascontiguousarray(s.mean, "<f8").tobytes(),
            np.ascontiguousarray(s.var, "<f8").tobytes(),
            np.ascontiguousarray(s.fc, "<f8").tobytes(),
            np.ascontiguousarray(s.last_x, "<f8").tobytes(),
            np.ascontiguousarray(s.lo, "<f8").tobytes(),
            np.ascontiguousarray(s.hi, "<f8").tobytes(),
            np.ascontiguousarray(
                np.full((Z, F), np.nan) if s.fs is None else s.fs, "<f8"
            ).tobytes(),
            np.ascontiguousarray(np.zeros(F) if s.dlt is None else s.dlt, "<f8").tobytes(),
            *(
                np.ascontiguousarray(
                    np.full(F, np.nan) if getattr(s, name) is None else getattr(s, name), "<f8"
                ).tobytes()
                for name in _SEASON_F64
            ),
            np.ascontiguousarray(np.zeros(MOMENTS) if s.bm is None else s.bm, "<f8").tobytes(),
            *_profile_bytes(s, F),
            *(
                np.ascontiguousarray(
                    np.zeros(F) if getattr(s, name) is None else getattr(s, name), "<f8"
                ).tobytes()
                for name in _DEPARTURE_F64
            ),
            np.ascontiguousarray(
                np.zeros((DEPARTURE_BLOCKS, F)) if s.db is None else s.db, "<f4"
            ).tobytes(),
            np.ascontiguousarray(np.zeros(F) if s.rv is None else s.rv, "<f8").tobytes(),
            np.ascontiguousarray(
                np.zeros((2 * HABIT_SLOTS, F)) if s.hm is None else s.hm, "<f4"
            ).tobytes(),
            np.ascontiguousarray(np.zeros(HOURS) if s.te is None else s.te, "<f2").tobytes(),
            *_ring_bytes(s, F),
        )
    )


def _ring_bytes(s: Snapshot, F: int) -> tuple[bytes, bytes, bytes]:
    """The ring's fields of a frame: as the store keeps it (a snapshot of an older frame,
    in sensor values, is encoded first, as a store installs it)."""
    ring: npt.NDArray[Any]
    ref: npt.NDArray[Any]
    unit: npt.NDArray[Any]
    if s.ring_ref is not None and s.ring_unit is not None:
        ring, ref, unit = s.ring, s.ring_ref, s.ring_unit
    elif len(s.ring):
        ring, ref, unit = relative16.fit(s.ring)
    else:
        ring, ref, unit = s.ring, np.zeros(F), np.zeros(F)
    return (
        np.ascontiguousarray(ring, "<f2").tobytes(),
        np.ascontiguousarray(ref, "<f4").tobytes(),
        np.ascontiguousarray(unit, "<f4").tobytes(),
    )


def _profile_bytes(s: Snapshot, F: int) -> tuple[bytes, bytes, bytes]:
    """The profile's fields of a frame: as the store keeps it (a snapshot of an older
    frame, in sensor units, is packed first)."""
    sp: npt.NDArray[Any]
    su: npt.NDArray[Any]
    sw: npt.NDArray[Any]
    if s.sp is None:
        sp, su, sw = np.zeros((0, F)), np.zeros(F), np.zeros((WEEK_STATE, F))
    elif s.su is None or s.sw is None:
        packed = Profiles.pack(s.sp[None].astype(np.float32), np.asarray([s.sbin]))
        sp, su, sw = packed.sp[0], packed.su[0], packed.sw[0]
    else:
        sp, su, sw = s.sp, s.su, s.sw
    return (
        np.ascontiguousarray(sp, "<f2").tobytes(),
        np.ascontiguousarray(su, "<f4").tobytes(),
        np.ascontiguousarray(sw, "<f4").tobytes(),
    )


def encode_snapshots(
    store: StateStore,
    slots: npt.NDArray[np.int64],
    model: str,
    version: str,
    on_block: Callable[[npt.NDArray[np.int64], bytes, int], None] | None = None,
) -> list[bytes]:
    """``encode_snapshot(store.snapshot(slot, ...))`` for many slots at once, byte for byte
    (``on_block`` is also handed each block of :func:`frame_blocks`).

    A checkpoint writes one frame per touched stream (10k streams: 10k frames a second);
    built one by one that costs ~10 µs of Python each, so frames of equal ring length are
    laid out as one numpy structured array and cut into records.
    """
    out: list[bytes | None] = [None] * len(slots)
    for pick, data, size in frame_blocks(store, slots, model, version):
        if on_block is not None:
            on_block(pick, data, size)
        for j, i in enumerate(pick.tolist()):
            out[i] = data[j * size : (j + 1) * size]
    return [b for b in out if b is not None]


def frame_blocks(
    store: StateStore, slots: npt.NDArray[np.int64], model: str, version: str
) -> Iterator[tuple[npt.NDArray[np.int64], bytes, int]]:
    """The frames of ``slots`` as blocks of equal-size frames: ``(positions in slots,
    the block's bytes, the frame size)``; frame j of a block is ``bytes[j*size:(j+1)*size]``."""
    L, H, F, Z, R = store.layers, store.hidden, store.features, store.horizon, store.ring
    P = store.season_bins
    prefix = MAGIC + bytes([FORMAT]) + _str(model.encode()) + _str(version.encode())
    kept = np.minimum(store.ring_len[slots], R)
    for r in np.unique(kept).tolist():
        pick = np.nonzero(kept == r)[0]
        sl = slots[pick]
        dtype = _layout(FORMAT, len(prefix), (L, H, F, Z, r, P))
        rec = np.zeros(len(sl), dtype)
        rec["prefix"] = np.frombuffer(prefix, f"V{len(prefix)}")[0]
        rec["off"] = store.src_offset[sl]
        rec["last_ts"] = store.last_ts[sl]
        rec["steps"] = store.steps[sl]
        rec["ring_len"] = store.ring_len[sl]
        rec["has_fc"] = store.has_fc[sl]
        rec["dims"] = (L, H, F, Z, r, P)
        rec["stats"] = np.stack([getattr(store, name)[sl] for name in _STATS], axis=1)
        rec["h"] = store.h[:, sl].transpose(1, 0, 2)
        rec["c"] = store.c[:, sl].transpose(1, 0, 2)
        rec["mean"] = store.mean[sl]
        rec["var"] = store.var[sl]
        rec["fc"] = store.fc[sl]
        rec["last_x"] = store.last_x[sl]
        rec["lo"] = store.lo[sl]
        rec["hi"] = store.hi[sl]
        rec["fs"] = store.fs[sl]
        rec["dlt"] = store.dlt[sl]
        for name in (*_SEASON_F64, "bm", "sp", "su", "sw", *_DEPARTURE_F64, "db", "rv", "hm", "te"):
            rec[name] = getattr(store, name)[sl]
        if r:
            rec["ring"] = store.ring_buf[sl[:, None], store.ring_positions(sl, r)]
        rec["ring_ref"] = store.ring_ref[sl]
        rec["ring_unit"] = store.ring_unit[sl]
        yield pick, rec.tobytes(), dtype.itemsize


_Header = tuple[int, str, str, int, Dims]


def _header_memo(data: bytes, memo: dict[tuple[bytes, bytes, int], _Header]) -> _Header:
    """:func:`_header`, remembered for frames that share its prefix (model and version),
    dimensions and size: a restore reads millions of frames of a few layouts."""
    try:
        fmt = data[3]
        n1 = int.from_bytes(data[4:6], "big")
        pos = 6 + n1 + 2 + int.from_bytes(data[6 + n1 : 8 + n1], "big")
        dims = pos + 33  # after off, last_ts, steps, ring_len, has_fc
        key = (data[:pos], data[dims : dims + 2 * _DIMS_IN.get(fmt, 0)], len(data))
    except IndexError:
        return _header(data)
    got = memo.get(key)
    if got is None:
        got = memo[key] = _header(data)  # raises ValueError if malformed
    return got


def _header(data: bytes) -> _Header:
    """``(format, model, version, header end, (L, H, F, Z, R, P))`` of a frame whose size
    matches its dimensions; ValueError on anything malformed."""
    if len(data) > MAX_SNAPSHOT_BYTES or len(data) < 4 or data[:3] != MAGIC:
        raise ValueError("not a Statecast state frame")
    fmt = data[3]
    if fmt not in _HEADS:
        raise ValueError(f"state frame format {fmt} is not one of {sorted(_HEADS)}")
    try:
        pos = 4
        strings = []
        for _ in range(2):
            (n,) = struct.unpack_from(">H", data, pos)
            strings.append(data[pos + 2 : pos + 2 + n].decode())
            pos += 2 + n
        head = _HEADS[fmt]
        got = head.unpack_from(data, pos)[5 : 5 + _DIMS_IN[fmt]]
    except struct.error as exc:
        raise ValueError(f"truncated state frame: {exc}") from exc
    L, H, F, Z, R, P = (*got, 0) if len(got) == 5 else got
    state = 2 * L * H * np.dtype(_STATE[fmt]).itemsize
    # The ring; the profile (format 8: float16 bins, their unit and the week's rows).
    floats32 = (R * F if fmt < 14 else 2 * F) + (F + WEEK_STATE * F if fmt >= 8 else P * F)
    floats32 += DEPARTURE_BLOCKS * F if fmt >= 9 else 0
    floats32 += 2 * HABIT_SLOTS * F if fmt >= 12 else 0
    state += 2 * P * F if fmt >= 8 else 0
    state += 2 * HOURS if fmt >= 13 else 0
    state += 2 * R * F if fmt >= 14 else 0
    # mean, var, last_x (, lo, hi (, dlt (, slev, sfc, mfc))); fc (, fs); (bm)
    # (, ds, dref, dmax (, rv))
    floats64 = {
        1: 3,
        2: 5,
        3: 6,
        4: 6,
        5: 9,
        6: 9,
        7: 9,
        8: 9,
        9: 12,
        10: 12,
        11: 13,
        12: 13,
        13: 13,
        14: 13,
    }[fmt] * F + (2 if fmt >= 3 else 1) * Z * F
    floats64 += MOMENTS if fmt >= 5 else 0
    need = pos + head.size + state + 4 * floats32 + 8 * floats64
    if len(data) != need:
        raise ValueError(f"state frame has {len(data)} bytes, its dimensions need {need}")
    return fmt, strings[0], strings[1], pos, (L, H, F, Z, R, P)


def _layout(fmt: int, pos: int, dims: Dims) -> np.dtype[np.void]:
    L, H, F, Z, R, P = dims
    stats = _STATS_IN[fmt]
    return np.dtype(
        [
            ("prefix", f"V{pos}"),
            ("off", ">i8"),
            ("last_ts", ">f8"),
            ("steps", ">i8"),
            ("ring_len", ">i8"),
            ("has_fc", "u1"),
            ("dims", ">u2", (_DIMS_IN[fmt],)),
            ("stats", ">f8", (stats,)),
            ("h", _STATE[fmt], (L, H)),
            ("c", _STATE[fmt], (L, H)),
            ("mean", "<f8", (F,)),
            ("var", "<f8", (F,)),
            ("fc", "<f8", (Z, F)),
            ("last_x", "<f8", (F,)),
            *([("lo", "<f8", (F,)), ("hi", "<f8", (F,))] if fmt >= 2 else []),
            *([("fs", "<f8", (Z, F)), ("dlt", "<f8", (F,))] if fmt >= 3 else []),
            *(
                [
                    *((name, "<f8", (F,)) for name in _SEASON_F64),
                    ("bm", "<f8", (MOMENTS,)),
                    *(
                        [("sp", "<f2", (P, F)), ("su", "<f4", (F,)), ("sw", "<f4", (WEEK_STATE, F))]
                        if fmt >= 8
                        else [("sp", "<f4", (P, F))]
                    ),
                ]
                if fmt >= 5
                else []
            ),
            *(
                [
                    *((name, "<f8", (F,)) for name in _DEPARTURE_F64),
                    ("db", "<f4", (DEPARTURE_BLOCKS, F)),
                ]
                if fmt >= 9
                else []
            ),
            *([("rv", "<f8", (F,))] if fmt >= 11 else []),
            *([("hm", "<f4", (2 * HABIT_SLOTS, F))] if fmt >= 12 else []),
            *([("te", "<f2", (HOURS,))] if fmt >= 13 else []),
            *(
                [("ring", "<f2", (R, F)), ("ring_ref", "<f4", (F,)), ("ring_unit", "<f4", (F,))]
                if fmt >= 14
                else [("ring", "<f4", (R, F))]
            ),
        ]
    )


def decode_columns(frames: list[bytes]) -> tuple[list[Columns], list[int]]:
    """Parse many frames into columns, one :class:`~pipeline.engine.state.Columns` per
    layout (model, version, dimensions), each with the positions of its frames in
    ``frames``; also returns the positions of malformed frames.

    A restore decodes one frame per stream (100k streams: 5.6 s one by one); frames of
    one layout are parsed as one numpy structured array instead, and installed as columns.
    """
    groups: dict[_Header, list[int]] = {}
    bad: list[int] = []
    memo: dict[tuple[bytes, bytes, int], _Header] = {}
    for i, data in enumerate(frames):
        try:
            groups.setdefault(_header_memo(data, memo), []).append(i)
        except ValueError:
            bad.append(i)
    out = [
        _columns(header, b"".join(frames[i] for i in idx), idx) for header, idx in groups.items()
    ]
    return out, bad


def decode_block(data: bytes | memoryview, size: int) -> Columns | None:
    """Parse a block of equal frames (``size`` bytes each, one layout: a local snapshot's
    block, :mod:`pipeline.scorer.local_state`) in one go; None if the first frame is
    malformed or the block does not match its size. Rows are positions in the block."""
    try:
        header = _header(bytes(data[:size]))
    except ValueError:
        return None
    if size <= 0 or len(data) % size:
        return None
    return _columns(header, data, list(range(len(data) // size)))


def _columns(header: _Header, data: bytes | memoryview, rows: list[int]) -> Columns:
    """The columns of ``data``: frames of one layout, back to back."""
    fmt, model, version, pos, dims = header
    rec = np.frombuffer(data, _layout(fmt, pos, dims))
    # Views where the stored type is the native one (a store copies them on install).
    col: dict[str, npt.NDArray[Any] | None] = {
        name: rec[name].astype(np.float64, copy=False) for name in ("mean", "var", "fc", "last_x")
    }
    # The store's type (an older frame's float32 state rounded to it).
    for name in ("h", "c"):
        col[name] = rec[name].astype(STATE_DTYPE, copy=False)
    mean, var = rec["mean"].astype(np.float64), rec["var"].astype(np.float64)
    if fmt >= 2:
        col["lo"] = rec["lo"].astype(np.float64, copy=False)
        col["hi"] = rec["hi"].astype(np.float64, copy=False)
    else:
        spread = LEGACY_RANGE_STDS * np.sqrt(np.maximum(var, 0.0))
        col["lo"], col["hi"] = mean - spread, mean + spread
    fc = rec["fc"].astype(np.float64)
    col["fs"] = rec["fs"].astype(np.float64, copy=False) if fmt >= 3 else np.full_like(fc, np.nan)
    col["dlt"] = rec["dlt"].astype(np.float64, copy=False) if fmt >= 3 else np.zeros_like(mean)
    # From format 5: the daily profile and the blend (older frames: None, start afresh).
    for name in (*_SEASON_F64, "bm"):
        col[name] = rec[name].astype(np.float64, copy=False) if fmt >= 5 else None
    col["sp"] = rec["sp"].astype(np.float16 if fmt >= 8 else np.float32) if fmt >= 5 else None
    # From format 8 the profile as the store keeps it; before, in sensor units (packed
    # on install).
    for name in ("su", "sw"):
        col[name] = rec[name].astype(np.float32) if fmt >= 8 else None
    # From format 9 the departure channel (older frames: None, it starts afresh).
    for name in _DEPARTURE_F64:
        col[name] = rec[name].astype(np.float64) if fmt >= 9 else None
    col["db"] = rec["db"].astype(np.float32) if fmt >= 9 else None
    # From format 11 the profile's residual share (older frames: None, learnt afresh).
    col["rv"] = rec["rv"].astype(np.float64) if fmt >= 11 else None
    # From format 12 the level channel's habit (older frames: None, learnt afresh).
    col["hm"] = rec["hm"].astype(np.float32) if fmt >= 12 else None
    # From format 13 the profile's errors by hour of day (older frames: None, afresh).
    col["te"] = rec["te"].astype(np.float16) if fmt >= 13 else None
    # From format 14 the ring as the store keeps it; before, its inputs (encoded on install).
    col["ring"] = rec["ring"].astype(np.float16 if fmt >= 14 else np.float32)
    for name in ("ring_ref", "ring_unit"):
        col[name] = rec[name].astype(np.float32) if fmt >= 14 else None
    stats = rec["stats"].astype(np.float64)
    for k, name in enumerate(_STATS):  # the newer statistics start at 0
        col[name] = stats[:, k] if k < _STATS_IN[fmt] else np.zeros(len(rows))
    col["source_offset"] = rec["off"].astype(np.int64)
    col["last_ts"] = rec["last_ts"].astype(np.float64)
    col["steps"] = rec["steps"].astype(np.int64)
    col["ring_len"] = rec["ring_len"].astype(np.int64)
    col["has_fc"] = rec["has_fc"].astype(np.bool_)
    return Columns(model, version, rows, col)


def decode_snapshots(frames: list[bytes]) -> list[Snapshot | None]:
    """Parse many frames (None for a malformed one), as :func:`decode_snapshot` would."""
    out: list[Snapshot | None] = [None] * len(frames)
    groups, _ = decode_columns(frames)
    for g in groups:
        for j, i in enumerate(g.rows):
            out[i] = g.snapshot(j)
    return out


def decode_snapshot(data: bytes) -> Snapshot:
    """Parse a frame; raises ValueError on anything malformed (never trusts sizes blindly)."""
    snap = decode_snapshots([data])[0]
    if snap is None:
        _header(data)  # raises with the reason
    assert snap is not None
    return snap


def source_offset_of(data: bytes) -> int:
    """The source offset a frame records, without decoding the rest; ValueError if malformed."""
    return _offset_at(data, _header(data)[3])


def frame_layout(frame: bytes | memoryview) -> tuple[object, ...]:
    """What frames must share to decode as one block (format, model, version, header
    size, dimensions); ValueError if ``frame`` is malformed."""
    return _header(bytes(frame))


def block_offsets(data: bytes | memoryview, size: int) -> npt.NDArray[np.int64]:
    """The source offsets of a block of equal frames (``size`` bytes each, one layout), read
    in place; ValueError if its first frame is malformed or the block does not fit."""
    if size <= 0 or len(data) % size:
        raise ValueError(f"a block of {len(data)} bytes is not made of {size}-byte frames")
    pos = _header(bytes(data[:size]))[3]
    view = np.ndarray((len(data) // size,), ">i8", data, pos, (size,))
    return view.astype(np.int64)


def _offset_at(data: bytes, pos: int) -> int:
    """The source offset of a frame whose header ends at ``pos`` (its first field)."""
    (off,) = struct.unpack_from(">q", data, pos)
    return int(off)


def read_partitions(
    config: KafkaConfig,
    topic: str,
    committed: dict[int, int | None],
    *,
    read_committed: bool,
    timeout_s: float = 120.0,
    start: Mapping[int, int] | None = None,
    ends: Mapping[int, int] | None = None,
) -> tuple[dict[str, Found | None], int]:
    """The frames that restore the streams of the given changelog partitions.

    ``committed[p]`` is the committed offset of input partition p (None: nothing committed,
    so nothing is restored). Returns ``({stream id: its :data:`Found` winner, or None if
    the stream was evicted}, records read)``; :func:`decode_columns` parses the frames.
    With a local snapshot (pipeline.scorer.local_state), ``start[p]`` is the changelog
    offset it covers: only the records from there on are read, and a stream in the result
    replaces the snapshot's (a partition whose ``start`` is its end, ``ends[p]``, is not
    read at all).
    """
    wanted = {p: c for p, c in committed.items() if c is not None and c > 0}
    if not wanted:
        return {}, 0
    # Pick each stream's frame by its source offset alone, then decode only the winners:
    # a changelog holds many superseded frames per stream until it is compacted.
    pick = _Picker(wanted)
    count = 0
    begin, end = start or {}, ends or {}
    to_read = [p for p in wanted if p not in begin or p not in end or begin[p] < end[p]]
    for part, _, key, value in read_to_end(
        config,
        topic,
        to_read,
        read_committed=read_committed,
        max_message_bytes=MAX_SNAPSHOT_BYTES,
        timeout_s=timeout_s,
        start=start,
    ):
        count += 1
        if key is not None:
            pick.add(part, key, value, pick.source(value))
    return pick.best, count


def read_covered(
    config: KafkaConfig,
    topic: str,
    committed: dict[int, int],
    start: Mapping[int, int],
    *,
    read_committed: bool,
    timeout_s: float = 120.0,
) -> tuple[dict[int, dict[str, Found | None]], dict[int, int], int]:
    """A standby's read (:mod:`pipeline.scorer.standby`, step 2): per partition p, from
    ``start[p]`` to its end, the restore rule's winners (below ``committed[p]``) of the
    records *before the first frame at or above* ``committed[p]``, and the offset where
    that run ends (the first such frame's, else the one after the last record read, else
    ``start[p]``). Every record before that offset is then a tombstone or a frame of a
    committed input, so a restore at any later committed offset finds the same winners
    among them: a snapshot of the winners covers the changelog up to there. Returns
    ``({p: {stream id: winner}}, {p: covered offset}, records read)``."""
    picks = {p: _Picker({p: c}) for p, c in committed.items()}
    covered = {p: start[p] for p in committed}
    cut: set[int] = set()
    count = 0
    for part, offset, key, value in read_to_end(
        config,
        topic,
        list(committed),
        read_committed=read_committed,
        max_message_bytes=MAX_SNAPSHOT_BYTES,
        timeout_s=timeout_s,
        start=start,
    ):
        count += 1
        if part in cut:
            continue
        pick = picks[part]
        source = pick.source(value)
        if source is not None and source >= committed[part]:
            cut.add(part)  # an input not committed yet: a later restore reads from here
            covered[part] = offset
            continue
        covered[part] = offset + 1
        if key is not None:
            pick.add(part, key, value, source)
    return {p: pick.best for p, pick in picks.items()}, covered, count


class _Picker:
    """The restore rule over a run of changelog records, in log order: each stream's
    :data:`Found` winner, or None after a tombstone with no frame since."""

    def __init__(self, committed: dict[int, int]) -> None:
        self.committed = committed
        self.best: dict[str, Found | None] = {}
        self._memo: dict[tuple[bytes, bytes, int], _Header] = {}

    def source(self, value: bytes | None) -> int | None:
        """A frame's source offset; None for a tombstone or a corrupt frame."""
        if value is None:
            return None
        try:
            return _offset_at(value, _header_memo(value, self._memo)[3])
        except ValueError:
            return None

    def add(self, part: int, key: bytes, value: bytes | None, source: int | None) -> None:
        best = self.best
        sid = key.decode("utf-8", "replace")
        if value is None:
            best[sid] = None  # evicted
            return
        if source is None:
            return  # a corrupt frame is skipped; an older one (if any) stands
        if source < self.committed[part]:
            if sid not in best:
                best[sid] = (value, part, source, False)
            elif (cur := best[sid]) is None:
                best[sid] = (value, part, source, True)  # re-created after its tombstone
            elif source >= cur[2]:
                best[sid] = (value, part, source, cur[3])


TOMBSTONE_AT = np.iinfo(np.int64).max  # a tombstone among source offsets: above any
NO_STATE = -1  # no earlier state, or a removed one: below any source offset


def supersedes(
    offsets: npt.NDArray[np.int64], fresh: npt.NDArray[np.bool_], below: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Whether each stream's winner in later records (a frame at source ``offsets``, after
    a tombstone of the stream in those records where ``fresh``; a tombstone:
    ``TOMBSTONE_AT``) replaces the state earlier records gave it (a frame at source offset
    ``below``; none, or a tombstone: ``NO_STATE``)."""
    return fresh | (offsets >= below)
