"""Each stream's daily profile (season) and how much of it the served forecast takes (blend)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pipeline.engine import blend, season
from pipeline.engine.inference import StepSession
from pipeline.engine.registry import Registry
from pipeline.engine.state import StateStore
from pipeline.engine.stepper import rebuild

if TYPE_CHECKING:
    from pipeline.engine.anomaly import AnomalyParams
    from pipeline.engine.registry import ModelMeta
    from training.evaluate import Replayed

F64 = npt.NDArray[np.float64]
T0 = 1_764_000_000.0  # 16:00 UTC


class Profile:
    """One stream's season state, stepped value by value as the stepper does."""

    def __init__(self, features: int = 1, rows: int = season.BINS) -> None:
        self.p = season.Profiles.empty(1, rows, features)
        self.sbin = np.zeros(1)
        self.slev = np.full((1, features), np.nan)
        self.st0 = np.zeros(1)
        self.prev = -np.inf

    def learn(self, t: float, x: F64) -> None:
        args = (self.p, self.sbin, self.slev, self.st0)
        season.learn(*args, np.atleast_2d(x), np.asarray([t]), np.asarray([self.prev]))
        self.step = t - self.prev
        self.prev = t

    def forecast(self, t: float, horizon: int = 3) -> F64:
        step = np.asarray([min(self.step, season.DAY / max(self.sbin[0], 1.0))])
        out: F64 = season.forecast(
            self.p, self.sbin, self.slev, self.st0, np.asarray([t]), step, horizon
        )[0]
        return out


def _business_hours(ts: F64) -> F64:
    hour = np.mod(ts, season.DAY) / 3600
    out: F64 = 20.0 + 10.0 * ((hour >= 9) & (hour < 18)) + 3.0 * np.sin(2 * np.pi * hour / 24)
    return out


def _errors(ts: F64, v: F64, horizon: int = 3) -> F64:
    """``[T, horizon]`` absolute errors of the profile's forecasts (NaN: none made)."""
    p = Profile()
    err = np.full((len(ts), horizon), np.nan)
    for i, t in enumerate(ts):
        p.learn(float(t), np.asarray([v[i]]))
        fc = p.forecast(float(t), horizon)[:, 0]
        ahead = min(horizon, len(ts) - 1 - i)
        err[i, :ahead] = np.abs(fc[:ahead] - v[i + 1 : i + 1 + ahead])
    return err


def test_a_repeating_day_is_forecast_exactly_once_one_day_has_been_seen() -> None:
    """Sharp business-hours edges and a daily swing, at 5-minute and hourly sampling: the
    profile has one bin per step, so after one day its forecasts at every horizon are exact
    (what seasonal naive does, without keeping the day's values)."""
    for step in (300.0, 3600.0):
        ts = T0 + step * np.arange(int(3 * season.DAY / step))
        err = _errors(ts, _business_hours(ts))
        day = int(season.DAY / step)
        assert np.isnan(err[: day - 1]).all()  # no forecast before a whole day
        # Exact to the bins' precision (float16: a part in 2**11 of the offsets of up to 13).
        assert np.nanmax(err[day + 1 :]) < 1e-2


def test_the_profile_lives_in_event_time_not_in_steps() -> None:
    """A six-hour gap does not shift the day (a profile indexed by step count would be
    out of phase after it): regular 5-minute sampling stays within 1% of the amplitude.
    Jittered sampling (±30%) leaves some bins unvisited on a given day, and costs: within
    10% of the amplitude (docs/quality.md)."""
    rng = np.random.default_rng(1)
    for jitter, bound in ((0.0, 0.01), (0.3, 0.1)):
        steps = 300.0 * rng.uniform(1 - jitter, 1 + jitter, 4 * 288)
        steps[600] = 6 * 3600.0
        ts = T0 + np.cumsum(steps)
        v = 50 + 10 * np.sin(2 * np.pi * np.mod(ts, season.DAY) / season.DAY)
        err = _errors(ts, v, horizon=1)
        late = ts > ts[0] + 2 * season.DAY
        assert np.nanmean(err[late, 0]) < bound * 10, jitter


