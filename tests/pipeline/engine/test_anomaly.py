"""The anomaly scorer: bounded, monotone in surprise, adaptive per stream."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.engine.anomaly import (
    DEPARTURE_BLOCKS,
    HABIT_SLOTS,
    SCORE_HALF_NATS,
    AnomalyParams,
    calibrate_channels,
    calibrate_tail,
    day_step,
    departure_step,
    excess_step,
    gaussian_tail,
    habit_step,
    log_tail,
    novelty,
    range_surprise,
    score_of,
    score_step,
    stuck_onset,
    stuck_surprise,
    sustained_onset,
    sustained_step,
)

F64 = npt.NDArray[np.float64]


def test_gaussian_tail_matches_erfc() -> None:
    z = np.linspace(-6, 9, 61)
    ref = np.array([0.5 * math.erfc(v / math.sqrt(2)) for v in z])
    np.testing.assert_allclose(gaussian_tail(z), ref, rtol=3e-7, atol=0)


def test_log_tail_stays_exact_where_the_tail_underflows() -> None:
    z = np.array([10.0, 20.0, 30.0])
    ref = np.array([math.log(0.5 * math.erfc(v / math.sqrt(2))) for v in z])
    np.testing.assert_allclose(log_tail(z), ref, rtol=1e-9)
    # Beyond float range the asymptote -z^2/2 - ln(z sqrt(2 pi)) takes over.
    big = np.array([50.0, 400.0])
    asym = -(big**2) / 2 - np.log(big * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(log_tail(big), asym, rtol=1e-6)
    assert np.all(np.isfinite(log_tail(big)))


def test_score_is_bounded_monotone_and_half_at_a_tail_of_1e_5() -> None:
    s = np.array([0.0, 1.0, math.log(1e5), 36.0, 3000.0, 1e9])
    score = score_of(s)
    assert np.all(np.diff(score) > 0)
    assert score[0] == 0.0 and score[-1] < 1.0
    assert abs(score[2] - 0.5) < 1e-12


def _run(errors: np.ndarray, p: AnomalyParams) -> np.ndarray:
    n = np.zeros(1)
    short = np.zeros(1)
    mu = np.full(1, p.prior_mean)
    var = np.full(1, p.prior_std**2)
    out = []
    for e in errors:
        s, n, short, mu, var = score_step(p, np.array([e]), n, short, mu, var)
        out.append(score_of(s)[0])
    return np.array(out)


def test_scores_stay_in_unit_interval_and_a_spike_scores_high() -> None:
    rng = np.random.default_rng(0)
    p = AnomalyParams(prior_mean=0.8, prior_std=0.6)
    errors = np.abs(rng.normal(0, 1, 600))
    errors[500] = 12.0
    scores = _run(errors, p)
    assert np.all((scores >= 0) & (scores < 1))
    assert scores[500] > 0.75
    assert np.quantile(scores[100:500], 0.99) < 0.5


def test_threshold_adapts_to_a_noisy_stream() -> None:
    rng = np.random.default_rng(1)
    p = AnomalyParams(prior_mean=0.8, prior_std=0.6)
    quiet = _run(np.abs(rng.normal(0, 1, 1000)), p)
    noisy = np.abs(rng.normal(0, 1, 1000)) * np.where(rng.random(1000) < 0.1, 6, 1)
    noisy_scores = _run(noisy, p)
    # The same surprise of 6 alarms on the quiet stream but is routine on the noisy one.
    late_quiet = _run(np.r_[np.abs(rng.normal(0, 1, 1000)), 6.0], p)[-1]
    late_noisy = _run(np.r_[noisy, 6.0], p)[-1]
    assert late_quiet > late_noisy
    assert np.mean(quiet > 0.5) < 0.01 and np.mean(noisy_scores > 0.5) < 0.1


def test_a_frozen_continuous_sensor_is_flagged_but_a_quantised_one_is_not() -> None:
    p = AnomalyParams()
    rng = np.random.default_rng(2)
    continuous = np.r_[rng.normal(0, 1, 300), np.full(6, 0.5)]
    quantised = np.r_[np.round(rng.normal(0, 0.5, 300)), np.zeros(6)]  # repeats ~40% of the time
    tail_1e5 = math.log(1e5)
    for series, expect_flag in ((continuous, True), (quantised, False)):
        n = np.zeros(1)
        run = np.zeros(1)
        rep = np.full(1, 0.1)
        last = np.nan
        surprises = []
        for x in series:
            s, run, rep = stuck_surprise(p, np.array([x == last]), n, run, rep)
            n = n + 1
            last = x
            surprises.append(s[0])
        assert bool(max(surprises[-3:]) > tail_1e5) is expect_flag
        assert max(surprises[20:300]) < tail_1e5 or not expect_flag


def _range_run(
    series: np.ndarray,
    p: AnomalyParams,
    std: float = 1.0,
    forecast: np.ndarray | None = None,
    reach: float = np.nan,
) -> np.ndarray:
    """The range surprise of each value; ``forecast`` (one per value) with an interval of
    ``reach`` either side of it, or none."""
    lo = np.full((1, 1), np.nan)
    hi = np.full((1, 1), np.nan)
    rec = np.zeros(1)
    fc = np.full(len(series), np.nan) if forecast is None else forecast
    out = []
    for i, x in enumerate(series):
        f = np.full((1, 1), fc[i])
        s, lo, hi, rec = range_surprise(
            p,
            np.array([[x]]),
            np.array([float(i)]),
            lo,
            hi,
            np.zeros((1, 1)),
            rec,
            np.full((1, 1), std),
            (f, f - reach, f + reach),
        )
        out.append(s[0])
    return np.array(out)


def test_a_new_record_is_surprising_but_a_routine_spike_is_not() -> None:
    """Heavy tails: spikes to 10 happen all the time; only going beyond them is news."""
    p = AnomalyParams(range_history=50)
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, 2000)
    base[rng.random(2000) < 0.02] = 10.0
    base[1990] = 13.0
    s = _range_run(base, p)
    assert s[1990] > 36.0  # 3 beyond a width of ~13.5: a tail far below 1e-15
    routine = s[200:1990][base[200:1990] == 10.0]
    assert len(routine) > 10 and np.all(routine == 0.0)
    assert np.all(s[:50] == 0.0)  # not before range_history values
    # A record by less than range_min_std standard deviations is not news either.
    nudged = base.copy()
    nudged[1990] = 10.0 + 0.4
    assert _range_run(nudged, p)[1990] == 0.0


def test_a_record_the_forecast_saw_coming_is_not_news() -> None:
    """A stream that drifts slowly down to the edge of its range and crosses it by its own
    noise: the forecast follows it there, so the record is within its interval's reach;
    a value far outside both is news (and so is the record without an interval)."""
    p = AnomalyParams(range_history=50)
    rng = np.random.default_rng(5)
    noise = rng.uniform(-1.5, 1.5, 600)
    noise[100] = -2.5  # the edge of what the stream shows while level
    level = -0.8 * np.clip((np.arange(600) - 400) / 190, 0.0, 1.0)
    series = level + noise
    series[590] = level[590] - 2.4  # 0.7 below the old range, where it was heading
    # The forecast: the recent level (a good forecaster knows where the stream is), with
    # the interval a 90% one of the noise.
    forecast = np.concatenate([[0.0], level[:-1]])
    seen = _range_run(series, p, forecast=forecast, reach=1.645)
    blind = _range_run(series, p)
    assert seen[590] == 0.0 and blind[590] > 0.0
    assert np.all(seen[:580] <= blind[:580])  # the interval only ever takes margin away
    spike = series.copy()
    spike[590] = level[590] - 10.0
    assert _range_run(spike, p, forecast=forecast, reach=1.645)[590] > 36.0
    # range_interval 0 (models calibrated before it): the range alone, interval or not.
    off = dataclasses.replace(p, range_interval=0.0)
    assert np.array_equal(_range_run(series, off, forecast=forecast, reach=1.645), blind)


def test_records_are_not_news_on_a_trending_stream() -> None:
    p = AnomalyParams(range_history=50)
    rng = np.random.default_rng(4)
    trend = np.linspace(0, 400, 3000) + rng.normal(0, 1, 3000)
    trend[2500] += 8.0
    s = _range_run(trend, p)
    assert np.all(s[100:] == 0.0)
    flat = rng.normal(0, 1, 3000)
    flat[2500] += 8.0
    assert _range_run(flat, p)[2500] > 36.0


def test_the_range_relaxes_so_one_old_outlier_does_not_blind_it_for_ever() -> None:
    p = AnomalyParams(range_history=10, range_decay=3e-4)
    rng = np.random.default_rng(6)
    series = np.r_[rng.normal(0, 1, 500), [100.0], rng.normal(0, 1, 20000), [20.0]]
    s = _range_run(series, p)
    assert s[-1] > 36.0
    frozen = _range_run(series, AnomalyParams(range_history=10, range_decay=0.0))
    assert frozen[-1] == 0.0


def _calibrated(surprises: np.ndarray, p: AnomalyParams) -> np.ndarray:
    rate = np.zeros(1)
    out = []
    for i, v in enumerate(surprises):
        s, rate = calibrate_tail(p, np.array([v]), np.array([float(i)]), rate)
        out.append(s[0])
    return np.array(out)


def test_tail_calibration_shrinks_a_spiky_stream_and_leaves_a_gaussian_one_alone() -> None:
    p = AnomalyParams()
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1, 20000)
    gaussian = -(math.log(2.0) + log_tail(np.abs(z)))
    spiky = gaussian.copy()
    spiky[rng.random(20000) < 0.01] = 40.0  # an 8.6-sigma value once in a hundred steps
    g = _calibrated(np.r_[gaussian, 40.0], p)
    k = _calibrated(np.r_[spiky, 40.0], p)
    # A Gaussian stream keeps (nearly) its surprise: its rare 9.2-nat exceedances move the
    # rate estimate a little.
    assert g[-1] > 0.9 * 40.0
    assert k[-1] < 40.0 * 0.6  # routine on the spiky one: -ln(0.01) / 9.2 = 0.5
    assert np.all(g <= np.r_[gaussian, 40.0] + 1e-12)


def _channels(p: AnomalyParams, forecast: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``[T, 2]``: the forecast and level surprises after calibration, step by step."""
    rate, out = np.zeros(1), []
    for i, (f, v) in enumerate(zip(forecast, level, strict=True)):
        fc, lc, rate = calibrate_channels(
            p, np.array([f]), np.array([v]), np.array([float(i)]), rate
        )
        out.append((fc[0], lc[0]))
    return np.array(out)


