"""A per-stream daily profile: what the time of day adds to a stream's level, learnt online.

One LSTM serves every stream; it is told the time of day (:mod:`.covariates`) but cannot
remember, for each of thousands of streams, the shape of that stream's own day: a
business-hours step at 09:00, a nightly batch job at 02:10. Holt-Winters can, with one
seasonal state per step of the day. This module keeps that state for every stream,
indexed by event time rather than by step count, so that a gap does not shift it:

- the day is cut into as many bins as the stream's first sampling step makes in a day
  (one per step, as Holt-Winters has), at most :data:`BINS` (5-minute resolution, 1.1 KB
  per feature in float32; a scorer may keep fewer, ``--season-bins``, or none) and at
  least 4; a value belongs to the bin nearest its time of day ``τ``;
- a level ``L`` follows the deseasonalised value: ``L += LEVEL_RATE·(x - S(τ) - L)``;
- the profile learns the value's offset from that level, ``S(τ) += r·(x - L - S(τ))``, at a
  rate that gives each bin a weight of about :data:`SEASON_RATE` per day: a plain average
  while the stream is younger than ``1 / SEASON_RATE`` days, so that on the first day the
  profile takes each value whole and the level stays put (a repeating day is then
  forecast exactly from the second day on), and a slow rate after, so that a level shift
  moves ``L`` within a few steps but the profile only a little; after the first day a
  value the detector flags is not learnt into the profile (an incident should not become
  tomorrow's forecast), only into the level;
- the forecast ``h`` steps ahead is ``L + S(τ + h·Δt)``, with ``Δt`` the stream's last
  sampling step (at most one bin), once the profile has seen a whole day (NaN before).

:mod:`.blend` weighs this forecast against the model's, per stream, by how each has done.
The profile describes the sensor, not the model: it survives a model swap and a gap.

Jittered sampling (±30%) leaves some bins unvisited on a given day and costs accuracy
(about 8% of the amplitude on a sine, against 0 for regular sampling: tests); the blend
then leans on the model. The constants were chosen on the generated corpus
(``training.corpus``), not on NAB: docs/quality.md.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BINS", "DAY", "LEVEL_RATE", "SEASON_RATE", "deseasoned", "forecast", "learn"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
DAY = 86_400.0
BINS = 288
MIN_BINS = 4
LEVEL_RATE = 0.2
SEASON_RATE = 0.2
SETTLED_DAYS = 2  # before it, the profile is too young to say where a value belongs
MAX_STEP_RATE = 1.0  # a bin moves at most all the way to one value (the first day's)


def _bin(ts: F64, nb: F64) -> npt.NDArray[np.int64]:
    """The bin nearest to each stream's time of day."""
    nbs = np.maximum(nb, 1.0)
    out: npt.NDArray[np.int64] = np.mod(np.round(np.mod(ts, DAY) / DAY * nbs), nbs).astype(np.int64)
    return out


