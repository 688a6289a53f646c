"""Sensor events: JSON (or the binary layout) on the wire, validated into arrays; bad
records become reasons.

Input value (key = stream id, UTF-8)::

    {"stream_id": "pump-17", "ts": "2026-11-25T10:00:00Z", "value": 21.3}
    {"stream_id": "pump-17", "ts": 1764064800, "values": {"temp": 21.3, "vibration": 0.02}}

or a value in the fixed binary layout of :mod:`.binary_events` (told apart by its magic
bytes, record by record, so one topic may carry both), which a batch decodes at once.

:func:`decode_batch` turns a poll batch into arrays for the valid events and a
list of rejections, each with a reason code from :data:`REASONS`; it never raises
on bad input. The out-of-order check needs the stream's state, so the scorer
applies it after decoding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from pipeline.engine.events import (
    MAX_STREAM_ID_BYTES,
    DecodedBatch,
    Rejection,
    as_float,
    parse_ts,
)
from pipeline.errors import EventRejected
from pipeline.kafka_io.binary_events import (
    MAGIC,
    decode_binary_event,
    decode_binary_rows,
    record_bytes,
    stream_id_of,
)

__all__ = [
    "decode_batch",
    "decode_event",
    "encode_event",
]


def _number(name: str, raw: Any) -> float:
    if type(raw) is float and math.isfinite(raw):  # the common case
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise EventRejected("wrong_type", f"{name} must be a number, got {type(raw).__name__}")
    value = as_float(name, raw)
    if not math.isfinite(value):
        raise EventRejected("non_finite", f"{name} is {raw}")
    return value


def decode_event(
    key: bytes | None, value: bytes | None, features: Sequence[str], max_bytes: int
) -> tuple[str, float, Any, list[float]]:
    """Validate one record; returns ``(stream_id, ts, ts_raw, values)`` or raises EventRejected."""
    if value is not None and value.startswith(MAGIC):  # the binary layout's, not JSON
        return decode_binary_event(key, value, len(features), max_bytes)
    if value is None:
        raise EventRejected("malformed_json", "record has no value (tombstone)")
    if len(value) > max_bytes:
        raise EventRejected("oversized", f"{len(value)} bytes > limit {max_bytes}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity tokens and overflowing numbers, which Python's json
        # module writes by default; the lenient parser tells those apart (non_finite).
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError):
            raise EventRejected("malformed_json", str(exc)[:200]) from exc
    if not isinstance(doc, dict):
        raise EventRejected("malformed_json", f"expected a JSON object, got {type(doc).__name__}")
    sid = doc.get("stream_id")
    if sid is None:
        raise EventRejected("missing_field", "stream_id is missing")
    if not isinstance(sid, str) or not sid:
        raise EventRejected("wrong_type", "stream_id must be a non-empty string")
    sid_bytes = sid.encode()
    if len(sid_bytes) > MAX_STREAM_ID_BYTES:
        raise EventRejected("oversized", f"stream_id longer than {MAX_STREAM_ID_BYTES} bytes")
    if key is not None and key != sid_bytes:
        raise EventRejected("key_mismatch", "record key differs from stream_id")
    if "ts" not in doc:
        raise EventRejected("missing_field", "ts is missing")
    ts_raw = doc["ts"]
    ts = parse_ts(ts_raw)
    if "values" in doc:
        vals = doc["values"]
        if not isinstance(vals, dict):
            raise EventRejected("wrong_type", "values must be an object of feature -> number")
        if set(vals) != set(features):
            raise EventRejected(
                "wrong_features", f"features {sorted(vals)[:8]} != model features {list(features)}"
            )
        return sid, ts, ts_raw, [_number(f, vals[f]) for f in features]
    if "value" in doc:
        if len(features) != 1:
            raise EventRejected(
                "wrong_features", f"single 'value' but the model expects {list(features)}"
            )
        return sid, ts, ts_raw, [_number("value", doc["value"])]
    raise EventRejected("missing_field", "value (or values) is missing")


def decode_batch(
    records: Sequence[tuple[bytes | None, bytes | None]],
    features: Sequence[str],
    max_bytes: int,
) -> DecodedBatch:
    """Decode ``(key, value)`` pairs; never raises on bad input.

    Binary events of the layout's length are read together (:func:`decode_binary_rows`);
    every other record, and a binary one that fails a check, one at a time
    (:func:`decode_event`, which gives the reason)."""
    F = len(features)
    size = record_bytes(F)
    fast: list[int] = []
    if size <= max_bytes:
        fast = [
            i
            for i, (_, v) in enumerate(records)
            if v is not None and len(v) == size and v.startswith(MAGIC)
        ]
    if not fast:
        return _decode_each(records, range(len(records)), features, max_bytes)
    ok, ts, vals = decode_binary_rows([records[i][1] or b"" for i in fast], F)
    keys = [records[i][0] for i in fast]
    sids = _stream_ids(keys)
    rejections: list[Rejection] = []
    slow: list[int] = []
    if sids is not None and ok.all():
        index, rows = fast, list(range(len(fast)))
    else:
        index, rows, sids = [], [], []
        for j, (i, good, key) in enumerate(zip(fast, ok.tolist(), keys, strict=True)):
            if not good:
                slow.append(i)
                continue
            try:
                sids.append(stream_id_of(key))
            except EventRejected as exc:
                rejections.append(Rejection(i, exc.reason, exc.detail))
                continue
            index.append(i)
            rows.append(j)
    picked = np.asarray(rows, np.int64)
    tss = ts[picked]
    read = DecodedBatch(
        np.asarray(index, np.int64), sids, tss, vals[picked], tss.tolist(), rejections
    )
    if len(fast) == len(records):
        if not slow:
            return read
        rest = slow
    else:
        taken = set(fast) - set(slow)
        rest = [i for i in range(len(records)) if i not in taken]
    return _merge(read, _decode_each(records, rest, features, max_bytes))


def _stream_ids(keys: list[bytes | None]) -> list[str] | None:
    """Every key as a stream id at once, or None if one of them is not a valid one (the
    caller then asks :func:`stream_id_of` key by key, for the reason)."""
    present = [k for k in keys if k]
    if len(present) < len(keys) or max(map(len, present)) > MAX_STREAM_ID_BYTES:
        return None
    try:
        return [k.decode() for k in present]
    except UnicodeDecodeError:
        return None


def _decode_each(
    records: Sequence[tuple[bytes | None, bytes | None]],
    which: Sequence[int],
    features: Sequence[str],
    max_bytes: int,
) -> DecodedBatch:
    """The records at ``which`` (in order), one at a time."""
    index: list[int] = []
    sids: list[str] = []
    tss: list[float] = []
    raws: list[Any] = []
    vals: list[list[float]] = []
    rejections: list[Rejection] = []
    for i in which:
        key, value = records[i]
        try:
            sid, ts, ts_raw, v = decode_event(key, value, features, max_bytes)
        except EventRejected as exc:
            rejections.append(Rejection(i, exc.reason, exc.detail))
            continue

        index.append(i)
        sids.append(sid)
        tss.append(ts)
        raws.append(ts_raw)
        vals.append(v)
    F = len(features)
    return DecodedBatch(
        np.asarray(index, np.int64),
        sids,
        np.asarray(tss, np.float64),
        np.asarray(vals, np.float64).reshape(len(vals), F),
        raws,
        rejections,
    )


def _merge(a: DecodedBatch, b: DecodedBatch) -> DecodedBatch:
    """Two decodings of disjoint records of one batch as one, in record order."""
    index = np.concatenate([a.index, b.index])
    order = np.argsort(index, kind="stable")
    sids, raws = a.stream_ids + b.stream_ids, a.ts_raw + b.ts_raw
    at = order.tolist()
    return DecodedBatch(
        index[order],
        [sids[k] for k in at],
        np.concatenate([a.ts, b.ts])[order],
        np.concatenate([a.values, b.values])[order],
        [raws[k] for k in at],
        sorted(a.rejections + b.rejections, key=lambda r: r.index),
    )


def encode_event(stream_id: str, ts: Any, values: dict[str, float] | float) -> bytes:
    """The producer side of the contract (used by replay, demo and tests)."""
    doc: dict[str, Any] = {"stream_id": stream_id, "ts": ts}
    if isinstance(values, dict):
        doc["values"] = values
    else:
        doc["value"] = values
    return orjson.dumps(doc)