def test_a_fitted_forecast_tail_is_not_discounted_again_but_a_gaussian_one_is() -> None:
    """On a stream whose level throws a 40-nat value once in a hundred steps, the level
    channel is discounted (-ln 0.01 / 9.2: about half); the forecast channel's surprise
    from a tail fitted to the stream's errors (excess_rate > 0) is kept as it is, and is
    discounted with the level's only where it is a Gaussian tail (excess_rate 0) or the
    model predates the rule (tail_forecast)."""
    rng = np.random.default_rng(5)
    level = np.where(rng.random(20000) < 0.01, 40.0, rng.exponential(1.0, 20000))
    forecast = rng.exponential(1.0, 20000)
    forecast[-1], level[-1] = 30.0, 40.0
    fitted = _channels(AnomalyParams(), forecast, level)
    assert fitted[-1, 0] == 30.0 and fitted[-1, 1] < 0.6 * 40.0
    np.testing.assert_array_equal(fitted[:, 0], forecast)
    # The level channel alone: the same as the tail calibration of the level alone.
    np.testing.assert_allclose(fitted[:, 1], _calibrated(level, AnomalyParams()), rtol=1e-12)
    for p in (AnomalyParams(excess_rate=0.0), AnomalyParams(tail_forecast=True)):
        both = _channels(p, forecast, level)
        assert both[-1, 0] < 0.6 * 30.0 and both[-1, 1] < 0.6 * 40.0
        top = _calibrated(np.maximum(forecast, level), p)
        np.testing.assert_allclose(np.maximum(both[:, 0], both[:, 1]), top, rtol=1e-12)


