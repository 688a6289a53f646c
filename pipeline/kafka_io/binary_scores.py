"""Score records in a fixed binary layout: ``--output-format binary``.

The JSON score record (:mod:`pipeline.kafka_io.outputs`) costs the scorer ~2 µs an event
to write, a fifth of its loop at full load; this layout is written for a whole batch by
one numpy assignment per field and one slice per record (~0.2 µs an event) and is half
the size. The key is the stream id, as for JSON. Every number is little-endian; the
layout of format 1 (``F`` features, horizon ``Z``)::

    offset          size   field
    0               2      magic b"SC"
    2               1      format (1)
    3               1      flags: 1 is_anomaly, 2 warm, 4 the model has a forecast interval
    4               1      anomaly_reason: an index into REASONS (255: not flagged)
    5               1      F
    6               1      Z
    7               1      reserved (0)
    8               8      offset of the input record (int64)
    16              4      partition of the input record (int32)
    20              4      reserved (0)
    24              8      ts: the event time in epoch seconds (JSON carries it as received)
    32              8      anomaly_score
    40              8      threshold
    48              8F     the value of each feature
    48+8F           8ZF    forecast, step-major ([Z, F])
    48+8F+8ZF       8ZF    forecast_lo (NaN: none yet, or no interval)
    48+8F+16ZF      8ZF    forecast_hi
    48+8F+24ZF      8F     expected_lo: the t+1 interval the value was expected in
    48+16F+24ZF     8F     expected_hi (both NaN unless flagged)
    48+24F+24ZF     8F     feature_share (NaN unless flagged and F > 1)
    48+32F+24ZF     ...    names: model, model version, then the F feature names, each
                           a uint16 byte length and UTF-8

Numbers are float64 as computed (JSON rounds to 6 decimals). :func:`decode_score` turns a
record back into the JSON record's fields (NaN as None, as JSON has null), for consumers
and tests; a consumer in another language reads the table above.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.engine.stepper import REASONS
from pipeline.errors import BadScoreRecord
from pipeline.kafka_io import Record

__all__ = ["FORMAT", "MAGIC", "REASON_CODES", "decode_score", "encode_scores_binary"]

MAGIC = b"SC"
FORMAT = 1
# Format 1's reason codes: the order of REASONS when it was defined. A new reason is
# appended (old codes keep their meaning); a reordering is a new format.
REASON_CODES = ("forecast", "level", "range", "stuck", "sustained", "drift", "day")
NOT_FLAGGED = 255
IS_ANOMALY, WARM, HAS_INTERVAL = 1, 2, 4
_HEAD = 48
_CODE = {name: k for k, name in enumerate(REASON_CODES)}
# The engine's reasons as format 1's codes (index: REASONS' own).
_ENGINE_CODE = np.asarray([_CODE[name] for name in REASONS], np.uint8)


@lru_cache(maxsize=16)
def _layout(F: int, Z: int, names: bytes) -> np.dtype[Any]:
    """The record as a numpy structured type (the names' bytes as its last field)."""
    return np.dtype(
        [
            ("magic", "S2"),
            ("format", "u1"),
            ("flags", "u1"),
            ("reason", "u1"),
            ("F", "u1"),
            ("Z", "u1"),
            ("reserved", "u1"),
            ("offset", "<i8"),
            ("partition", "<i4"),
            ("reserved2", "<i4"),
            ("ts", "<f8"),
            ("score", "<f8"),
            ("threshold", "<f8"),
            ("values", "<f8", (F,)),
            ("forecast", "<f8", (Z * F,)),
            ("lo", "<f8", (Z * F,)),
            ("hi", "<f8", (Z * F,)),
            ("expected_lo", "<f8", (F,)),
            ("expected_hi", "<f8", (F,)),
            ("share", "<f8", (F,)),
            ("names", f"V{len(names)}"),
        ]
    )


def _names(model: str, version: str, features: tuple[str, ...]) -> bytes:
    out = bytearray()
    for name in (model, version, *features):
        raw = name.encode()
        if len(raw) > 0xFFFF:
            raise ValueError(f"name of {len(raw)} bytes: the binary format holds 65,535")
        out += struct.pack("<H", len(raw)) + raw
    return bytes(out)


def encode_scores_binary(
    *,
    ts: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    forecast: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    lo: npt.NDArray[np.float64] | None,
    hi: npt.NDArray[np.float64] | None,
    reason: npt.NDArray[np.int64],
    expected_lo: npt.NDArray[np.float64],
    expected_hi: npt.NDArray[np.float64],
    shares: npt.NDArray[np.float64] | None,
    warm: npt.NDArray[np.bool_],
    threshold: float,
    features: tuple[str, ...],
    model: str,
    version: str,
    records: list[Record],
) -> list[bytes]:
    """One binary record per scored event (``reason``: indices into the engine's REASONS;
    the other arguments as :func:`pipeline.kafka_io.outputs.encode_scores` takes them)."""
    N, Z, F = forecast.shape
    names = _names(model, version, features)
    rec = np.zeros(N, _layout(F, Z, names))
    score = np.nan_to_num(score, nan=0.0)
    flagged = (score >= threshold) & warm
    rec["magic"] = MAGIC
    rec["format"] = FORMAT
    flags = flagged.astype(np.uint8) * IS_ANOMALY | warm.astype(np.uint8) * WARM
    rec["flags"] = flags | (HAS_INTERVAL if lo is not None and hi is not None else 0)
    rec["reason"] = np.where(flagged, _ENGINE_CODE[reason], NOT_FLAGGED)
    rec["F"], rec["Z"] = F, Z
    rec["offset"] = [r.offset for r in records]
    rec["partition"] = [r.partition for r in records]
    rec["ts"], rec["score"], rec["threshold"] = ts, score, threshold
    rec["values"] = values
    rec["forecast"] = forecast.reshape(N, Z * F)
    rec["lo"] = np.nan if lo is None else lo.reshape(N, Z * F)
    rec["hi"] = np.nan if hi is None else hi.reshape(N, Z * F)
    hold = flagged[:, None]
    rec["expected_lo"] = np.where(hold, expected_lo, np.nan)
    rec["expected_hi"] = np.where(hold, expected_hi, np.nan)
    rec["share"] = np.where(hold, shares, np.nan) if shares is not None and F > 1 else np.nan
    rec["names"] = np.void(names)
    buf, size = rec.tobytes(), rec.dtype.itemsize
    return [buf[i : i + size] for i in range(0, N * size, size)]


def decode_score(value: bytes, key: bytes | None = None) -> dict[str, Any]:
    """A binary score record (and its key) as the JSON record's fields (NaN as None;
    ``ts`` in epoch seconds). BadScoreRecord if it is not one."""
    if len(value) < _HEAD or value[:2] != MAGIC:
        raise BadScoreRecord("not a Statecast binary score record (no SC magic)")
    if value[2] != FORMAT:
        raise BadScoreRecord(f"score record format {value[2]}: this version reads {FORMAT}")
    flags, code, F, Z = value[3], value[4], value[5], value[6]
    offset, partition = struct.unpack_from("<qi", value, 8)
    ts, score, threshold = struct.unpack_from("<3d", value, 24)
    body = _HEAD + 8 * (4 * F + 3 * Z * F)
    if len(value) < body:
        raise BadScoreRecord(f"{len(value)} bytes, shorter than the layout's {body}")
    nums = np.frombuffer(value, "<f8", 4 * F + 3 * Z * F, _HEAD)
    names, at = [], body
    for _ in range(2 + F):
        (n,) = struct.unpack_from("<H", value, at)
        names.append(value[at + 2 : at + 2 + n].decode())
        at += 2 + n
    model, version, features = names[0], names[1], tuple(names[2:])
    cut = np.cumsum([F, Z * F, Z * F, Z * F, F, F])
    vals, fc, lo, hi, elo, ehi, share = np.split(nums, cut)
    multi = F > 1

    def per_feature(row: npt.NDArray[np.float64]) -> Any:
        out = [None if np.isnan(v) else float(v) for v in row]
        return dict(zip(features, out, strict=True)) if multi else out[0]

    def steps(arr: npt.NDArray[np.float64]) -> list[Any]:
        return [per_feature(step) for step in arr.reshape(Z, F)]

    sid = None if key is None else key.decode("utf-8", "replace")
    doc: dict[str, Any] = {"stream_id": sid, "ts": ts}
    doc["values" if multi else "value"] = per_feature(vals)
    doc["forecast"] = steps(fc)
    if flags & HAS_INTERVAL:
        doc["forecast_lo"], doc["forecast_hi"] = steps(lo), steps(hi)
    doc |= {
        "anomaly_score": score,
        "is_anomaly": bool(flags & IS_ANOMALY),
        "warm": bool(flags & WARM),
        "partition": partition,
        "offset": offset,
        "threshold": threshold,
        "model": model,
        "model_version": version,
    }
    if flags & IS_ANOMALY:
        if code >= len(REASON_CODES):
            raise BadScoreRecord(f"reason code {code} unknown to format {FORMAT}")
        doc["anomaly_reason"] = REASON_CODES[code]
        doc["expected_lo"], doc["expected_hi"] = per_feature(elo), per_feature(ehi)
        if multi:
            doc["feature_share"] = per_feature(share)
    return doc
