"""The step's nan_to_num: the same values as numpy's on every kind of input."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engine import finite


@pytest.mark.parametrize("kind", ["finite", "nan", "inf", "mixed"])
@pytest.mark.parametrize("shape", [(1,), (257,), (64, 3)])
@pytest.mark.parametrize("kw", [{}, {"nan": 0.0}, {"nan": 0.0, "posinf": 0.0, "neginf": 0.0}])
def test_the_same_values_as_numpys(kind: str, shape: tuple[int, ...], kw: dict[str, float]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1e3, shape)
    flat = x.reshape(-1)
    if kind in ("nan", "mixed"):
        flat[::3] = np.nan
    if kind in ("inf", "mixed"):
        flat[1::4] = np.inf
        flat[2::5] = -np.inf
    got = finite.nan_to_num(x, **kw)
    np.testing.assert_array_equal(got, np.nan_to_num(x, **kw))
    assert got.shape == x.shape and got.dtype == np.float64
    assert not np.shares_memory(got, x)  # a new array, as numpy's