def test_novelty_keeps_the_first_and_rising_surprises_and_damps_the_rest() -> None:
    p = AnomalyParams(novelty_decay=0.9, novelty_damp=0.5)
    raw = np.array([0.0, 40.0, 40.0, 41.0, 30.0, 0.0] + [0.0] * 40 + [40.0])
    peak = np.zeros(1)
    out = []
    for s in raw:
        d, peak = novelty(p, np.array([s]), peak)
        out.append(d[0])
    assert out[1] == 40.0 and out[3] == 41.0  # first, and rising
    assert out[2] == 20.0 and out[4] == 15.0  # repeated, falling
    assert out[-1] == 40.0  # the peak has decayed: a new incident alarms again


def _burst_alarms(p: AnomalyParams, raw: list[float]) -> list[int]:
    """Steps whose score reaches 0.6 through the novelty rule, the quiet count kept as the
    stepper keeps it (0 at an alarm, one more at every other step)."""
    peak, quiet, alarms = np.zeros(1), np.full(1, 1e9), []
    for t, s in enumerate(raw):
        d, peak = novelty(p, np.array([s]), peak, quiet)
        alarmed = score_of(d)[0] >= 0.6
        quiet = np.zeros(1) if alarmed else quiet + 1.0
        if alarmed:
            alarms.append(t)
    return alarms


def test_a_burst_is_one_incident_but_a_far_larger_surprise_breaks_through() -> None:
    """A spiky stream's burst: each spike beats the peak the last one left, decayed."""
    alarm = 1.5 * math.log(1e5)  # the surprise that scores 0.6
    burst = [0.0] * 5 + [1.2 * alarm] + [0.0] * 12 + [1.3 * alarm] + [0.0] * 15
    burst += [1.4 * alarm] + [0.0] * 60
    # Without the refractory rule the burst alerts three times.
    assert _burst_alarms(AnomalyParams(refractory=0.0), burst) == [5, 18, 34]
    for relative in (False, True):
        p = AnomalyParams(refractory=50.0, refractory_relative=relative)
        assert _burst_alarms(p, burst) == [5]
        # After 50 quiet steps any surprise at the alarm level alerts.
        assert _burst_alarms(p, burst[:6] + [0.0] * 50 + [1.1 * alarm]) == [5, 56]
    # Twice the alarm level alerts within an incident (the rule before 2026-12-06); twice
    # the incident's decayed peak (1.24 times the alarm level at step 20) where that is more.
    old = AnomalyParams(refractory=50.0, refractory_relative=False)
    assert _burst_alarms(old, [*burst[:20], 2.1 * alarm]) == [5, 20]
    assert _burst_alarms(AnomalyParams(), [*burst[:20], 2.1 * alarm]) == [5]
    assert _burst_alarms(AnomalyParams(), [*burst[:20], 2.6 * alarm]) == [5, 20]
    # Models calibrated before the rules keep scoring as they were calibrated.
    assert AnomalyParams.from_json({}).refractory == 0.0 and AnomalyParams().refractory > 0
    assert not AnomalyParams.from_json({}).refractory_relative


