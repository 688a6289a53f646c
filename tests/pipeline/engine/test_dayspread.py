"""The profile's errors by hour of day (pipeline.engine.dayspread)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.engine import dayspread, season
from pipeline.engine.dayspread import ADMIT, HOURS, MAX_RATIO, MIN_VALUES

T0 = 1_700_000_000.0 - 1_700_000_000.0 % season.DAY  # a midnight
STEP = 300.0
F16 = npt.NDArray[np.float16]
F64 = npt.NDArray[np.float64]
Hours = tuple[F16, F64, F64]  # te, tq, and since when the hours count


def _learnt(days: int, noise_by_hour: F64, start: float = T0, seed: int = 0) -> Hours:
    """``(te, tq, since)`` of one stream whose hours count from ``start`` after ``days``
    of 5-minute values from then whose profile error at hour h is |N(0, noise_by_hour[h])|."""
    rng = np.random.default_rng(seed)
    te = np.zeros((1, HOURS), np.float16)
    tq, since = np.zeros(1), np.full(1, start)
    yes, step = np.ones(1, np.bool_), np.full(1, STEP)
    for t in start + STEP * np.arange(int(days * season.DAY / STEP)):
        hour = int((t % season.DAY) // 3600)
        err = np.abs(rng.normal(0, noise_by_hour[hour], 1))
        tq = dayspread.learn(te, tq, err, np.full(1, t), since, step, yes, yes)
    return te, tq, since


def _ratio(h: Hours, at_hour: float, day: int = 6, step: float = STEP) -> float:
    te, tq, since = h
    ts = np.full(1, T0 + day * season.DAY + at_hour * 3600)
    return float(dayspread.ratio(te, tq, ts, np.full(1, T0), since, np.full(1, step))[0])


def test_a_stream_noisy_by_day_and_quiet_by_night_gets_its_scale_by_hour() -> None:
    """Ten times the noise from 08:00 to 20:00: the night's scale is a fraction of the
    stream's recent one, the day's a multiple, and the two differ about tenfold."""
    noise = np.where((np.arange(HOURS) >= 8) & (np.arange(HOURS) < 20), 1.0, 0.1)
    h = _learnt(6, noise)
    night, day = _ratio(h, 3.5), _ratio(h, 14.5)
    assert night < 0.4 < 1.2 < day
    assert 6.0 < day / night < 14.0


def test_a_stream_whose_noise_does_not_follow_the_day_keeps_a_ratio_near_one() -> None:
    h = _learnt(6, np.ones(HOURS))
    ratios = [_ratio(h, hour + 0.5) for hour in range(HOURS)]
    assert min(ratios) > 0.75 and max(ratios) < 1.4


def test_a_value_near_the_days_edge_takes_the_busier_hours_figure() -> None:
    """The day starts at 08:00: a value at 07:30 (the hour before it) is measured with the
    busy hour's figure, one at 06:30 (two hours before) with the quiet one's."""
    h = _learnt(6, np.where(np.arange(HOURS) >= 8, 1.0, 0.1))
    assert _ratio(h, 7.5) > 5 * _ratio(h, 6.5)
    assert _ratio(h, 6.5) < 0.2


def test_no_ratio_before_the_profile_settles_or_the_hours_have_enough_values() -> None:
    h = _learnt(3, np.where(np.arange(HOURS) >= 12, 1.0, 0.1))
    assert _ratio(h, 3.5, day=1) == 1.0  # younger than season.SETTLED_DAYS
    assert _ratio(h, 3.5, day=3) != 1.0
    # An hourly stream sees each hour once a day: MIN_VALUES days before its hours count.
    assert _ratio(h, 3.5, day=3, step=3600.0) == 1.0
    assert _ratio(h, 3.5, day=MIN_VALUES + 1, step=3600.0) != 1.0


def test_hours_begun_late_count_their_values_from_their_own_start() -> None:
    """A stream whose hours began on day 10 (restored from a frame without them: its
    profile is ten days old) has no ratio until its hours have their values, and its
    first values are averaged, not decayed in at the slow rate of an old bin."""
    noise = np.where(np.arange(HOURS) >= 12, 1.0, 0.1)
    h = _learnt(1, noise, start=T0 + 10 * season.DAY)
    assert _ratio(h, 3.5, day=11) == 1.0  # 12 values an hour: fewer than MIN_VALUES
    h = _learnt(2, noise, start=T0 + 10 * season.DAY)
    night = _ratio(h, 3.5, day=12)
    assert 0.05 < night < 0.4
    # A plain average of the night's values: near the mean of |N(0, 0.1)|, 0.08.
    assert 0.05 < float(h[0][0, 3]) < 0.11


def test_an_unseen_hour_or_no_mean_leaves_the_scale_as_it_was() -> None:
    te = np.zeros((2, HOURS), np.float16)
    te[0, :] = 0.5  # row 1: nothing learnt
    ts, st0, step = np.full(2, T0 + 6 * season.DAY), np.full(2, T0), np.full(2, STEP)
    r = dayspread.ratio(te, np.asarray([0.0, 0.5]), ts, st0, st0, step)
    np.testing.assert_array_equal(r, [1.0, 1.0])


def test_the_ratio_is_bounded_both_ways() -> None:
    te = np.full((2, HOURS), 1e-3, np.float16)
    te[1, :] = 50.0
    ts, st0, step = np.full(2, T0 + 6 * season.DAY), np.full(2, T0), np.full(2, STEP)
    r = dayspread.ratio(te, np.asarray([1.0, 1.0]), ts, st0, st0, step)
    np.testing.assert_allclose(r, [1 / MAX_RATIO, MAX_RATIO])


def test_flagged_values_are_not_learnt_and_one_value_moves_a_bin_by_at_most_admit() -> None:
    te = np.full((1, HOURS), 0.5, np.float16)
    tq, since = np.full(1, 0.5), np.full(1, T0)
    t, step = np.full(1, T0 + 10 * season.DAY + 3600 * 3.2), np.full(1, STEP)
    no, yes = np.zeros(1, np.bool_), np.ones(1, np.bool_)
    dayspread.learn(te, tq, np.full(1, 1e6), t, since, step, no, yes)
    assert float(te[0, 3]) == 0.5
    dayspread.learn(te, tq, np.full(1, 1e6), t, since, step, yes, yes)
    rate = season.SEASON_RATE / (season.DAY / HOURS / STEP)
    assert float(te[0, 3]) <= 0.5 + rate * (ADMIT - 1) * 0.5 + 1e-3
    assert np.isfinite(te).all()


def test_a_huge_first_error_stays_within_float16() -> None:
    te = np.zeros((1, HOURS), np.float16)
    yes = np.ones(1, np.bool_)
    dayspread.learn(te, np.zeros(1), np.full(1, 1e12), np.full(1, T0), np.full(1, T0),
                    np.full(1, STEP), yes, yes)  # fmt: skip
    assert np.isfinite(te).all() and float(te.max()) > 0