def learn(
    sp: F32,
    sbin: F64,
    slev: F64,
    st0: F64,
    x: F64,
    ts: F64,
    prev_ts: F64,
    usual: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Learn one value per stream in place: ``x [B, F]`` at ``ts [B]``, the stream's
    previous event at ``prev_ts`` (-inf or NaN: none); where ``usual`` is false (an
    anomaly) after the profile's first day, only the level learns it, not the profile.

    1. A stream's first value starts its level; its first positive step fixes its bins.
    2. The value's bin learns ``x - L - S(τ)`` at the day's rate.
    3. The level moves towards ``x - S(τ)`` (with the updated profile) by ``LEVEL_RATE``.
    """
    cap = sp.shape[1]  # the store's bins per stream (0: no profile)
    if cap == 0:
        return
    dt = ts - prev_ts
    stepped = np.isfinite(dt) & (dt > 0)
    # 1. Start.
    new = sbin <= 0
    fresh = new & ~stepped
    slev[fresh] = x[fresh]
    st0[fresh] = ts[fresh]
    begin = new & stepped
    if begin.any():
        sbin[begin] = np.clip(np.round(DAY / dt[begin]), min(MIN_BINS, cap), min(BINS, cap))
        undone = begin & ~np.isfinite(slev).all(axis=1)
        slev[undone], st0[undone] = x[undone], prev_ts[undone]
    go = stepped & (sbin > 0)
    if not go.any():
        return
    rows = np.nonzero(go)[0]
    xs, t, step, nb = x[rows], ts[rows], dt[rows], sbin[rows]
    # 2. Profile: a plain average over the first days, then SEASON_RATE per day. (Only
    #    the value's bin is read and written: the profile is most of a stream's state.)
    days = np.floor(np.maximum(t - st0[rows], 0.0) / DAY)
    per_day = np.maximum(SEASON_RATE, 1.0 / (1.0 + days))
    rate = np.minimum(MAX_STEP_RATE, per_day * step * nb / DAY)
    if usual is not None:
        # From the second day on (the first day's values are all the profile has).
        rate = np.where(usual[rows] | (days < 1), rate, 0.0)
    at = _bin(t, nb)
    bins = sp[rows, at].astype(np.float64)
    bins += rate[:, None] * (xs - slev[rows] - bins)
    sp[rows, at] = bins
    # 3. Level, of the deseasonalised value.
    slev[rows] += LEVEL_RATE * (xs - bins - slev[rows])


def forecast(sp: F32, sbin: F64, slev: F64, st0: F64, ts: F64, step: F64, horizon: int) -> F64:
    """``[B, horizon, F]``: ``L + S(ts + h·step)`` for h = 1..horizon (NaN where a stream's
    profile has not seen a whole day yet, or its step is unknown)."""
    B, cap, F = sp.shape
    out = np.full((B, horizon, F), np.nan)
    if cap == 0:
        return out
    ok = (sbin > 0) & (ts - st0 >= DAY) & np.isfinite(step) & (step > 0)
    ok &= np.isfinite(slev).all(axis=1)
    if not ok.any():
        return out
    rows = np.nonzero(ok)[0]
    nb, t, level = sbin[rows], ts[rows], slev[rows]
    for h in range(horizon):
        out[rows, h] = level + sp[rows, _bin(t + (h + 1) * step[rows], nb)]
    return out


def deseasoned(sp: F32, sbin: F64, st0: F64, ts: F64) -> tuple[F64, F64]:
    """``(offset, spread) [B, F]``: what the time of day ``ts`` adds to the stream's mean,
    ``S(τ) - mean(S)``, and the variance the profile accounts for, ``var(S)`` over the
    day's bins; NaN until the profile has seen :data:`SETTLED_DAYS` whole days (one day's
    profile is that day's noise as much as its shape). The stream's long-run
    mean plus ``offset`` is where a value is expected at that time of day, and its
    long-run variance less ``spread`` how far values stray from that when nothing
    happens: a reference that a drift does not drag along, unlike the level ``L``."""
    B, cap, F = sp.shape
    offset = np.full((B, F), np.nan)
    spread = np.full((B, F), np.nan)
    if cap == 0:
        return offset, spread
    ok = (sbin > 0) & (ts - st0 >= SETTLED_DAYS * DAY)
    if not ok.any():
        return offset, spread
    rows = np.nonzero(ok)[0]
    nb = sbin[rows]
    used = np.arange(cap)[None, :] < nb[:, None]  # [R, cap]: the bins this stream has
    prof = np.where(used[:, :, None], sp[rows].astype(np.float64), 0.0)
    mean = prof.sum(axis=1) / nb[:, None]
    var = (np.where(used[:, :, None], prof - mean[:, None, :], 0.0) ** 2).sum(axis=1) / nb[:, None]
    now = sp[rows, _bin(ts[rows], nb)].astype(np.float64)
    offset[rows] = now - mean
    spread[rows] = var
    return offset, spread
