"""Numbers kept in 16 bits as float16 multiples of a unit, relative to a reference.

The replay ring (:mod:`pipeline.engine.state`) holds a stream's last inputs for a model
swap to replay. In float32 it was a quarter of a stream's state arrays; in float16 as
they are, a value of 1,000.3 would keep 0.5 of resolution. Kept instead as
``code = (x - ref) / unit`` in float16, with ``ref`` the median of the row's values and
``unit`` a power of two fitted to the row's spread and level (:func:`unit_for`), a value
keeps a resolution of 2^-11 of its distance from the reference: finer than float32's
(2^-24 of the value) where that distance is below 2^-13 of the value, and otherwise 2^-11
of a distance the replay's normaliser measures in the stream's spread
(``benchmarks/ring_precision.py`` measures it on NAB series). Power-of-two units keep
``code * unit`` exact.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["LIMIT", "about", "decode", "encode", "fit", "unit_for"]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]

# The largest code kept: float16's largest finite value (a code beyond it saturates).
LIMIT = 65504.0
# A unit puts the largest distance it was fitted to at 2^15 codes (half of LIMIT: the row
# can move as far again before it needs a new reference).
_SPAN_CODES_LOG2 = 15
# The least unit: a row of zeros still gets a normal float32 unit.
_MIN_EXP = -100
# The largest span fitted (a non-finite one too): twice float32's largest value, the
# farthest apart two float32 inputs can be.
_MAX_SPAN = 2.0 * float(np.finfo(np.float32).max)


def unit_for(span: npt.ArrayLike) -> F32:
    """The power of two ``u`` with ``2^14 <= span / u < 2^15`` (elementwise, ``span >= 0``;
    a span beyond two float32 ranges, or not finite, as that; a span of 0 gets 2^-115)."""
    finite = np.nan_to_num(np.asarray(span, np.float64), nan=_MAX_SPAN, posinf=_MAX_SPAN)
    _, exp = np.frexp(np.minimum(finite, _MAX_SPAN))  # span = m * 2^exp, 0.5 <= m < 1
    out: F32 = np.ldexp(1.0, np.maximum(exp, _MIN_EXP) - _SPAN_CODES_LOG2).astype(np.float32)
    return out


def encode(x: npt.ArrayLike, ref: npt.ArrayLike, unit: npt.ArrayLike) -> F16:
    """``(x - ref) / unit`` in float16, saturating at ``±LIMIT`` (NaN stays NaN)."""
    codes = (np.asarray(x, np.float64) - np.asarray(ref, np.float64)) / np.asarray(unit, np.float64)
    out: F16 = np.clip(codes, -LIMIT, LIMIT).astype(np.float16)
    return out


def decode(codes: npt.ArrayLike, ref: npt.ArrayLike, unit: npt.ArrayLike) -> F64:
    """The numbers ``codes`` stand for: ``ref + codes * unit``."""
    out: F64 = np.asarray(ref, np.float64) + np.asarray(codes, np.float64) * np.asarray(
        unit, np.float64
    )
    return out


def fit(x: npt.ArrayLike) -> tuple[F16, F32, F32]:
    """``x [..., k, F]`` (k numbers per feature) as codes, a reference (their median, in
    float32: what most of them lie close to) and a unit that holds them all: ``(codes,
    ref [..., F], unit [..., F])``."""
    values = np.asarray(x, np.float64)
    ref = np.median(values, axis=-2).astype(np.float32)
    codes, unit = about(values, ref)
    return codes, ref, unit


def about(x: npt.ArrayLike, ref: F32, kept: npt.NDArray[np.bool_] | None = None) -> tuple[F16, F32]:
    """``x [..., k, F]`` as codes of ``ref [..., F]`` in the unit that holds both the
    reference and the numbers ``kept`` (a mask like ``x``; default: all of them):
    ``(codes, unit [..., F])``. The codes of numbers not kept are whatever they come to."""
    values = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore"):
        dist = np.abs(values - ref[..., None, :])
    if kept is not None:
        dist = np.where(kept, dist, 0.0)
    unit = unit_for(np.maximum(dist.max(axis=-2), np.abs(ref)))
    return encode(values, ref[..., None, :], unit[..., None, :]), unit
