"""What the engine consumes: decoded events and the reasons a record is rejected.

The wire codec (:mod:`pipeline.kafka_io.codec`) and the CSV loader produce these; the
engine never sees bytes. ``parse_ts`` is the one reading of an event time, shared by
the codec, CSV files and training.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import EventRejected

__all__ = ["MAX_STREAM_ID_BYTES", "REASONS", "DecodedBatch", "Rejection", "as_float", "parse_ts"]

# The longest stream id (UTF-8 bytes) a record may name.
MAX_STREAM_ID_BYTES = 256

REASONS = (
    "oversized",
    "malformed_json",
    "malformed_binary",  # a value with the binary layout's magic bytes that does not fit it
    "missing_field",
    "wrong_type",
    "non_finite",
    "wrong_features",
    "key_mismatch",
    "out_of_order",
    "out_of_range",  # a value beyond the configured magnitude bound
    "implausible_ts",  # an event time too far ahead of the clock, or before 1970
    "capacity",  # a new stream while the scorer holds max_streams streams
    "state_reset",  # the step would have made the stream's state non-finite
    "internal_error",  # an unexpected exception while handling this one record
)


@dataclasses.dataclass(frozen=True)
class Rejection:
    """One record that goes to the dead-letter topic."""

    index: int
    reason: str
    detail: str


@dataclasses.dataclass
class DecodedBatch:
    """Valid events of a batch, in record order: ``index[i]`` is the record position."""

    index: npt.NDArray[np.int64]
    stream_ids: list[str]
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    ts_raw: list[Any]
    rejections: list[Rejection]


def as_float(name: str, raw: int | float) -> float:
    try:
        return float(raw)
    except OverflowError:  # an integer beyond float range: JSON allows any size
        raise EventRejected("non_finite", f"{name} is too large for a float") from None


def parse_ts(raw: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if type(raw) is float and math.isfinite(raw):  # the common cases first
        return raw
    if type(raw) is int:
        return as_float("ts", raw)
    if isinstance(raw, bool):
        raise EventRejected("wrong_type", "ts must be a number or an ISO-8601 string, got bool")
    if isinstance(raw, int | float):
        value = as_float("ts", raw)
        if not math.isfinite(value):
            raise EventRejected("non_finite", f"ts is {raw}")
        return value
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise EventRejected("wrong_type", f"ts {raw[:40]!r} is not ISO-8601") from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise EventRejected(
        "wrong_type", f"ts must be a number or an ISO-8601 string, got {type(raw).__name__}"
    )
