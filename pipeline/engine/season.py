"""A per-stream daily profile: what the time of day adds to a stream's level, learnt online.

One LSTM serves every stream; it is told the time of day (:mod:`.covariates`) but cannot
remember, for each of thousands of streams, the shape of that stream's own day: a
business-hours step at 09:00, a nightly batch job at 02:10. Holt-Winters can, with one
seasonal state per step of the day. This module keeps that state for every stream,
indexed by event time rather than by step count, so irregular sampling and gaps do not
shift it:

- the day is cut into ``bins`` equal bins, as many as the stream's sampling step makes in a
  day (one per step, as in Holt-Winters), at most :data:`BINS` (5-minute resolution) and
  at least 4; a value at time of day ``τ`` falls between two bins and is read and learnt
  by linear interpolation between them;
- the profile ``S(τ)`` learns the value's offset from a slow level (the stream's mean over
  about a day): ``S += r·(x - slow - S(τ))`` on the two bins around ``τ``, at a rate that
  gives each bin a weight of about :data:`SEASON_RATE` per day (a plain average while the
  stream is younger than ``1 / SEASON_RATE`` days, so the first day already counts);
- a fast level ``L`` follows the deseasonalised value: ``L += LEVEL_RATE·(x - S(τ) - L)``;
- the seasonal forecast of the value ``h`` steps ahead is ``L + S(τ + h·Δt)``, with ``Δt``
  the stream's last sampling step.

:mod:`.blend` weighs this forecast against the model's, per stream, by how each has done.
The profile describes the sensor, not the model: it survives a model swap and a gap.

The constants were chosen on the generated corpus (``training.corpus``), not on NAB:
bins per sampling step (up to 288) forecast as well as 24 or 48 fixed bins there and
resolve the sharp edges of business-hours patterns; level rate 0.2 and season rate 0.2 per
day were the best of {0.1, 0.2, 0.3, 0.5} and {0.1, 0.2, 0.4} on it (docs/quality.md).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BINS", "DAY", "LEVEL_RATE", "SEASON_RATE", "forecast", "learn"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
DAY = 86_400.0
BINS = 288
MIN_BINS = 4
LEVEL_RATE = 0.2
SEASON_RATE = 0.2
MAX_STEP_RATE = 0.5  # no single value moves a bin more than half way


def _locate(ts: F64, nb: F64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], F64]:
    """The two bins around each stream's time of day and the weight of the second."""
    nbs = np.maximum(nb, 1.0)
    u = np.mod(ts, DAY) / DAY * nbs
    base = np.floor(u)
    frac = u - base
    i0 = np.mod(base, nbs).astype(np.int64)
    i1 = np.mod(base + 1.0, nbs).astype(np.int64)
    return i0, i1, frac


def _at(sp: F32, nb: F64, ts: F64) -> F64:
    """``S(τ)`` per stream and feature: ``sp [B, BINS, F]`` read at times ``ts [B]``."""
    i0, i1, frac = _locate(ts, nb)
    rows = np.arange(len(ts))
    lo = sp[rows, i0].astype(np.float64)
    hi = sp[rows, i1].astype(np.float64)
    out: F64 = (1.0 - frac)[:, None] * lo + frac[:, None] * hi
    return out


def learn(
    sp: F32,
    sbin: F64,
    slev: F64,
    sday: F64,
    st0: F64,
    x: F64,
    ts: F64,
    prev_ts: F64,
) -> None:
    """Learn one value per stream in place: ``x [B, F]`` at ``ts [B]``, the stream's
    previous event at ``prev_ts`` (-inf or NaN: none).

    1. A stream's first value starts both levels; its first positive step fixes its bins.
    2. The slow level moves towards ``x`` by ``Δt / day`` (a memory of about a day).
    3. The two bins around ``τ`` learn ``x - slow - S(τ)``, shared by interpolation weight.
    4. The fast level follows ``x - S(τ)`` with the updated profile.
    """
    dt = ts - prev_ts
    stepped = np.isfinite(dt) & (dt > 0)
    # 1. Start.
    new = sbin <= 0
    fresh = new & ~stepped
    slev[fresh] = x[fresh]
    sday[fresh] = x[fresh]
    st0[fresh] = ts[fresh]
    begin = new & stepped
    if begin.any():
        sbin[begin] = np.clip(np.round(DAY / dt[begin]), MIN_BINS, BINS)
        undone = begin & ~np.isfinite(slev).all(axis=1)
        slev[undone], sday[undone], st0[undone] = x[undone], x[undone], prev_ts[undone]
    go = stepped & (sbin > 0)
    if not go.any():
        return
    rows = np.nonzero(go)[0]
    xs, t, step, nb = x[rows], ts[rows], dt[rows], sbin[rows]
    # 2. Slow level.
    sday[rows] += np.minimum(1.0, step / DAY)[:, None] * (xs - sday[rows])
    # 3. Profile: a plain average over the first days, then SEASON_RATE per day.
    days = np.floor(np.maximum(t - st0[rows], 0.0) / DAY)
    per_day = np.maximum(SEASON_RATE, 1.0 / (1.0 + days))
    rate = np.minimum(MAX_STEP_RATE, per_day * step * nb / DAY)
    i0, i1, frac = _locate(t, nb)
    block = sp[rows]
    res = xs - sday[rows] - _at(block, nb, t)
    local = np.arange(len(rows))
    block[local, i0] += ((rate * (1.0 - frac))[:, None] * res).astype(np.float32)
    block[local, i1] += ((rate * frac)[:, None] * res).astype(np.float32)
    sp[rows] = block
    # 4. Fast level on the deseasonalised value.
    slev[rows] += LEVEL_RATE * (xs - _at(block, nb, t) - slev[rows])


def forecast(sp: F32, sbin: F64, slev: F64, ts: F64, step: F64, horizon: int) -> F64:
    """``[B, horizon, F]``: ``L + S(ts + h·step)`` for h = 1..horizon (NaN where a stream
    has no profile yet or no known step)."""
    B, _, F = sp.shape
    out = np.full((B, horizon, F), np.nan)
    ok = (sbin > 0) & np.isfinite(step) & (step > 0) & np.isfinite(slev).all(axis=1)
    if not ok.any():
        return out
    rows = np.nonzero(ok)[0]
    block, nb = sp[rows], sbin[rows]
    for h in range(horizon):
        out[rows, h] = slev[rows] + _at(block, nb, ts[rows] + (h + 1) * step[rows])
    return out