def test_a_level_shift_moves_the_level_not_the_profile() -> None:
    """After a step change of the whole stream the fast level catches up within a few
    steps; the profile keeps the day's shape."""
    step = 300.0
    ts = T0 + step * np.arange(3 * 288)
    v = _business_hours(ts)
    v[2 * 288 :] += 40.0
    err = _errors(ts, v, horizon=1)
    assert np.nanmax(err[2 * 288 + 30 :, 0]) < 0.5  # 30 steps after a shift of 40


def test_the_blend_takes_the_forecaster_with_the_smaller_absolute_errors() -> None:
    rng = np.random.default_rng(0)

    def weight(model_noise: float, seasonal_noise: float, spikes: bool = False) -> float:
        m = np.zeros((1, blend.MOMENTS))
        for _ in range(1500):
            x = np.zeros((1, 1))
            em, es = rng.normal(0, model_noise), rng.normal(0, seasonal_noise)
            if spikes and rng.random() < 0.02:
                es += 20.0  # rare large misses of the seasonal forecast
            m = blend.learn(m, x, x - em, x - es, np.ones((1, 1)), np.ones(1, bool))
        return float(blend.weight_of(m)[0])

    assert weight(1.0, 0.2) == 1.0
    assert weight(0.2, 1.0) == 0.0
    assert weight(1.0, 1.0) == 0.5  # two independent equal errors: the mean halves them
    # Rare large misses (which would dominate squared errors) count for what they cost on
    # average: 0.2·0.8 + 0.02·20 = 0.56 mean absolute error against the model's 0.8.
    assert weight(1.0, 0.2, spikes=True) >= 0.75


def test_no_blend_before_enough_evidence_and_nothing_learnt_from_unknown_forecasts() -> None:
    m = np.zeros((2, blend.MOMENTS))
    x, ok, std = np.zeros((2, 1)), np.ones(2, bool), np.ones((2, 1))
    good, bad = np.full((2, 1), 0.1), np.full((2, 1), 5.0)
    for _ in range(int(blend.MIN_EVIDENCE) - 1):
        m = blend.learn(m, x, bad, good, std, ok)
    assert (blend.weight_of(m) == 0.0).all()
    unknown = np.full((2, 1), np.nan)  # e.g. a profile that has not seen a day yet
    assert (blend.learn(m, x, bad, unknown, std, ok) == m).all()
    m = blend.learn(m, x, bad, good, std, ok)
    assert (blend.weight_of(m) == 1.0).all()


def test_a_model_swap_keeps_the_profile_and_the_blend(tiny_registry: Path) -> None:
    """Both describe the stream, not the model: a stream served by its profile is served
    by it from the first step after a refresh."""
    meta = Registry(tiny_registry).meta("tiny")
    session = StepSession(meta)
    store = StateStore(
        layers=meta.layers, hidden=meta.hidden, features=1, horizon=meta.horizon, capacity=2
    )
    slots = store.slots_for(["a", "b"], now=0.0)
    st = store.gather(slots)
    rng = np.random.default_rng(0)
    st.sp[...] = rng.normal(size=st.sp.shape).astype(np.float16)
    st.su[...], st.sw[...] = 0.5, rng.normal(size=st.sw.shape)
    st.sbin[...] = 288
    st.bm[...] = [3.0, 2.0, 1.0, 0.5, 0.25, 100.0]
    before, blend_before = st.profiles().unpack(st.sbin), st.bm.copy()
    cov = np.zeros((2, 3, len(meta.covariates)), np.float32)
    rebuild(session, meta.normalisation, st, np.ones((2, 3, 1), np.float32), np.full(2, 3), cov)
    np.testing.assert_array_equal(st.profiles().unpack(st.sbin), before)
    assert (st.sbin == 288).all()
    np.testing.assert_array_equal(st.bm, blend_before)
    np.testing.assert_array_equal(st.mfc, st.fc[:, 0, :])