def test_an_incident_of_huge_surprises_alerts_again_only_as_it_escalates() -> None:
    """A drift past the stream's range: a record every few steps, each hundreds of nats
    (the range channel's surprise grows with the margin). Twice the alarm level is no bar
    for them; twice the incident's peak is."""
    alarm = 1.5 * math.log(1e5)
    drift = []
    for k in range(10):  # within the 50 quiet steps of the refractory rule
        drift += [30.0 * alarm * (1.0 + 0.1 * k)] + [0.0] * 4
    old = AnomalyParams(refractory=50.0, refractory_relative=False)
    assert len(_burst_alarms(old, drift)) == 10  # every record
    assert _burst_alarms(AnomalyParams(), drift) == [0]
    # An escalation to more than twice the incident's peak is news.
    assert _burst_alarms(AnomalyParams(), [*drift[:20], 70.0 * alarm]) == [0, 20]


def _frozen_run(p: AnomalyParams) -> tuple[list[float], float]:
    """Stuck surprises of 250 noisy values then 60 frozen ones, and the final repeat rate."""
    rng = np.random.default_rng(7)
    series = np.r_[rng.normal(0, 1, 250), np.full(60, 0.25)]
    n, run, rep = np.zeros(1), np.zeros(1), np.zeros(1)
    last = np.nan
    surprises = []
    for x in series:
        s, run, rep = stuck_surprise(p, np.array([x == last]), n, run, rep)
        n, last = n + 1, x
        surprises.append(float(s[0]))
    return surprises, float(rep[0])


def _alarms(p: AnomalyParams, surprises: list[float], rep: float, peak0: float = 0.0) -> int:
    """Values whose score reaches 0.6 through stuck_onset and the novelty rule, as the
    stepper combines them (``peak0``: another incident's surprise just before)."""
    peak, alarms = np.full(1, peak0), 0
    for s in surprises:
        novel, onset = stuck_onset(p, np.array([s]), np.array([rep]))
        d, peak = novelty(p, novel, peak)
        d = np.where(onset, np.maximum(d, s), d)
        alarms += int(score_of(d)[0] >= 0.6)
    return alarms


def test_a_frozen_sensor_stays_surprising_and_alarms_once() -> None:
    """The frozen run does not teach the channel that repeats are normal and its surprise
    keeps growing, but it alarms once, at its onset, even right after a larger incident."""
    p = AnomalyParams()
    surprises, rep = _frozen_run(p)
    frozen = np.array(surprises[253:])
    assert np.all(frozen > math.log(1e5)) and np.all(np.diff(frozen) > 0)
    assert rep < p.stuck_max_rate
    assert _alarms(p, surprises, rep) == 1
    assert _alarms(p, surprises, rep, peak0=300.0) == 1  # a spike's peak does not mask it
    # Without the cap every frozen reading beats the peak: an alarm each.
    uncapped = AnomalyParams(stuck_cap=0.0)
    assert _alarms(uncapped, surprises, rep) > 50


def _run_excess(p: AnomalyParams, errors: np.ndarray) -> np.ndarray:
    """Surprise of each error ``errors [T, B]`` as the stepper learns, from unseeded streams."""
    B = errors.shape[1]
    mu, var = np.full(B, math.sqrt(2 / math.pi)), np.full(B, 1 - 2 / math.pi)  # |N(0, 1)|
    u, beta = np.zeros(B), np.zeros(B)
    out = np.empty_like(errors)
    for t, e in enumerate(errors):
        out[t], u, beta = excess_step(p, e, mu, var, u, beta)
    return out


def test_the_fitted_tail_is_calibrated_on_gaussian_errors() -> None:
    p = AnomalyParams()
    errors = np.abs(np.random.default_rng(3).normal(size=(3000, 200)))
    surprise = _run_excess(p, errors)[500:]
    for nats in (5.0, 7.0):
        rate = float((surprise > nats).mean())
        # A surprise of S nats should come at the rate e^-S (within sampling and fit error).
        assert math.exp(-nats) / 2.5 < rate < 2.5 * math.exp(-nats), (nats, rate)


