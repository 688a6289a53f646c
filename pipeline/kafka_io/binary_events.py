"""Sensor events in a fixed binary layout, decoded a batch at a time.

A JSON event costs the scorer ~1.4 µs to parse and validate (one ``orjson.loads`` and a
dict walk per record); a batch of these records is read by one ``np.frombuffer`` and a
few vectorised checks, ~0.3 µs an event (``benchmarks/input_format.py --decode-only``). A producer may send either format on the same topic: a record
whose value starts with the magic bytes is read as binary (no JSON text can start with
them), any other as JSON. The key is the stream id (UTF-8, required: the layout has no
room for it). Every number is little-endian; format 1, ``F`` features::

    offset   size   field
    0        2      magic b"SE"
    2        1      format (1)
    3        1      F: the number of values (the model's features, in its order)
    4        8      ts: the event time in epoch seconds (float64)
    12       8F     the value of each feature (float64)

A binary record that does not fit the layout is dead-lettered as ``malformed_binary``;
the rest of the rules (finite numbers, the model's feature count, a non-empty stream id
of at most 256 bytes) are JSON's, with the same reasons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.engine.events import MAX_STREAM_ID_BYTES
from pipeline.errors import EventRejected

__all__ = [
    "FORMAT",
    "HEADER",
    "MAGIC",
    "decode_binary_event",
    "decode_binary_rows",
    "encode_event_binary",
    "record_bytes",
    "stream_id_of",
]

MAGIC = b"SE"
FORMAT = 1
HEADER = 12


@lru_cache(maxsize=16)
def _layout(F: int) -> np.dtype[Any]:
    return np.dtype(
        [("magic", "S2"), ("format", "u1"), ("F", "u1"), ("ts", "<f8"), ("values", "<f8", (F,))]
    )


def record_bytes(n_features: int) -> int:
    """The length of a binary event with ``n_features`` values."""
    return HEADER + 8 * n_features


def encode_event_binary(stream_id: str, ts: float, values: Sequence[float]) -> tuple[bytes, bytes]:
    """``(key, value)`` of one event: the producer side of the layout."""
    if not 0 < len(values) < 256:
        raise ValueError(f"{len(values)} values: the binary layout holds 1 to 255")
    row = np.zeros(1, _layout(len(values)))
    row["magic"], row["format"], row["F"] = MAGIC, FORMAT, len(values)
    row["ts"], row["values"] = ts, np.asarray(values, np.float64)
    return stream_id.encode(), row.tobytes()


def stream_id_of(key: bytes | None) -> str:
    """The stream id a binary record's key names, or EventRejected."""
    if not key:
        raise EventRejected("missing_field", "a binary event's key must be its stream id")
    if len(key) > MAX_STREAM_ID_BYTES:
        raise EventRejected("oversized", f"stream_id longer than {MAX_STREAM_ID_BYTES} bytes")
    try:
        return key.decode()
    except UnicodeDecodeError as exc:
        raise EventRejected("wrong_type", "the key (stream id) is not UTF-8") from exc


def decode_binary_event(
    key: bytes | None, value: bytes, n_features: int, max_bytes: int
) -> tuple[str, float, float, list[float]]:
    """Validate one binary record; returns ``(stream_id, ts, ts, values)`` (the time as
    received is the number itself) or raises EventRejected."""
    if len(value) > max_bytes:
        raise EventRejected("oversized", f"{len(value)} bytes > limit {max_bytes}")
    if len(value) < HEADER or not value.startswith(MAGIC) or value[2] != FORMAT:
        raise EventRejected(
            "malformed_binary",
            f"{len(value)} bytes starting with {MAGIC!r}: not binary event format {FORMAT} "
            f"(header of {HEADER} bytes, format byte {FORMAT})",
        )
    count = value[3]
    if len(value) != record_bytes(count):
        raise EventRejected(
            "malformed_binary",
            f"{len(value)} bytes for {count} values: expected {record_bytes(count)}",
        )
    sid = stream_id_of(key)
    if count != n_features:
        raise EventRejected("wrong_features", f"{count} values but the model expects {n_features}")
    row = np.frombuffer(value, _layout(count))[0]
    ts = float(row["ts"])
    vals = [float(v) for v in row["values"]]
    if not math.isfinite(ts):
        raise EventRejected("non_finite", f"ts is {ts}")
    if not all(math.isfinite(v) for v in vals):
        raise EventRejected("non_finite", f"values {vals[:8]} are not all finite")
    return sid, ts, ts, vals


def decode_binary_rows(
    values: Sequence[bytes], n_features: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The columnar fast path: ``values`` all of the layout's length for ``n_features``
    (the caller checks). Returns ``(ok [N], ts [N], values [N, F])``; ``ok`` false for
    a record :func:`decode_binary_event` must look at (a wrong format byte or feature
    count, a non-finite number), whose reason it gives."""
    rows = np.frombuffer(b"".join(values), _layout(n_features))
    ts = rows["ts"]
    vals = rows["values"].reshape(len(rows), n_features)
    ok = (rows["magic"] == MAGIC) & (rows["format"] == FORMAT) & (rows["F"] == n_features)
    ok &= np.isfinite(ts) & np.isfinite(vals).all(axis=1)
    return ok, ts.astype(np.float64), vals.astype(np.float64)