def test_a_store_without_a_profile_serves_the_model_alone(tiny_registry: Path) -> None:
    """``--season-bins 0``: the same forecasts as stepping without event times."""
    from pipeline.engine.covariates import covariates
    from pipeline.engine.stepper import advance

    meta = Registry(tiny_registry).meta("tiny")
    session = StepSession(meta)
    stores = [
        StateStore(
            layers=meta.layers, hidden=meta.hidden, features=1, horizon=meta.horizon,
            capacity=3, season_bins=bins,
        )
        for bins in (0, season.BINS)
    ]  # fmt: skip
    slots = [s.slots_for(["a", "b", "c"], now=0.0) for s in stores]
    rng = np.random.default_rng(0)
    for k in range(3 * 24):
        ts = np.full(3, T0 + 3600.0 * k)
        prev = ts - 3600.0 if k else np.full(3, -np.inf)
        x = _business_hours(ts)[:, None] + rng.normal(0, 0.1, (3, 1))
        cov = covariates(ts, prev, meta.covariates)
        fcs = []
        for store, sl, when in zip(stores, slots, ((ts, prev), (None, None)), strict=True):
            st = store.gather(sl)
            advance(session, meta.normalisation, meta.anomaly, st, x, cov, None, *when)
            store.scatter(sl, st)
            fcs.append(st.fc)
        np.testing.assert_array_equal(fcs[0], fcs[1])
    assert stores[0].sp.shape == (3, 0, 1) and not stores[0].sbin.any()


def test_an_anomaly_moves_the_level_but_is_not_learnt_into_the_profile() -> None:
    """After the profile's first day, a value the detector flags (``usual`` false) leaves
    its bin as it was; on the first day every value counts (it is all there is)."""
    p = Profile()
    step = 3600.0
    ts = T0 + step * np.arange(3 * 24)
    v = _business_hours(ts)
    for t, x in zip(ts[:-1], v[:-1], strict=True):
        p.learn(float(t), np.asarray([x]))
    t = float(ts[-1])
    bins, level = p.p.unpack(p.sbin), p.slev.copy()
    args = (p.p, p.sbin, p.slev, p.st0)
    season.learn(
        *args, np.asarray([[500.0]]), np.asarray([t]), np.asarray([p.prev]), np.zeros(1, bool)
    )
    day = int(p.sbin[0])
    # (The week, a week young, learns it: its unit may grow, the day's values stay.)
    np.testing.assert_array_equal(p.p.unpack(p.sbin)[0, :day], bins[0, :day])
    assert p.slev[0, 0] > level[0, 0] + 50
    first = Profile()
    first.learn(T0, np.asarray([20.0]))
    season.learn(
        first.p, first.sbin, first.slev, first.st0, np.asarray([[500.0]]),
        np.asarray([T0 + step]), np.asarray([T0]), np.zeros(1, bool),
    )  # fmt: skip
    assert first.p.sp.any()