def test_a_recurring_large_error_stops_alarming_but_a_larger_one_still_does() -> None:
    p = AnomalyParams()
    day = 288
    rng = np.random.default_rng(5)
    errors = np.abs(rng.normal(size=(20 * day, 1)))
    errors[day // 2 :: day] = 10.0  # the step a forecast half anticipates, daily
    surprise = _run_excess(p, errors)[:, 0]
    alarm = 1.5 * math.log(1e5)  # the surprise that scores 0.6
    jumps = surprise[day // 2 :: day]
    assert jumps[0] > alarm
    assert (jumps[-5:] < alarm).all(), jumps
    # What the stream learnt is its daily step, not that anything goes.
    mu, var = np.full(1, 0.8), np.full(1, 0.36)
    u, beta = np.zeros(1), np.zeros(1)
    for e in errors:
        _, u, beta = excess_step(p, e, mu, var, u, beta)
    big, _, _ = excess_step(p, np.array([30.0]), mu, var, u, beta)
    assert big[0] > alarm


def test_one_huge_error_teaches_the_tail_a_bounded_excess() -> None:
    p = AnomalyParams()
    mu, var = np.array([0.8]), np.array([0.36])
    _, u, beta = excess_step(p, np.array([1.0]), mu, var, np.zeros(1), np.zeros(1))
    _, _, after = excess_step(p, np.array([1e6]), mu, var, u, beta)
    assert after[0] <= beta[0] * (1 + p.excess_alpha * (p.excess_cap - 1)) + 1e-12
    # Seeded from the error statistics as if they were Gaussian: mean excess 2 E[e^2].
    assert math.isclose(float(beta[0]), 2.0 * (0.8**2 + 0.36))


def _sustained(
    p: AnomalyParams, d: F64, seen: int = 0, dt: float | None = None
) -> tuple[F64, npt.NDArray[np.bool_], float]:
    """The channel's surprise and onsets over a stream of deviations ``d``, step by
    step, and the spread it learnt; ``seen``: values the stream had before the channel
    started (a model swap from a version without it); ``dt``: seconds between values
    (None: not known)."""
    pm, pv, pq = np.zeros(1), np.zeros(1), np.full(1, float(seen))
    out, onsets = np.zeros(len(d)), np.zeros(len(d), bool)
    for i, x in enumerate(d):
        n = np.asarray([float(seen + i)])
        gap = None if dt is None else np.asarray([dt])
        s, pm, pv = sustained_step(p, np.asarray([x]), n, pm, pv, ONE, gap)
        _, onset, ongoing = sustained_onset(p, s, pq)
        pq = np.where(ongoing, 0.0, pq + 1.0)
        out[i], onsets[i] = s[0], onset[0]
    return out, onsets, float(pv[0])


ONE = np.ones(1, bool)


def test_a_lasting_unremarkable_shift_alarms_once_and_independent_noise_never() -> None:
    """Deviations of one standard deviation are routine one at a time; 150 of them in a
    row are not. Independent noise around the expected value never reaches the
    threshold in 20,000 values; the shift reaches it once, within 100 values."""
    p = AnomalyParams(sustained_rate=0.05)
    level = p.threshold / (1 - p.threshold) * SCORE_HALF_NATS
    rng = np.random.default_rng(0)
    d = rng.normal(0, 1, 20_150)
    d[20_000:] += 1.0
    s, onsets, _ = _sustained(p, d)
    assert s[:20_000].max() < level and not onsets[:20_000].any()
    assert onsets[20_000:20_100].sum() == 1 and onsets.sum() == 1


def test_a_wandering_stream_teaches_the_channel_its_own_spread() -> None:
    """Deviations that persist by nature (an AR(1) with phi 0.995, long excursions from
    the mean) would alarm an independent-noise calibration all the time; the channel
    learns how far its mean deviation wanders and stays quiet after its first hundreds
    of values."""
    p = AnomalyParams(sustained_rate=0.05)
    rng = np.random.default_rng(1)
    eps = rng.normal(0, 1, 20_000)
    d = np.zeros_like(eps)
    for i in range(1, len(d)):
        d[i] = 0.995 * d[i - 1] + eps[i] * math.sqrt(1 - 0.995**2)
    _, onsets, pv = _sustained(p, d)
    assert onsets[500:].sum() <= 2
    # Started on a stream 5,000 values old (a swap from a model without the channel)
    # that sits 1.5 spreads above its long-run mean just then, as a stream on its daily
    # arc does: it learns at its slow long-run rate, so it starts deaf, not alarmed.
    _, late, _ = _sustained(p, d[:2000] + 1.5, seen=5000)
    assert not late.any()
    # What it learnt: a spread far wider than independent deviations' (the seed).
    assert pv > 20 * p.sustained_rate / (2 - p.sustained_rate)


def test_the_sustained_channel_remembers_a_span_of_time_not_of_values() -> None:
    """A six-hour dip of two and a half spreads on a half-hourly stream is 12 values,
    whose mean over 20 (the channel's memory counted in values) does not reach the
    threshold; counted in time (``sustained_span_s``: about 4 values there) it does, once,
    and independent noise still never does in 20,000 values. A 5-minute stream is scored
    exactly as without times, and a model.json without the field as before."""
    p = AnomalyParams()
    rng = np.random.default_rng(3)
    d = rng.normal(0, 1, 20_012)
    d[20_000:] -= 2.5
    by_values = AnomalyParams(sustained_span_s=0.0)
    assert not _sustained(by_values, d, dt=1800.0)[1].any()
    _, onsets, _ = _sustained(p, d, dt=1800.0)
    assert not onsets[:20_000].any() and onsets[20_000:].sum() == 1
    assert np.array_equal(_sustained(p, d, dt=300.0)[0], _sustained(p, d)[0])
    assert AnomalyParams.from_json({"sustained_rate": 0.05}).sustained_span_s == 0.0


def test_the_sustained_channel_is_off_at_rate_0_and_for_models_calibrated_before_it() -> None:
    off = AnomalyParams(sustained_rate=0.0)
    s, onsets, _ = _sustained(off, np.full(500, 5.0))
    assert not s.any() and not onsets.any()
    assert AnomalyParams.from_json({}).sustained_rate == 0.0
    assert AnomalyParams().sustained_rate > 0


def _departures(
    p: AnomalyParams, x: F64, frozen: range = range(0)
) -> tuple[F64, npt.NDArray[np.bool_], F64]:
    """One stream through :func:`departure_step`: surprise and onset per value, and the
    block means it kept at the end (oldest first). Values at ``frozen`` mark their block as
    the stream's last frozen reading, as the stepper does."""
    dk, dn, dq, dl = np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1)
    ds, dref, dmax = np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1))
    db = np.zeros((1, DEPARTURE_BLOCKS, 1), np.float32)
    s, onsets = np.zeros(len(x)), np.zeros(len(x), np.bool_)
    for t, v in enumerate(x.tolist()):
        d = departure_step(
            p, np.asarray([[v]]), np.ones(1, np.bool_), dk, dn, dq, dl, ds, dref, dmax, db
        )
        s[t], onsets[t] = d.surprise[0], d.onset[0]
        if t in frozen:
            dl[:] = dn - (dk == 0)
    n = int(dn[0])
    kept = [
        db[0, j % DEPARTURE_BLOCKS, 0] + dref[0, 0] for j in range(max(0, n - DEPARTURE_BLOCKS), n)
    ]
    return s, onsets, np.asarray(kept)


