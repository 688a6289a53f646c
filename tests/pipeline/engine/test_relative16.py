"""relative16: numbers as float16 codes of a reference, in a power-of-two unit."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engine import relative16


@pytest.mark.parametrize("span", [0.0, 1e-30, 0.3, 1.0, 65504.0, 1e30, 3e38, np.inf, np.nan])
def test_a_unit_is_the_power_of_two_that_holds_the_span_in_15_bits(span: float) -> None:
    unit = float(relative16.unit_for(np.array([span]))[0])
    mantissa, _ = np.frexp(unit)
    assert mantissa == 0.5 and np.isfinite(unit) and unit > 0  # a power of two, in float32
    if np.isfinite(span) and span > 2.0**-80:
        assert 2.0**14 <= span / unit < 2.0**15


def test_codes_come_back_to_within_2_to_the_minus_11_of_their_distance_from_the_reference() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (50, 8, 2)) * 10.0 ** rng.integers(-20, 20, (50, 1, 2))
    x += 10.0 ** rng.integers(-20, 20, (50, 1, 2))
    codes, ref, unit = relative16.fit(x)
    back = relative16.decode(codes, ref[:, None], unit[:, None])
    dist = np.abs(x - ref[:, None])
    np.testing.assert_array_equal(ref, np.median(x, axis=1).astype(np.float32))
    assert (np.abs(back - x) <= 2.0**-11 * dist + 2.0**-24 * np.abs(x)).all()
    # Codes decoded exactly encode to themselves (what a frame round trip relies on).
    np.testing.assert_array_equal(relative16.encode(back, ref[:, None], unit[:, None]), codes)


def test_codes_beyond_the_range_saturate_and_nan_stays_nan() -> None:
    got = relative16.encode(np.array([1e9, -1e9, np.nan]), 0.0, 1.0)
    assert got[0] == relative16.LIMIT and got[1] == -relative16.LIMIT and np.isnan(got[2])