def test_where_the_profile_serves_so_does_its_scale() -> None:
    """A stream whose blend serves the profile alone (w = 1) gets the profile's forecast
    and, as its scale, the profile's recent mean absolute error in the stream's units (a
    Laplace scale), not the model's: the interval and the forecast surprise then describe
    the forecast that is served."""
    from pipeline.engine.covariates import covariates
    from pipeline.engine.interval import Band, IntervalParams
    from pipeline.engine.normalise import std_of
    from pipeline.engine.stepper import advance

    meta = _default_meta()
    assert meta.distribution == "laplace"
    store = StateStore(layers=meta.layers, hidden=meta.hidden, features=1, horizon=meta.horizon)
    slot = store.slots_for(["a"], now=0.0)
    st = store.gather(slot)
    st.n[:], st.mean[:], st.var[:] = 500.0, 50.0, 4.0
    st.sbin[:], st.st0[:], st.slev[:] = 24.0, T0 - 2 * season.DAY, 50.0
    st.sp[:, :24, 0], st.su[:] = np.arange(24), 1.0  # S(τ) = the hour
    st.bm[:] = [3.0, 2.0, 1.0, 0.5, 0.25, 100.0]  # the pure profile has done best
    assert blend.weight_of(st.bm)[0] == 1.0
    ts, prev = np.asarray([T0]), np.asarray([T0 - 3600.0])
    x = np.asarray([[50.0 + 16.0]])  # 16:00, as the profile expects
    cov = covariates(ts, prev, meta.covariates)
    band = Band.of("laplace", IntervalParams())
    advance(
        session := StepSession(meta), meta.normalisation, meta.anomaly, st, x, cov, band, ts, prev
    )
    del session
    hours = 16.0 + np.arange(1, meta.horizon + 1)
    np.testing.assert_allclose(st.fc[0, :, 0], st.slev[0, 0] + hours, rtol=1e-6)
    std = std_of(meta.normalisation, st.mean, st.var)
    np.testing.assert_allclose(st.fs[0, :, 0], 0.25 * std[0, 0], rtol=1e-9)


def test_deseasoned_gives_the_time_of_days_offset_and_the_variance_the_day_explains() -> None:
    """Three days of a daily sine of amplitude 10 around 50, 5-minute steps: the offset at
    each time of day is the sine's value there (the mean of the profile taken out), the
    variance the profile accounts for is the sine's (50); nothing before two days."""
    p = Profile()
    n = 3 * 288
    ts = T0 + 300.0 * np.arange(n + 288)
    v = 50 + 10 * np.sin(2 * np.pi * np.arange(n + 288) / 288)
    for i in range(n):
        if i == 2 * 288 - 1:
            off, var = season.deseasoned(p.p, p.sbin, p.st0, ts[i : i + 1])
            assert np.isnan(off).all() and np.isnan(var).all()
        p.learn(float(ts[i]), np.asarray([v[i]]))
    for i in range(n, n + 288, 36):
        off, var = season.deseasoned(p.p, p.sbin, p.st0, ts[i : i + 1])
        assert abs(off[0, 0] - (v[i] - 50)) < 0.2
        assert abs(var[0, 0] - 50.0) < 1.0


def test_season_level_finds_a_half_height_business_day_without_false_alarms() -> None:
    """Business hours at 80 against 20 at night (noise 2, 5-minute steps) for nine days;
    on day 8 the busy hours reach only 50, a level the stream shows every day. With
    ``season_level`` those hours are flagged and nothing else after the profile's second
    day."""
    import dataclasses

    on = dataclasses.replace(_default_meta().anomaly, season_level=True)
    flags, _, day, ts = _nine_days(3, _business(80.0), _business(50.0), on, first=7 * 288)
    assert not flags[2 * 288 : 7 * 288].any() and not flags[8 * 288 + 12 :].any()
    assert flags[day][_busy(ts[day])].any()


def test_a_profile_that_predicts_perfectly_lends_no_zero_scale() -> None:
    """A noiseless square wave: once the profile has learnt it, its recent error is 0 and
    the blend would serve a scale of 0, so that the next error is 0/0 (a warning, here an
    error) or infinite. The scale stays at the stream's floor instead, and the interval
    keeps a width."""
    from pipeline.engine.csvdata import Series
    from training.evaluate import replay

    meta = _default_meta()
    ts = T0 + 300.0 * np.arange(4 * 288)
    v = _business(80.0)(ts)
    (r,) = replay(meta, [Series("s", ts, v[:, None], ("value",))])
    later = slice(3 * 288, None)
    assert np.isfinite(r.error[later]).all() and np.isfinite(r.score[later]).all()
    assert (r.hi[later, 0, 0] > r.lo[later, 0, 0]).all()


