"""The anomaly scorer: bounded, monotone in surprise, adaptive per stream."""

from __future__ import annotations

import math

import numpy as np

from pipeline.anomaly import AnomalyParams, gaussian_tail, score_step


def test_gaussian_tail_matches_erfc() -> None:
    z = np.linspace(-6, 9, 61)
    ref = np.array([0.5 * math.erfc(v / math.sqrt(2)) for v in z])
    np.testing.assert_allclose(gaussian_tail(z), ref, rtol=3e-7, atol=0)


def _run(errors: np.ndarray, p: AnomalyParams) -> np.ndarray:
    n = np.zeros(1)
    short = np.zeros(1)
    mu = np.full(1, p.prior_mean)
    var = np.full(1, p.prior_std**2)
    out = []
    for e in errors:
        s, n, short, mu, var = score_step(p, np.array([e]), n, short, mu, var)
        out.append(s[0])
    return np.array(out)


def test_scores_stay_in_unit_interval_and_a_spike_scores_high() -> None:
    rng = np.random.default_rng(0)
    p = AnomalyParams(prior_mean=0.8, prior_std=0.6)
    errors = np.abs(rng.normal(0, 1, 600))
    errors[500] = 12.0
    scores = _run(errors, p)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[500] > 0.7
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
    from pipeline.anomaly import stuck_tail

    p = AnomalyParams()
    rng = np.random.default_rng(2)
    continuous = np.r_[rng.normal(0, 1, 300), np.full(6, 0.5)]
    quantised = np.r_[np.round(rng.normal(0, 0.5, 300)), np.zeros(6)]  # repeats ~40% of the time
    for series, expect_flag in ((continuous, True), (quantised, False)):
        n = np.zeros(1)
        run = np.zeros(1)
        rep = np.full(1, 0.1)
        last = np.nan
        tails = []
        for x in series:
            tail, run, rep = stuck_tail(p, np.array([x == last]), n, run, rep)
            n = n + 1
            last = x
            tails.append(tail[0])
        assert bool(min(tails[-3:]) < 1e-5) is expect_flag
        assert min(tails[20:300]) > 1e-5 or not expect_flag
