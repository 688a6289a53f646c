"""How large a stream's errors are at each hour of its day, learnt online.

A stream's noise often follows its day: a traffic count or a server's load is noisy by day
and quiet by night. The served scale (:mod:`.blend`) takes the profile's share from the
profile's recent mean absolute error, one figure for the whole stream, measured over about
the last hundred values: by night it still holds the day's noise (a night spike of many
night-time spreads then looks usual), and in the first hour of the day it still holds the
night's (the day's first values then look like anomalies, and the forecast channel's tail
learns them as usual, so that a night spike is usual too: ``docs/quality.md``, session 37).

Each stream keeps, per hour of the day (:data:`HOURS` bins, by event time), the mean
absolute one-step error of its profile's forecast, in its spread, as the profile keeps its
bins (a plain average over the first days, then about :data:`season.SEASON_RATE` of a
bin's weight per day), over the values the detector does not flag; and the exponentially
weighted mean of the bins' figures at the values the blend measured (its memory,
:data:`blend.RATE`). The served profile scale at the next value's hour is the blend's
recent error times the ratio of that hour's bin to that mean: the bins give the day's
shape, the blend's fast mean the current size (a stream whose noise doubles for good
doubles its scale within the blend's memory, not within the bins' days).

Until a stream's profile has settled (:data:`season.SETTLED_DAYS`) and its hours have seen
:data:`MIN_VALUES` values each (counted from the profile's start, or from the restore of a
stream whose frame predates the hours: it counts afresh), or where an hour has not been
seen, the ratio is 1: the scale is the blend's, as before. The stepper does not use it
where the stream's week is in use (:func:`season.week_in_use`): the hour of the day then
averages days of other shapes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.engine import blend, season

__all__ = ["ADMIT", "HOURS", "MAX_ERROR", "MAX_RATIO", "MIN_VALUES", "learn", "ratio"]

F16 = npt.NDArray[np.float16]
F64 = npt.NDArray[np.float64]
HOURS = 24
# How far an hour's scale may stray from the stream's recent one, either way: a bin learnt
# from a few values of a quiet hour should not make its scale vanish.
MAX_RATIO = 10.0
# One value counts at most ADMIT times its hour's figure (the residual spread's rule,
# stepper.RESIDUAL_ADMIT), and a first one at most MAX_ERROR spreads (float16's range).
ADMIT = 3.0
MAX_ERROR = 1e4
# The fewest values an hour's figure averages, and must have seen before it is used.
MIN_VALUES = 20


def _hour(ts: F64) -> npt.NDArray[np.int64]:
    out: npt.NDArray[np.int64] = (
        np.floor(np.mod(ts, season.DAY) / season.DAY * HOURS).astype(np.int64) % HOURS
    )
    return out


def learn(
    te: F16,
    tq: F64,
    err: F64,
    ts: F64,
    since: F64,
    step: F64,
    usual: npt.NDArray[np.bool_],
    seen: npt.NDArray[np.bool_],
) -> F64:
    """Learn ``err [B]`` (the profile's absolute one-step error, in the stream's spread) at
    times ``ts`` into the hours ``te [B, HOURS]`` in place, where ``usual`` (no incident's
    value), and return the bins' mean at the values the blend measured (``seen``): ``tq``
    advanced. ``since [B]``: when the hours began counting (the profile's start, or later);
    ``step [B]``: the time a value stands for (bounded: season.bounded_step)."""
    rows = np.arange(len(ts))
    hour = _hour(ts)
    have = np.isfinite(err)
    before = te[rows, hour].astype(np.float64)
    # The blend's mean runs over the values it measured, at the figure the hours gave
    # before this value (as ratio reads them): what they predicted for the errors it
    # averaged.
    figure = _figure(te, ts)
    track = seen & have & (figure > 0)
    tq = np.where(track & (tq <= 0), figure, tq)
    tq = np.where(track, tq + blend.RATE * (figure - tq), tq)
    # A plain average while young, then about SEASON_RATE of the bin per day, but never
    # fewer than MIN_VALUES values (an hourly stream sees an hour once a day).
    seen_in_bin = _values_per_bin(ts, since, step)
    per_day = _per_day(step)
    rate = np.maximum(
        1.0 / (seen_in_bin + 1.0), np.minimum(season.SEASON_RATE / per_day, 1.0 / MIN_VALUES)
    )
    go = usual & have & np.isfinite(ts) & np.isfinite(rate)
    if go.any():
        r = rows[go]
        old = before[go]
        # Once the bin has its MIN_VALUES, one value counts at most ADMIT times its figure:
        # an incident the detector did not flag should not make its hour look noisy for
        # days. (Not before: a bin that began on a small error would creep up from it.)
        cap = np.where((old > 0) & (seen_in_bin[go] >= MIN_VALUES), ADMIT * old, MAX_ERROR)
        e = np.minimum(err[go], cap)
        new = np.where(old > 0, old + rate[go] * (e - old), e)
        # float16's smallest normal is ~6e-5: an error that small is a perfect profile.
        te[r, hour[go]] = np.maximum(new, 1e-4).astype(np.float16)
    out: F64 = tq
    return out


def ratio(te: F16, tq: F64, ts_next: F64, st0: F64, since: F64, step: F64) -> F64:
    """Per stream ``[B]``: the next value's hour's figure against the stream's recent mean
    of them (1 where unknown: a profile not settled, hours that have seen fewer than
    MIN_VALUES values each, an unseen hour, no mean), within MAX_RATIO. ``st0 [B]``: the
    profile's start; ``since [B]``: when the hours began counting; ``step [B]``: the
    stream's sampling step."""
    settled = (ts_next - st0) >= season.SETTLED_DAYS * season.DAY
    settled &= _values_per_bin(ts_next, since, step) >= MIN_VALUES
    at = _figure(te, ts_next)
    ok = settled & (at > 0) & (tq > 0) & np.isfinite(ts_next)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(at / tq, 1.0 / MAX_RATIO, MAX_RATIO)
    out: F64 = np.where(ok, r, 1.0)
    return out


def _per_day(step: F64) -> F64:
    """Values an hour's bin sees a day, at sampling step ``step`` (at least one)."""
    out: F64 = np.maximum(season.DAY / HOURS / np.maximum(step, 1.0), 1.0)
    return out


def _values_per_bin(ts: F64, since: F64, step: F64) -> F64:
    """About how many values each hour's bin has seen by ``ts``, counted ``since``."""
    out: F64 = np.maximum((ts - since) / season.DAY, 0.0) * _per_day(step)
    return out


def _figure(te: F16, ts: F64) -> F64:
    """Per stream ``[B]``: the error figure at ``ts``, the largest of its hour's and the two
    beside it: an hour holds the day's edge somewhere in it, a day starts a little earlier
    or later from one day to the next, and a value near the edge belongs to the busier side
    (0: none seen)."""
    rows = np.arange(len(ts))
    safe = np.where(np.isfinite(ts), ts, 0.0)
    hour = season.DAY / HOURS
    before, after = te[rows, _hour(safe - hour)], te[rows, _hour(safe + hour)]
    out: F64 = np.maximum(te[rows, _hour(safe)], np.maximum(before, after)).astype(np.float64)
    return out
