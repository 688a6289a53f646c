"""The profile's errors by hour of day (pipeline.engine.dayspread)."""

from __future__ import annotations

import numpy as np

from pipeline.engine import dayspread, season
from pipeline.engine.dayspread import ADMIT, HOURS, MAX_RATIO, MIN_VALUES

T0 = 1_700_000_000.0 - 1_700_000_000.0 % season.DAY  # a midnight
STEP = 300.0


def _learnt(days: int, noise_by_hour: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(te, tq)`` of one stream after ``days`` of 5-minute values whose profile error at
    hour h is |N(0, noise_by_hour[h])|."""
    rng = np.random.default_rng(seed)
    te = np.zeros((1, HOURS), np.float16)
    tq = np.zeros(1)
    yes, step, st0 = np.ones(1, np.bool_), np.full(1, STEP), np.full(1, T0)
    for t in T0 + STEP * np.arange(int(days * season.DAY / STEP)):
        hour = int((t % season.DAY) // 3600)
        err = np.abs(rng.normal(0, noise_by_hour[hour], 1))
        tq = dayspread.learn(te, tq, err, np.full(1, t), st0, step, yes, yes)
    return te, tq


def _ratio(te: np.ndarray, tq: np.ndarray, at_hour: float, day: int = 6) -> float:
    ts = np.full(1, T0 + day * season.DAY + at_hour * 3600)
    return float(dayspread.ratio(te, tq, ts, np.full(1, T0), np.full(1, STEP))[0])


def test_a_stream_noisy_by_day_and_quiet_by_night_gets_its_scale_by_hour() -> None:
    """Ten times the noise from 08:00 to 20:00: the night's scale is a fraction of the
    stream's recent one, the day's a multiple, and the two differ about tenfold."""
    noise = np.where((np.arange(HOURS) >= 8) & (np.arange(HOURS) < 20), 1.0, 0.1)
    te, tq = _learnt(6, noise)
    night, day = _ratio(te, tq, 3.5), _ratio(te, tq, 14.5)
    assert night < 0.4 < 1.2 < day
    assert 6.0 < day / night < 14.0


def test_a_stream_whose_noise_does_not_follow_the_day_keeps_a_ratio_near_one() -> None:
    te, tq = _learnt(6, np.ones(HOURS))
    ratios = [_ratio(te, tq, h + 0.5) for h in range(HOURS)]
    assert min(ratios) > 0.75 and max(ratios) < 1.4


def test_a_value_just_past_the_days_edge_takes_the_busier_hours_figure() -> None:
    """The day starts at 08:00: a value at 07:40 (nearer 08:00 than 07:00) is measured
    with the busy hour's figure, one at 07:10 with the quiet one's."""
    noise = np.where(np.arange(HOURS) >= 8, 1.0, 0.1)
    te, tq = _learnt(6, noise)
    assert _ratio(te, tq, 7 + 40 / 60) > 5 * _ratio(te, tq, 7 + 10 / 60)


def test_no_ratio_before_the_profile_settles_or_the_hours_have_enough_values() -> None:
    noise = np.where(np.arange(HOURS) >= 12, 1.0, 0.1)
    te, tq = _learnt(3, noise)
    assert _ratio(te, tq, 3.5, day=1) == 1.0  # younger than season.SETTLED_DAYS
    assert _ratio(te, tq, 3.5, day=3) != 1.0
    # An hourly stream sees each hour once a day: MIN_VALUES days before its hours count.
    ts = np.full(1, T0 + 3 * season.DAY + 3.5 * 3600)
    hourly = dayspread.ratio(te, tq, ts, np.full(1, T0), np.full(1, 3600.0))
    assert hourly[0] == 1.0
    late = np.full(1, T0 + (MIN_VALUES + 1) * season.DAY + 3.5 * 3600)
    assert dayspread.ratio(te, tq, late, np.full(1, T0), np.full(1, 3600.0))[0] != 1.0


def test_an_unseen_hour_or_no_mean_leaves_the_scale_as_it_was() -> None:
    te = np.zeros((2, HOURS), np.float16)
    te[0, :] = 0.5
    tq = np.asarray([0.5, 0.5])
    te[1, :] = 0.0  # nothing learnt
    ts = np.full(2, T0 + 6 * season.DAY)
    r = dayspread.ratio(te, np.asarray([0.0, 0.5]), ts, np.full(2, T0), np.full(2, STEP))
    np.testing.assert_array_equal(r, [1.0, 1.0])
    r = dayspread.ratio(te, tq, ts, np.full(2, T0), np.full(2, STEP))
    np.testing.assert_array_equal(r, [1.0, 1.0])


def test_the_ratio_is_bounded_both_ways() -> None:
    te = np.full((2, HOURS), 1e-3, np.float16)
    te[1, :] = 50.0
    ts = np.full(2, T0 + 6 * season.DAY)
    r = dayspread.ratio(te, np.asarray([1.0, 1.0]), ts, np.full(2, T0), np.full(2, STEP))
    np.testing.assert_allclose(r, [1 / MAX_RATIO, MAX_RATIO])


def test_flagged_values_are_not_learnt_and_one_value_moves_a_bin_by_at_most_admit() -> None:
    te = np.full((1, HOURS), 0.5, np.float16)
    tq = np.full(1, 0.5)
    t = np.full(1, T0 + 10 * season.DAY + 3600 * 3.2)
    args = (t, np.full(1, T0), np.full(1, STEP))
    no, yes = np.zeros(1, np.bool_), np.ones(1, np.bool_)
    dayspread.learn(te, tq, np.full(1, 1e6), *args, no, yes)
    assert float(te[0, 3]) == 0.5
    dayspread.learn(te, tq, np.full(1, 1e6), *args, yes, yes)
    rate = season.SEASON_RATE / (season.DAY / HOURS / STEP)
    assert float(te[0, 3]) <= 0.5 + rate * (ADMIT - 1) * 0.5 + 1e-3
    assert np.isfinite(te).all()


def test_a_huge_first_error_stays_within_float16() -> None:
    te = np.zeros((1, HOURS), np.float16)
    yes = np.ones(1, np.bool_)
    dayspread.learn(te, np.zeros(1), np.full(1, 1e12), np.full(1, T0), np.full(1, T0),
                    np.full(1, STEP), yes, yes)  # fmt: skip
    assert np.isfinite(te).all() and float(te.max()) > 0
