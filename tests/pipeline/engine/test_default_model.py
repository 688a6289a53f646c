"""The shipped default model on series whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.csvdata import Series
from pipeline.engine.registry import Registry
from training.evaluate import replay

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("step_s", [60, 300])
def test_a_noiseless_daily_season_is_forecast_within_5_percent_of_its_amplitude(
    step_s: int,
) -> None:
    """Once one period has been seen (a day at 1- and 5-minute sampling, as NAB's
    art_daily_* files). Hourly sampling misses it (16% of the amplitude, no better than
    persistence): docs/quality.md."""
    meta = Registry(REPO / "exported_models").meta("default")
    n = 3 * 86400 // step_s
    ts = 1_764_000_000.0 + step_s * np.arange(n)
    v = 50 + 10 * np.sin(2 * np.pi * (ts % 86400) / 86400)
    (r,) = replay(meta, [Series("sine", ts, v[:, None], ("value",))])
    day = 86400 // step_s
    mae = np.abs(r.forecast[day:-1, 0, 0] - v[day + 1 :]).mean()
    assert mae < 0.05 * 10