def test_blocks_hold_the_means_of_their_values_at_full_precision() -> None:
    """Block means are kept relative to the stream's first value: a sensor reading
    1e6 with noise in its third decimal keeps that decimal in float32."""
    p = AnomalyParams(departure_block=5)
    x = 1e6 + np.arange(40) * 1e-3
    _, _, kept = _departures(p, x)
    np.testing.assert_allclose(kept, 1e6 + (np.arange(8) * 5 + 2) * 1e-3, rtol=0, atol=1e-6)


def test_a_drift_away_from_the_streams_course_alarms_once_and_its_arc_never() -> None:
    """A stream on a slow arc (a young stream's day, never seen in full) with AR(1)
    noise: its course bends, but no faster than it has. Then a ramp of two spreads of
    the stream over 120 values, steeper than the arc ever was: the channel alarms once,
    within the ramp, and not before it."""
    p = AnomalyParams()
    rng = np.random.default_rng(3)
    n, start = 600, 350
    t = np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * t / 1440 + 1.0)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = 0.7 * noise[i - 1] + rng.normal(0, 0.5)
    x += noise
    spread = float(np.std(x))
    x[start : start + 120] += np.linspace(0, 2 * spread, 120)
    x[start + 120 :] += 2 * spread
    _, onsets, _ = _departures(p, x)
    assert not onsets[:start].any()
    assert onsets[start : start + 120].sum() == 1 and onsets.sum() == 1


def test_a_course_that_bends_as_it_always_has_does_not_alarm() -> None:
    """Noise alone, and a stream whose course bends routinely (a random walk), set the
    record the departures are measured against: 20,000 values raise at most a couple of
    alarms after the channel's history is in."""
    p = AnomalyParams()
    rng = np.random.default_rng(4)
    for x in (rng.normal(0, 1, 20_000), np.cumsum(rng.normal(0, 1, 20_000))):
        _, onsets, _ = _departures(p, x)
        assert onsets.sum() <= 2


def test_the_departure_channel_is_off_at_block_0_and_for_models_calibrated_before_it() -> None:
    s, onsets, kept = _departures(AnomalyParams(departure_block=0), np.linspace(0, 100, 600))
    assert not s.any() and not onsets.any() and not len(kept)
    assert AnomalyParams.from_json({}).departure_block == 0
    assert AnomalyParams().departure_block > 0