def test_the_default_finds_a_half_height_business_day_once() -> None:
    """The same half-height day (a calendar day) with the default parameters
    (``season_level`` off): it alarms once, and nothing else alarms after the profile's
    second day; the day is not learnt into the profile (the next day's forecast still
    expects 80 at noon). The morning edge that misses is the forecast channel's alarm,
    and the mean deviation that follows is the same incident, not a second alert."""
    anom = _default_meta().anomaly
    assert anom.sustained_rate > 0 and not anom.season_level
    flags, r, day, ts = _nine_days(3, _business(80.0), _business(50.0), anom)
    assert not flags[2 * 288 : day.start].any() and not flags[day.stop + 12 :].any()
    assert flags[day].sum() == 1
    noon = day.stop + int(np.flatnonzero(_busy(ts[day.stop :]))[0]) + 36
    assert abs(r.forecast[noon - 1, 0, 0] - 80.0) < 8.0


def test_a_day_of_half_the_usual_swing_is_a_sustained_deviation() -> None:
    """A smooth daily swing (50 ± 30, noise 2) whose eighth calendar day swings half as
    far: it leaves the usual curve slowly, so no step misses the forecast by much; the
    mean deviation from the hour's usual level grows all morning. It alarms, named
    ``sustained``, once for the morning's shortfall and at most once more for the
    evening's (the other side of the mean), and nowhere else after the profile's second
    day."""
    from pipeline.engine.stepper import REASONS

    def swing(amplitude: float) -> Callable[[F64], F64]:
        def values(ts: F64) -> F64:
            out: F64 = 50.0 + amplitude * np.sin(2 * np.pi * np.mod(ts, season.DAY) / season.DAY)
            return out

        return values

    flags, r, day, _ = _nine_days(4, swing(30.0), swing(15.0), _default_meta().anomaly)
    assert not flags[2 * 288 : day.start].any() and not flags[day.stop + 12 :].any()
    at = np.flatnonzero(flags[day]) + day.start
    assert 1 <= len(at) <= 2 and all(REASONS[r.reason[i]] == "sustained" for i in at)


def _default_meta() -> ModelMeta:
    return Registry(Path(__file__).resolve().parents[3] / "exported_models").meta("default")


def _busy(ts: F64) -> npt.NDArray[np.bool_]:
    hour = np.mod(ts, season.DAY) / 3600
    out: npt.NDArray[np.bool_] = (hour >= 9) & (hour < 17)
    return out


def _business(high: float) -> Callable[[F64], F64]:
    """Business hours at ``high`` against 20 at night."""

    def values(ts: F64) -> F64:
        out: F64 = np.where(_busy(ts), high, 20.0)
        return out

    return values


def _nine_days(
    seed: int,
    usual: Callable[[F64], F64],
    changed: Callable[[F64], F64],
    anomaly: AnomalyParams,
    first: int | None = None,
) -> tuple[npt.NDArray[np.bool_], Replayed, slice, F64]:
    """Nine days every 5 minutes of ``usual`` values plus noise 2, one day of them (from
    ``first``; by default the eighth calendar day) ``changed``, replayed through the
    default model: ``(flags, replayed, that day, ts)``."""
    from pipeline.engine.csvdata import Series
    from training.evaluate import replay

    rng = np.random.default_rng(seed)
    n = 9 * 288
    ts = T0 + 300.0 * np.arange(n)
    v = usual(ts) + rng.normal(0, 2.0, n)
    if first is None:
        first = 7 * 288 + int(np.flatnonzero(np.mod(ts[7 * 288 :], season.DAY) == 0)[0])
    day = slice(first, first + 288)
    v[day] = changed(ts[day]) + rng.normal(0, 2.0, 288)
    (r,) = replay(_default_meta(), [Series("s", ts, v[:, None], ("value",))], anomaly=anomaly)
    return np.nan_to_num(r.score) >= anomaly.threshold, r, day, ts


