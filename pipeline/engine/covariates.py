"""Event-time covariates: what the model knows about *when* a value arrived.

One function, shared by training and scoring, turns event times into model inputs:

- ``tod_sin``, ``tod_cos``: time of day (UTC) on the unit circle;
- ``dow_sin``, ``dow_cos``: day of the week (Monday = 0) on the unit circle;
- ``gap``: log of the time since the stream's previous event, ``log1p(dt / 60 s) / 5``
  (0 for the first event; bounded, so a long silence cannot blow up the input).

A daily season at 5-minute sampling is 288 steps, far longer than what backpropagation
through time sees (64 steps); with the phase of the day as an input the LSTM need not
remember where in the day it is, it is told. ``model.json`` lists a model's covariates;
a model without them gets none (older models keep working unchanged).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["COVARIATES", "DAY", "WEEK", "covariates"]

COVARIATES = ("tod_sin", "tod_cos", "dow_sin", "dow_cos", "gap")
DAY, WEEK = 86_400.0, 7 * 86_400.0
_MONDAY = 3 * DAY  # 1970-01-01 was a Thursday: shift so that Monday 00:00 is phase 0

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


def covariates(ts: F64, prev_ts: F64, names: tuple[str, ...]) -> F32:
    """``[B, len(names)]`` covariates of events at ``ts`` whose streams' previous events
    were at ``prev_ts`` (``-inf`` or NaN: no previous event)."""
    out = np.empty((len(ts), len(names)), np.float32)
    if not names:
        return out
    day = 2 * np.pi * np.mod(ts, DAY) / DAY
    week = 2 * np.pi * np.mod(ts + _MONDAY, WEEK) / WEEK
    gap = ts - prev_ts
    gap = np.where(np.isfinite(gap) & (gap > 0), gap, 0.0)
    columns = {
        "tod_sin": np.sin(day),
        "tod_cos": np.cos(day),
        "dow_sin": np.sin(week),
        "dow_cos": np.cos(week),
        "gap": np.minimum(np.log1p(gap / 60.0) / 5.0, 3.0),
    }
    for j, name in enumerate(names):
        out[:, j] = columns[name]
    return out
