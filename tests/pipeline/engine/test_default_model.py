"""The shipped default model on series whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.csvdata import Series
from pipeline.engine.registry import Registry
from training.evaluate import replay

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("step_s", [60, 300, 3600])
def test_a_noiseless_daily_season_is_forecast_within_5_percent_of_its_amplitude(
    step_s: int,
) -> None:
    """Once one period has been seen (a day at 1- and 5-minute sampling, as NAB's
    art_daily_* files, and hourly). The model alone follows the sine at 1 and 5 minutes;
    hourly it cannot (16% of the amplitude, no better than persistence), and the stream's
    daily profile, blended in once it does better, takes over (pipeline.engine.season)."""
    meta = Registry(REPO / "exported_models").meta("default")
    n = (3 if step_s < 3600 else 5) * 86400 // step_s
    ts = 1_764_000_000.0 + step_s * np.arange(n)
    v = 50 + 10 * np.sin(2 * np.pi * (ts % 86400) / 86400)
    (r,) = replay(meta, [Series("sine", ts, v[:, None], ("value",))])
    # Hourly, the blend needs its evidence (50 steps) after the profile's first day.
    day = 86400 // step_s * (1 if step_s < 3600 else 4)
    mae = np.abs(r.forecast[day:-1, 0, 0] - v[day + 1 :]).mean()
    assert mae < 0.05 * 10