def _weekly_profile_errors(ts: F64, v: F64) -> tuple[Profile, F64, npt.NDArray[np.bool_]]:
    """The profile's one-step absolute errors over ``v`` and whether the week was in use."""
    p = Profile()
    err = np.full(len(ts), np.nan)
    used = np.zeros(len(ts), bool)
    fc = np.nan
    for i, t in enumerate(ts):
        err[i] = abs(v[i] - fc)
        p.learn(float(t), np.asarray([v[i]]))
        fc = float(p.forecast(float(t), 1)[0, 0])
        used[i] = season.week_in_use(p.p, p.sbin, p.st0, np.asarray([t]))[0]
    return p, err, used


def test_a_weekly_pattern_is_learnt_where_the_day_leaves_room_and_only_if_it_helps() -> None:
    """Hourly business hours, half as high at weekends: the daily profile alone averages
    weekdays and weekends; the week is in use from the fourth week and its forecasts are
    within 1% of the range on average (the day alone: errors five times larger). A
    stream whose days are all alike keeps the daily profile alone (the week would be its
    noise), and a 5-minute stream has no room for a week."""
    step = 3600.0
    ts = T0 + step * np.arange(8 * 7 * 24)
    weekday = np.floor(np.mod(ts / season.DAY + 3, 7))  # Monday = 0
    v = _business_hours(ts) * np.where(weekday >= 5, 0.5, 1.0)
    p, err, used = _weekly_profile_errors(ts, v)
    assert int(p.sbin[0]) == 24
    late = slice(3 * 7 * 24, None)
    assert used[late].all()
    assert np.nanmean(err[late]) < 0.01 * np.ptp(v)
    # The same without the week (the rows it uses are missing from a narrower profile).
    day_only = Profile(rows=24 + season.WEEK_BINS + 1)
    fc, worse = np.nan, np.full(len(ts), np.nan)
    for i, t in enumerate(ts):
        worse[i] = abs(v[i] - fc)
        day_only.learn(float(t), np.asarray([v[i]]))
        fc = float(day_only.forecast(float(t), 1)[0, 0])
    assert np.nanmean(worse[late]) > 5 * np.nanmean(err[late])
    rng = np.random.default_rng(3)
    _, _, used_alike = _weekly_profile_errors(ts, _business_hours(ts) + rng.normal(0, 1, len(ts)))
    assert used_alike[late].mean() < 0.2
    fine = T0 + 300.0 * np.arange(3 * 288)
    p5, _, used5 = _weekly_profile_errors(fine, _business_hours(fine))
    assert int(p5.sbin[0]) == season.BINS and not used5.any()