def test_a_fit_and_gap_the_kept_blocks_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError, match="departure_gap"):
        AnomalyParams(departure_fit=8, departure_gap=3)
    AnomalyParams(departure_fit=8, departure_gap=3, departure_block=0)  # off: not checked


def test_a_course_broken_by_a_frozen_sensor_is_no_course_to_depart_from() -> None:
    """A sensor on a steady rise freezes for 50 values and resumes where the rise has got
    to: fitted through the frozen blocks, the line says flat, and the resumed rise departs
    from it. The stepper marks the blocks of frozen readings (``dl``): fits that hold them
    are skipped, and the resumption does not alarm."""
    p = AnomalyParams()
    rng = np.random.default_rng(5)
    x = 20 + 0.05 * np.arange(600) + rng.normal(0, 0.3, 600)
    x[400:450] = x[400]

    assert _departures(p, x)[1].sum() >= 1
    assert _departures(p, x, frozen=range(401, 450))[1].sum() == 0


def _days(p: AnomalyParams, d: F64, step_s: float) -> tuple[F64, npt.NDArray[np.bool_]]:
    """One stream's deviations ``d`` (one every ``step_s`` seconds) through
    :func:`day_step`: surprise and onset per value."""
    yq, yrec, yb, yp, yblk, yt0, yon = (np.zeros(1) for _ in range(7))
    s, onsets = np.zeros(len(d)), np.zeros(len(d), np.bool_)
    t0 = 1_404_172_800.0
    for t, v in enumerate(d.tolist()):
        ts = np.asarray([t0 + t * step_s])
        got = day_step(
            p,
            np.asarray([v]),
            np.ones(1, np.bool_),
            ts,
            np.asarray([step_s]),
            yq,
            yrec,
            yb,
            yp,
            yblk,
            yt0,
            yon,
        )
        s[t], onsets[t] = got.surprise[0], got.onset[0]
    return s, onsets


