"""The deviation's spread (``stepper.learn_residual``): learnt from usual values only."""

from __future__ import annotations

import numpy as np

from pipeline.engine.normalise import NormaliserParams
from pipeline.engine.season import DAY, SETTLED_DAYS
from pipeline.engine.stepper import learn_residual

NORM = NormaliserParams()
BINS = 48.0  # a value every 30 minutes


def _learn(values: list[float], learn: bool = True, start_days: float = SETTLED_DAYS) -> float:
    """The share learnt from ``values`` (residuals in long-run spreads), one per bin."""
    rv = np.zeros((1, 1))
    for i, r in enumerate(values):
        ts = np.asarray([start_days * DAY + i * DAY / BINS])
        rv = learn_residual(
            NORM, rv, np.zeros(1), np.asarray([BINS]), np.asarray([[r]]), np.zeros((1, 1)),
            np.ones((1, 1)), ts, np.asarray([learn]),
        )  # fmt: skip
    return float(rv[0, 0])


def test_a_plain_average_from_the_day_the_profile_settled() -> None:
    # (Within three of the floor's spreads, 0.3: every value is admitted.)
    r = np.random.default_rng(3).uniform(-0.3, 0.3, 400)
    assert abs(_learn(list(r)) - np.mean(r * r)) < 1e-12


def test_then_the_normalisers_memory() -> None:
    """Two months after settling (2,784 values), a value moves it by the normaliser's
    rate (1/2,000), not 1/n."""
    rv = learn_residual(
        NORM, np.full((1, 1), 0.04), np.zeros(1), np.asarray([BINS]), np.asarray([[0.5]]),
        np.zeros((1, 1)), np.ones((1, 1)), np.asarray([60 * DAY]), np.asarray([True]),
    )  # fmt: skip
    assert abs(rv[0, 0] - (0.04 + NORM.alpha * (0.25 - 0.04))) < 1e-12


def test_a_value_beyond_three_spreads_a_flagged_one_and_an_unsettled_profile_teach_nothing() -> (
    None
):
    base = [0.2, -0.2] * 50  # a share of 0.04: a spread of 0.2
    before = _learn(base)
    assert abs(before - 0.04) < 1e-9
    # 0.59 is within three spreads of 0.2, 0.61 beyond: a growing drift stops there.
    assert _learn([*base, 0.59]) > before
    assert _learn([*base, 0.61]) == before
    assert _learn(base, learn=False) == 0.0
    rv = learn_residual(
        NORM, np.full((1, 1), 0.04), np.zeros(1), np.asarray([BINS]), np.asarray([[0.1]]),
        np.full((1, 1), np.nan), np.ones((1, 1)), np.asarray([5 * DAY]), np.asarray([True]),
    )  # fmt: skip
    assert rv[0, 0] == 0.04


def test_one_value_counts_at_most_one_long_run_spread() -> None:
    """Before the share is known (0), anything is learnt, but clipped at one spread."""
    assert _learn([5.0]) == 1.0