def test_the_sums_learn_keeps_are_the_profiles_own_and_a_restore_rebuilds_them() -> None:
    """``deseasoned`` reads each stream's profile sums instead of its whole profile: kept
    by ``learn`` through days and weeks (5-minute streams, whose day fills the profile,
    and hourly ones with a week; values flagged and not; one feature in units, one in
    tens of millions, beyond float16's range, so that its unit grows), they equal the
    sums computed afresh, ``deseasoned`` gives what it gives with those, and a stream
    restored from its snapshot gets the same profile and sums back."""
    rng = np.random.default_rng(11)
    store = StateStore(layers=1, hidden=2, features=2, horizon=1, capacity=4)
    slots = store.slots_for(["fine", "fine-2", "hourly", "hourly-2"], now=0.0)
    st = store.gather(slots)
    steps = np.asarray([300.0, 300.0, 3600.0, 3600.0])
    prev = np.full(4, -np.inf)
    for k in range(700):  # the 5-minute streams settle after 576
        ts = T0 + steps * k + (rng.uniform(0, 30, 4) if k > 1 else 0.0)  # bins from step 1
        weekend = np.floor(np.mod(ts / season.DAY + 3, 7)) >= 5
        x = (_business_hours(ts) * np.where(weekend, 0.5, 1.0))[:, None] * [1.0, 3e7]
        x = x + rng.normal(0, 1, (4, 2)) * [0.5, 3e6]
        usual = rng.random(4) > 0.1
        season.learn(st.profiles(), st.sbin, st.slev, st.st0, x, ts, prev, usual)
        prev = ts
    assert (st.sbin == [288, 288, 24, 24]).all()
    assert (season.week_in_use(st.profiles(), st.sbin, st.st0, prev) == [0, 0, 1, 1]).all()
    assert (st.su[:, 1] >= 2**16).all() and (st.su[:, 0] < 1).all()
    afresh = season.row_stats(st.profiles(), st.sbin)
    np.testing.assert_allclose(st.ss, afresh, rtol=1e-9, atol=1e-6)
    kept = season.deseasoned(st.profiles(), st.sbin, st.st0, prev)
    rebuilt = season.Profiles(st.sp, st.su, st.sw, afresh)
    assert np.isfinite(kept[1]).all()
    for a, b in zip(kept, season.deseasoned(rebuilt, st.sbin, st.st0, prev), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    store.scatter(slots, st)
    other = StateStore(layers=1, hidden=2, features=2, horizon=1, capacity=1)
    other.load("hourly", store.snapshot(int(slots[2]), "m", "v"), 0, now=0.0)
    np.testing.assert_allclose(other.ss[0], st.ss[2], rtol=1e-9, atol=1e-6)
    back = other.profiles(np.asarray([0])).unpack(other.sbin[:1])[0]
    np.testing.assert_array_equal(back, st.profiles().unpack(st.sbin)[2])


def test_the_profile_in_16_bits_forecasts_a_stream_in_any_unit_alike() -> None:
    """The bins are kept in float16 in a power-of-two unit per stream: the same stream
    measured in units, in 2**30 units (a power of two: every step exact) and in 10**9
    units (beyond float16's range) is forecast alike, through days and weeks, and its
    unit grew with it; a profile packed for the store and unpacked again (as a changelog
    frame carries it) keeps every bin to float16's precision and the week's rows whole."""
    step = 3600.0
    ts = T0 + step * np.arange(3 * 7 * 24)
    rng = np.random.default_rng(5)
    weekend = np.floor(np.mod(ts / season.DAY + 3, 7)) >= 5
    v = _business_hours(ts) * np.where(weekend, 0.5, 1.0) + rng.normal(0, 0.3, len(ts))
    out = {}
    for scale in (1.0, 2.0**30, 1e9):
        p = Profile()
        fc = np.full(len(ts), np.nan)
        for i, t in enumerate(ts):
            p.learn(float(t), np.asarray([v[i] * scale]))
            fc[i] = p.forecast(float(t), 1)[0, 0] / scale
        out[scale] = (fc, p)
    np.testing.assert_array_equal(out[2.0**30][0], out[1.0][0])
    np.testing.assert_allclose(out[1e9][0], out[1.0][0], rtol=1e-3, atol=1e-3 * np.ptp(v))
    assert out[1e9][1].p.su[0, 0] > 1e9 / 2**season.UNIT_LIMIT
    p = out[1e9][1]
    assert season.week_in_use(p.p, p.sbin, p.st0, ts[-1:])[0]
    flat = p.p.unpack(p.sbin)
    again = season.Profiles.pack(flat, p.sbin)
    np.testing.assert_array_equal(again.unpack(p.sbin), flat)
    np.testing.assert_array_equal(again.sw, p.p.sw)
    np.testing.assert_allclose(again.ss, p.p.ss, rtol=1e-9, atol=1e-6 * 1e9)


def _flagged(p: Profile, t: float, x: float) -> None:
    """One value the detector flagged (``usual`` false), learnt as the stepper does."""
    season.learn(
        p.p, p.sbin, p.slev, p.st0, np.asarray([[x]]), np.asarray([t]), np.asarray([p.prev]),
        np.zeros(1, bool),
    )  # fmt: skip
    p.prev = t


def _day_then(first: F64, step: float = 300.0) -> tuple[Profile, F64]:
    """A profile that learnt ``first`` as its first day (5-minute steps) and one usual
    second day like it, but flat where ``first`` held a spike: its times of day."""
    p = Profile()
    ts = T0 + step * np.arange(len(first))
    for t, x in zip(ts, first, strict=True):
        p.learn(float(t), np.asarray([x]))
    return p, ts


def test_a_spike_the_first_day_took_whole_is_repaired_by_the_next_flagged_value() -> None:
    """A flat stream's first day with one dropout (9 among 33s, as grok_asg_anomaly's
    18:40): its bin holds -24. The next day's value there is flagged (its bin says 9),
    but lies with the bins either side, which agree with each other: the value replaces
    the bin. Without the repair the bin would hold -24 for ever, and flag every day."""
    first = np.full(288, 33.4)
    first[100] = 9.0
    p, ts = _day_then(first)
    day = int(p.sbin[0])
    assert p.p.unpack(p.sbin)[0, season._bin(ts[100:101], p.sbin)[0], 0] < -20
    at = season._bin(ts[100:101] + season.DAY, p.sbin)[0]
    for t in ts[:100] + season.DAY:
        p.learn(float(t), np.asarray([33.4]))
    _flagged(p, float(ts[100] + season.DAY), 33.4)
    bins = p.p.unpack(p.sbin)[0, :day, 0]
    assert abs(bins[at]) < 0.05
    assert np.abs(bins).max() < 0.05


def test_a_flagged_value_at_a_steps_edge_or_a_whole_day_away_is_not_learnt() -> None:
    """The repair is for a bin alone: at the edge of a daily step one neighbour is on
    each side, so a flagged value there (a step that came late) is not learnt; nor is a
    flagged value that lies away from its neighbours too (a holiday, an outage)."""
    first = np.where(np.arange(288) < 144, 10.0, 30.0)
    p, ts = _day_then(first)
    day = int(p.sbin[0])
    for t, x in zip(ts[:144] + season.DAY, first[:144], strict=True):
        p.learn(float(t), np.asarray([x]))
    before = p.p.unpack(p.sbin)[0, :day, 0].copy()
    _flagged(p, float(ts[144] + season.DAY), 10.0)  # the step late: the value as before it
    np.testing.assert_array_equal(p.p.unpack(p.sbin)[0, :day, 0], before)
    spiky = np.full(288, 33.4)
    spiky[100] = 9.0
    q, ts = _day_then(spiky)
    for t in ts[:100] + season.DAY:
        q.learn(float(t), np.asarray([33.4]))
    before = q.p.unpack(q.sbin)[0, :day, 0].copy()
    _flagged(q, float(ts[100] + season.DAY), 60.0)  # far from its neighbours as well
    np.testing.assert_array_equal(q.p.unpack(q.sbin)[0, :day, 0], before)


def test_the_repair_is_per_feature() -> None:
    """A two-feature stream whose first feature's bin learnt a dropout on the first day,
    and whose second feature is the incident that flags the next day's value there: the
    first feature's bin is repaired, the second's incident is not learnt."""
    p = Profile(features=2)
    ts = T0 + 300.0 * np.arange(288)
    for i, t in enumerate(ts):
        p.learn(float(t), np.asarray([9.0 if i == 100 else 33.4, 50.0]))
    day = int(p.sbin[0])
    for t in ts[:100] + season.DAY:
        p.learn(float(t), np.asarray([33.4, 50.0]))
    before = p.p.unpack(p.sbin)[0, :day].copy()
    season.learn(
        p.p, p.sbin, p.slev, p.st0, np.asarray([[33.4, 500.0]]),
        np.asarray([ts[100] + season.DAY]), np.asarray([p.prev]), np.zeros(1, bool),
    )  # fmt: skip
    after = p.p.unpack(p.sbin)[0, :day]
    assert np.abs(after[:, 0]).max() < 0.05
    np.testing.assert_array_equal(after[:, 1], before[:, 1])