def _holiday_feed(per_day: int, days: int, holidays: tuple[int, ...], seed: int) -> F64:
    """Deviations from where a stream's profile expects its values: routine noise, and
    on each of ``holidays`` a day shaped otherwise (night hours above, the rush hours far
    below, so the day's deviations have both signs and a mean near 0)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 1, per_day * days)
    hour = np.arange(per_day) * 24 / per_day
    shape = np.where(hour < 6, 3.0, np.where((hour > 7) & (hour < 10), -6.0, 0.0))
    for day in holidays:
        d[day * per_day : (day + 1) * per_day] += shape
    return d


def test_a_day_unlike_the_streams_recent_days_alarms_once_whatever_the_sampling() -> None:
    """A holiday 40 days in: its deviations cancel in a mean (the sustained channel's),
    their energy over the day does not. One alarm, within the day (or the half day after
    it, as the day's energy peaks), every 30 minutes or every 5; none on routine days."""
    p = AnomalyParams()
    for per_day in (48, 288):
        d = _holiday_feed(per_day, 70, (40,), seed=per_day)
        assert abs(d[40 * per_day : 41 * per_day].mean()) < 0.5
        _, onsets = _days(p, d, 86400.0 / per_day)
        at = np.flatnonzero(onsets) / per_day
        assert len(at) == 1 and 40 <= at[0] < 41.5, at


def test_the_day_channel_speaks_once_the_stream_has_history_and_forgets_old_incidents() -> None:
    """A holiday in the stream's first two weeks is not judged (its record is not its
    recent weeks' yet); two holidays 50 days apart both alarm (the first has left the
    record by the second); a day like the stream's others never does."""
    p = AnomalyParams()
    _, onsets = _days(p, _holiday_feed(48, 30, (8,), seed=1), 1800.0)
    assert not onsets.any()
    _, onsets = _days(p, _holiday_feed(48, 120, (40, 90), seed=2), 1800.0)
    at = np.flatnonzero(onsets) / 48
    assert len(at) == 2 and 40 <= at[0] < 41.5 and 90 <= at[1] < 91.5, at
    _, onsets = _days(p, _holiday_feed(48, 200, (), seed=3), 1800.0)
    assert not onsets.any()


def test_the_day_channel_is_off_at_memory_0_and_for_models_calibrated_before_it() -> None:
    d = _holiday_feed(48, 70, (40,), seed=4)
    s, onsets = _days(AnomalyParams(day_memory_s=0.0), d, 1800.0)
    assert not s.any() and not onsets.any()
    assert AnomalyParams.from_json({}).day_memory_s == 0.0
    assert AnomalyParams().day_memory_s > 0


def test_after_an_outage_one_value_does_not_make_a_day() -> None:
    """A stream silent for five days resumes with a value four spreads out. Given the
    time since its last value as it is, that value would be most of a day's energy,
    measured against a record forgotten over the silence: an alarm. The stepper passes
    it capped at the stream's usual step (its profile's bin), and there is none."""
    p = AnomalyParams()
    d = _holiday_feed(48, 60, (), seed=5)
    d[45 * 48] = 4.0
    for capped, expect in ((False, True), (True, False)):
        yq, yrec, yb, yp, yblk, yt0, yon = (np.zeros(1) for _ in range(7))
        t0, onsets = 1_404_172_800.0, []
        for t, v in enumerate(d.tolist()):
            ts = t0 + t * 1800.0 + (5 * 86400.0 if t >= 45 * 48 else 0.0)
            step = 1800.0 if capped or t != 45 * 48 else 1800.0 + 5 * 86400.0
            got = day_step(
                p, np.asarray([v]), np.ones(1, np.bool_), np.asarray([ts]), np.asarray([step]),
                yq, yrec, yb, yp, yblk, yt0, yon,
            )  # fmt: skip
            onsets.append(bool(got.onset[0]))
        assert any(onsets) is expect


def _habit_run(
    p: AnomalyParams, devs: list[list[float]], step_s: float = 0.0
) -> tuple[list[bool], npt.NDArray[np.float32]]:
    """One stream's deviations ``devs`` (each ``[F]``) through :func:`habit_step`, ``step_s``
    apart (0: nothing fades): whether each was the stream's habit, and what it keeps."""
    F = len(devs[0])
    top = np.zeros((1, 2 * HABIT_SLOTS, F), np.float32)
    decay = np.full(1, math.exp(-step_s / p.level_habit_span_s))
    out = []
    for d in devs:
        habit, top = habit_step(p, np.asarray([d], np.float64), top, decay, np.ones(1, np.bool_))
        out.append(bool(habit[0]))
    return out, top


def test_a_deviation_shown_three_times_lately_is_a_habit_and_a_larger_one_is_not() -> None:
    """The fourth burst of a height the stream has shown three times is its habit; one
    beyond the third largest is not, nor is anything before three were kept."""
    p = AnomalyParams()
    habit, top = _habit_run(p, [[40.0], [55.0], [30.0], [35.0], [29.0], [31.0], [60.0]])
    # 40, 55, 30: not yet three; 35 > the third largest (30); 29 and 31 within it
    # (the third largest is 35 after 35 came); 60 beyond them all.
    assert habit == [False, False, False, False, True, True, False]
    np.testing.assert_allclose(top[0, :HABIT_SLOTS, 0], [60.0, 55.0, 40.0], rtol=1e-4)
    assert not top[0, HABIT_SLOTS:].any()  # nothing below the mean yet


def test_a_dip_in_a_stream_that_spikes_upwards_is_no_habit() -> None:
    """The habit is kept per side: upward bursts do not make a downward dip usual."""
    p = AnomalyParams()
    habit, _ = _habit_run(p, [[50.0], [50.0], [50.0], [-5.0], [-5.0], [-5.0], [-5.0], [-6.0]])
    assert habit == [False, False, False, False, False, False, True, False]


def test_the_habit_fades_over_its_span_and_is_off_at_0() -> None:
    """Three bursts make a burst a little lower a habit; two spans of the stream's time
    later (e**-2 of them kept) it is news again. ``level_habit`` 0 (a model calibrated
    before it) never calls one a habit."""
    p = AnomalyParams()
    _, top = _habit_run(p, [[50.0], [50.0], [50.0]])
    learn = np.ones(1, np.bool_)
    got, _ = habit_step(p, np.asarray([[45.0]]), top, np.ones(1), learn)
    assert got[0]
    got, _ = habit_step(p, np.asarray([[45.0]]), top, np.full(1, math.exp(-2.0)), learn)
    assert not got[0]
    hour, _ = _habit_run(p, [[50.0], [50.0], [50.0], [45.0]], step_s=3600.0)
    assert hour[-1]
    off = AnomalyParams.from_json({})
    assert off.level_habit == 0
    assert _habit_run(off, [[50.0]] * 6)[0] == [False] * 6


def test_a_value_is_a_habit_only_where_every_feature_is_and_unlearnt_values_teach_nothing() -> None:
    p = AnomalyParams()
    _, top = _habit_run(p, [[10.0, 1.0]] * 3)
    both, _ = habit_step(p, np.asarray([[9.0, 1.0], [9.0, 2.0]]), np.repeat(top, 2, axis=0),
                         np.ones(2), np.ones(2, np.bool_))  # fmt: skip
    assert both.tolist() == [True, False]
    big, after = habit_step(p, np.asarray([[99.0, 99.0]]), top, np.ones(1), np.zeros(1, np.bool_))
    np.testing.assert_array_equal(after, top)
    nan, _ = habit_step(p, np.asarray([[np.nan, 1.0]]), top, np.ones(1), np.ones(1, np.bool_))
    assert not big[0] and not nan[0]


def test_habit_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="level_habit"):
        AnomalyParams(level_habit=HABIT_SLOTS + 1)
    with pytest.raises(ValueError, match="level_habit_span_s"):
        AnomalyParams(level_habit_span_s=0.0)
