"""Input drift (pipeline.engine.drift): the stability index on samples whose answer is
known, and on the inputs the shipped model really sees before and after a regime change."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.engine import drift
from pipeline.engine.csvdata import Series
from pipeline.engine.registry import Registry
from training.evaluate import input_hist, replay

REPO = Path(__file__).resolve().parents[3]


def _reference(seed: int = 0) -> list[float]:
    return drift.fractions(drift.counts(np.random.default_rng(seed).normal(size=200_000)))


def test_the_same_distribution_is_stable_and_moved_ones_are_not() -> None:
    ref = _reference()
    rng = np.random.default_rng(1)
    same = drift.psi(ref, drift.counts(rng.normal(size=2000)))
    assert same < 0.02  # sampling noise only (about 0.005 with 12 bins)
    shifted = drift.psi(ref, drift.counts(rng.normal(1.0, 1.0, size=2000)))
    wider = drift.psi(ref, drift.counts(rng.normal(0.0, 2.0, size=2000)))
    flat = drift.psi(ref, drift.counts(np.full(2000, 0.1)))
    assert min(shifted, wider, flat) > 0.25  # "major shift" on the usual reading
    assert flat > wider  # everything in one bin is the furthest from a bell
    # Twice the shift, more drift.
    assert drift.psi(ref, drift.counts(rng.normal(2.0, 1.0, size=2000))) > shifted


def test_edges_counts_and_undefined_cases() -> None:
    c = drift.counts(np.array([[-9.0, -3.0], [0.0, np.nan], [0.25, 99.0]]))
    assert c.sum() == 5 and c[0] == 1 and c[1] == 1 and c[-1] == 1  # NaN not counted
    assert c[drift.EDGES.index(0.0) + 1] == 2  # 0.0 and 0.25 share [0, 0.5)
    assert drift.fractions(np.zeros(drift.BINS, np.int64)) == [0.0] * drift.BINS
    assert math.isnan(drift.psi(_reference(), np.zeros(drift.BINS, np.int64)))
    assert math.isnan(drift.psi([0.5, 0.5], drift.counts(np.zeros(10))))  # other bins


def test_the_models_inputs_after_a_level_shift_and_a_noisier_regime_drift() -> None:
    """The reference as training records it (each stream's last 10%, warm steps), then
    2,000 inputs later: the same regime stays below 0.1; the feed shifted by three
    spreads, or three times noisier, is above 0.25 (the alert's line)."""
    meta = Registry(REPO / "exported_models").meta("default")
    rng = np.random.default_rng(5)
    n, start = 6000, 4000
    ts = 1_764_000_000.0 + 300 * np.arange(n)

    def feed(change: str) -> Series:
        v = 20 + 3 * np.sin(2 * np.pi * ts / 86400) + rng.normal(0, 1, n)
        if change == "shift":
            v[start:] += 3 * np.std(v[:start])
        elif change == "noise":
            v[start:] += rng.normal(0, 3, n - start)
        return Series(change, ts, v[:, None], ("value",))

    validated, *reps = replay(meta, [feed("none"), feed("none"), feed("shift"), feed("noise")])
    reference = input_hist([validated], (n - start) / n)  # another draw of the same regime
    before = [r.inputs[start - 2000 : start] for r in reps]
    after = [r.inputs[start : start + 2000] for r in reps]
    assert all(drift.psi(reference, drift.counts(b)) < 0.1 for b in before)
    assert drift.psi(reference, drift.counts(after[0])) < 0.1
    assert drift.psi(reference, drift.counts(after[1])) > 0.25
    assert drift.psi(reference, drift.counts(after[2])) > 0.25


def test_a_day_of_inputs_compares_whole_days_from_the_second_on() -> None:
    """Nothing until a whole day after the first day; then exactly the last day's blocks
    (a block is dropped once its latest event is a day older than the newest)."""
    hour = 3600.0
    day = drift.DayOfInputs()
    one = np.ones(drift.BINS, np.int64)
    for h in range(48):  # hour h's block counts h of each bin
        day.saw(h * hour)
        day.add((h + 1) * hour - 1, one * h)
        assert day.day() is None  # the first day is the normalisers' young day
    day.saw(48 * hour)
    day.add(49 * hour - 1, one * 48)
    got = day.day()
    assert got is not None
    # The last day ends at 49 h - 1 s: the blocks of hours 25..48.
    np.testing.assert_array_equal(got, one * sum(range(25, 49)))
