"""``numpy.nan_to_num`` with its result unchanged, but cheap where every value is finite.

The step (pipeline.engine.stepper) calls it a dozen times per batch, on arrays that are
mostly finite; ``numpy.nan_to_num`` checks NaN, +inf and -inf each time and costs ~8.5 µs
a call at any batch size, where testing finiteness first costs ~2 µs (timeit, 2 vCPU;
docs/benchmarks.md). The result is the same array of values either way (a new array, as
``numpy.nan_to_num`` returns).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["nan_to_num"]

F64 = npt.NDArray[np.float64]


def nan_to_num(
    x: npt.ArrayLike, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> F64:
    """``numpy.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)`` for float arrays."""
    a = np.asarray(x, np.float64)
    ok = np.isfinite(a)
    if ok.all():
        out: F64 = a.copy()
        return out
    if not np.isinf(a).any():  # NaN only: the usual non-finite value (a quantity not known yet)
        some: F64 = np.where(ok, a, nan)
        return some
    full: F64 = np.nan_to_num(a, nan=nan, posinf=posinf, neginf=neginf)
    return full
