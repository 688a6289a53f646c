"""The per-stream forecast gain: least squares of the actual change on the predicted one."""

from __future__ import annotations

import numpy as np

from pipeline.engine.gain import MAX_GAIN, MIN_EVIDENCE, gain_of, learn


def _fit(k_true: float, steps: int = 3000, seed: int = 0) -> float:
    """A stream whose actual change is ``k_true`` times the predicted one, plus noise."""
    rng = np.random.default_rng(seed)
    gxy = gxx = gn = np.zeros(1)
    for _ in range(steps):
        delta = rng.normal(0, 1, (1, 1))
        change = k_true * delta + rng.normal(0, 0.3, (1, 1))
        gxy, gxx, gn = learn(gxy, gxx, gn, delta, change, np.ones((1, 1)), np.ones(1, bool))
    return float(gain_of(gxy, gxx, gn)[0])


def test_the_gain_recovers_how_much_of_the_predicted_change_comes() -> None:
    assert abs(_fit(0.5) - 0.5) < 0.1
    assert abs(_fit(1.0) - 1.0) < 0.1
    assert _fit(-1.0) == 0.0  # predicted changes that reverse: persistence, never a flip
    assert _fit(3.0) == MAX_GAIN


def test_no_gain_before_enough_evidence_and_nothing_learnt_from_unknown_changes() -> None:
    gxy = gxx = gn = np.zeros(2)
    delta, change = np.ones((2, 1)), np.zeros((2, 1))
    for _ in range(int(MIN_EVIDENCE) - 1):
        gxy, gxx, gn = learn(gxy, gxx, gn, delta, change, np.ones((2, 1)), np.ones(2, bool))
    assert (gain_of(gxy, gxx, gn) == 1.0).all()
    nan_change = np.full((2, 1), np.nan)  # e.g. a new stream without a previous value
    gxy2, gxx2, gn2 = learn(gxy, gxx, gn, delta, nan_change, np.ones((2, 1)), np.ones(2, bool))
    assert (gn2 == gn).all() and (gxy2 == gxy).all() and (gxx2 == gxx).all()
    gxy, gxx, gn = learn(gxy, gxx, gn, delta, change, np.ones((2, 1)), np.ones(2, bool))
    assert (gain_of(gxy, gxx, gn) == 0.0).all()  # changes predicted, none came
