"""A per-stream daily profile: what the time of day adds to a stream's level, learnt online.

One LSTM serves every stream; it is told the time of day (:mod:`.covariates`) but cannot
remember, for each of thousands of streams, the shape of that stream's own day: a
business-hours step at 09:00, a nightly batch job at 02:10. Holt-Winters can, with one
seasonal state per step of the day. This module keeps that state for every stream,
indexed by event time rather than by step count, so that a gap does not shift it:

- the day is cut into as many bins as the stream's first sampling step makes in a day
  (one per step, as Holt-Winters has), at most :data:`BINS` (5-minute resolution, 576
  bytes per feature in float16; a scorer may keep fewer, ``--season-bins``, or none) and at
  least 4; a value belongs to the bin nearest its time of day ``τ``;
- a level ``L`` follows the deseasonalised value: ``L += LEVEL_RATE·(x - S(τ) - L)``;
- the profile learns the value's offset from that level, ``S(τ) += r·(x - L - S(τ))``, at a
  rate that gives each bin a weight of about :data:`SEASON_RATE` per day: a plain average
  while the stream is younger than ``1 / SEASON_RATE`` days, so that on the first day the
  profile takes each value whole and the level stays put (a repeating day is then
  forecast exactly from the second day on), and a slow rate after, so that a level shift
  moves ``L`` within a few steps but the profile only a little; after the first day a
  value the detector flags is not learnt into the profile (an incident should not become
  tomorrow's forecast), only into the level, unless its bin is the outlier (a spike the
  first day took whole, which would otherwise flag that time of every day): a bin that
  stands apart from both its neighbours, where the value lies with them, takes the value;
- the forecast ``h`` steps ahead is ``L + S(τ + h·Δt)``, with ``Δt`` the stream's last
  sampling step (at most one bin), once the profile has seen a whole day (NaN before).

**The week**, for a stream sampled coarsely enough that its day leaves room in the profile's
rows (a step of 15 minutes or more, as hourly business metrics and traffic counts are): a
weekday and a Sunday differ, and a daily profile averages them, so a holiday (a Thursday
that looks like a Sunday) is as usual to it as any Sunday. The rows after the day's hold
:data:`WEEK_BINS` hourly offsets ``W(ω)`` by hour of the week ``ω``, and two error
trackers:

- ``W(ω)`` learns what the day leaves, ``x - Lw - S(τ)``, at about :data:`SEASON_RATE` per
  week (a plain average over the first weeks), from flagged values only in the first week,
  against a slow level ``Lw`` (about a week's memory: the fast ``L`` absorbs a weekend
  within hours, and the week would learn only its edges); what one hour of the week
  learns, the same hour of the other six days unlearns by a seventh, so the week holds
  how the days differ and the day what they share; once the week is in use the day
  learns what the week leaves;
- the trackers keep the exponentially weighted absolute one-step error (memory about a
  week) of ``L + S(τ)`` and of ``L + S(τ) + W(ω)``, each made before the value was seen,
  over the values the detector does not flag;
- once the stream is a week old and the week's forecast has the smaller error, forecasts
  are ``L + S + W`` and the level learns ``x - S - W``; before that, or on a stream
  without a week, they are exactly the daily profile's. The week is kept only where it
  has shown it helps (on a stream without one, it is a week's noise).

Rows of one stream's profile (``sp[slot]``, ``nb`` its day's bins)::

    [0, nb)                     S: the day, one bin per sampling step
    [nb, nb + WEEK_BINS)        W: the hour of the week's offset from the day (if room)
    nb + WEEK_BINS              absolute error of the forecast with the week
    nb + WEEK_BINS + 1          absolute error of the forecast without it
    nb + WEEK_BINS + 2          the week's level: x - S - W, about a week's memory

**As a store keeps it** (:class:`Profiles`): the bins in 16 bits, the rest beside them.
The profile is most of a stream's state, and a bin needs no more than float16's three
significant digits (a bin moves by a fifth of a value's offset per day): ``sp`` holds the
bins in float16 in a power-of-two unit per stream and feature (``su``), so a stream
measured in bytes per second keeps as many digits as one in degrees; the unit doubles
(exactly: a power of two) before a value would leave float16's range. The week's last
three rows learn at rates down to one part in a thousand, below float16's resolution:
they live in float32 beside the bins (``sw``), and their rows in ``sp`` stay unused, so
the layout above is unchanged. Changelog frames (format 8) carry the three as they are;
older frames carried the profile in float32 and sensor units (:meth:`Profiles.pack`).
Beside them each stream keeps its sums (``ss``, :data:`STAT_ROWS` rows, float64):
the day's bins' sum and sum of squares and the week's, kept as bins change (a step changes
one bin of the day and eight of the week), so that :func:`deseasoned` need not read a
stream's whole profile at every step. They are derived: :func:`row_stats` rebuilds them
from a profile (a restore does; the changelog does not carry them).

:mod:`.blend` weighs this forecast against the model's, per stream, by how each has done.
The profile describes the sensor, not the model: it survives a model swap and a gap.

Jittered sampling (±30%) leaves some bins unvisited on a given day and costs accuracy
(about 8% of the amplitude on a sine, against 0 for regular sampling: tests); the blend
then leans on the model. The constants were chosen on the generated corpus
(``training.corpus``), not on NAB: docs/quality.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

__all__ = [
    "BINS",
    "DAY",
    "LEVEL_RATE",
    "SEASON_RATE",
    "WEEK",
    "STAT_ROWS",
    "WEEK_BINS",
    "WEEK_STATE",
    "Profiles",
    "deseasoned",
    "bounded_step",
    "forecast",
    "learn",
    "row_stats",
    "week_in_use",
]

F16 = npt.NDArray[np.float16]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
DAY = 86_400.0
BINS = 288
MIN_BINS = 4
LEVEL_RATE = 0.2
SEASON_RATE = 0.2
# An outlier bin's repair (_repairs): how far apart from its neighbours the bin must be,
# in their own distance, and how near the value must be to them, in its distance from it.
REPAIR_APART = 4.0
REPAIR_NEAR = 0.25
SETTLED_DAYS = 2  # before it, the profile is too young to say where a value belongs
MAX_STEP_RATE = 1.0  # a bin moves at most all the way to one value (the first day's)
WEEK = 7 * DAY
WEEK_BINS = 168  # hourly
WEEK_ROWS = WEEK_BINS + 3  # the offsets, the two error trackers and the week's level
# The trackers' memory: about a week of steps, within these rates.
TRACK_RATE_MIN, TRACK_RATE_MAX = 0.002, 0.05
# The profile's sums per stream (row_stats): the day's sum and sum of squares, the week's.
STAT_ROWS = 4
DAY_SUM, DAY_SQUARES, WEEK_SUM, WEEK_SQUARES = range(STAT_ROWS)
# The week's rows kept in float32 beside the bins (Profiles.sw), in the order of the rows.
WEEK_STATE = 3
ERR_WITH, ERR_WITHOUT, WEEK_LEVEL = range(WEEK_STATE)
# The bins' unit keeps every stored magnitude at most 2**UNIT_LIMIT (float16 holds up to
# 65504, about 2**16); a new unit puts the stream's largest at 2**UNIT_TOP, so it can
# grow 32-fold before the unit must double again.
UNIT_LIMIT, UNIT_TOP = 15, 10
_BLOCK = 4096  # streams per block where a whole profile is read (a restore)


def _bin(ts: F64, nb: F64) -> npt.NDArray[np.int64]:
    """The bin nearest to each stream's time of day."""
    nbs = np.maximum(nb, 1.0)
    out: npt.NDArray[np.int64] = np.mod(np.round(np.mod(ts, DAY) / DAY * nbs), nbs).astype(np.int64)
    return out


def _week_bin(ts: F64) -> npt.NDArray[np.int64]:
    """The hour of the week each time falls in."""
    out: npt.NDArray[np.int64] = np.floor(np.mod(ts, WEEK) / 3600.0).astype(np.int64) % WEEK_BINS
    return out


def _has_week(nb: F64, cap: int) -> npt.NDArray[np.bool_]:
    """Streams whose day leaves room for the week in the profile's ``cap`` rows."""
    out: npt.NDArray[np.bool_] = (nb > 0) & (nb + WEEK_ROWS <= cap)
    return out


def _unit_for(peak: F64) -> F32:
    """The power of two that puts ``peak`` at ``2**UNIT_TOP`` (0 where ``peak`` is 0)."""
    with np.errstate(divide="ignore"):
        exp = np.ceil(np.log2(np.where(peak > 0, peak, 1.0))) - UNIT_TOP
    out: F32 = np.where(peak > 0, np.exp2(exp), 0.0).astype(np.float32)
    return out


@dataclasses.dataclass
class Profiles:
    """``B`` streams' profiles as a store keeps them (views: writes go through).

    ``sp [B, rows, F]``: the bins in float16, in the unit ``su [B, F]`` (a power of two;
    0: nothing but zeros stored yet); ``sw [B, WEEK_STATE, F]``: the week's trackers and
    slow level in float32, sensor units (their rows in ``sp`` stay 0); ``ss [B, STAT_ROWS,
    F]``: the bins' sums (:func:`row_stats`)."""

    sp: F16
    su: F32
    sw: F32
    ss: F64

    @property
    def rows(self) -> int:
        """Rows per stream (0: the store keeps no profile)."""
        return int(self.sp.shape[1])

    @classmethod
    def empty(cls, streams: int, rows: int, features: int) -> Profiles:
        """Profiles that have learnt nothing."""
        return cls(
            np.zeros((streams, rows, features), np.float16),
            np.zeros((streams, features), np.float32),
            np.zeros((streams, WEEK_STATE, features), np.float32),
            np.zeros((streams, STAT_ROWS, features)),
        )

    @classmethod
    def pack(cls, sp: F32, sbin: F64) -> Profiles:
        """From profiles in sensor units, rows as the module's docstring lays them out
        (a changelog frame's): the week's last rows into ``sw``, the bins into float16."""
        B, cap, F = sp.shape
        bins = np.array(sp, np.float32)
        sw = np.zeros((B, WEEK_STATE, F), np.float32)
        weekly = _has_week(sbin, cap)
        if weekly.any():
            rows = np.nonzero(weekly)[0]
            at = sbin[rows].astype(np.int64)[:, None] + WEEK_BINS + np.arange(WEEK_STATE)
            sw[rows] = bins[rows[:, None], at]
            bins[rows[:, None], at] = 0.0
        su = np.zeros((B, F), np.float32)
        sp16 = np.empty((B, cap, F), np.float16)
        for lo in range(0, B, _BLOCK):  # as row_stats, a block of streams at a time
            sl = slice(lo, min(lo + _BLOCK, B))
            su[sl] = _unit_for(np.fmax.reduce(np.abs(bins[sl]), axis=1, initial=0.0))
            unit = su[sl, None, :]
            sp16[sl] = np.divide(bins[sl], unit, out=bins[sl], where=unit > 0)
        out = cls(sp16, su, sw, np.zeros((B, STAT_ROWS, F)))
        out.ss = row_stats(out, sbin)
        return out

    def unpack(self, sbin: F64) -> F32:
        """``[B, rows, F]`` in sensor units, laid out as the module's docstring says (as
        changelog frames of format 7 and earlier carried a profile)."""
        out: F32 = self.sp.astype(np.float32) * self.su[:, None, :]
        weekly = _has_week(sbin, self.rows)
        if weekly.any():
            rows = np.nonzero(weekly)[0]
            at = sbin[rows].astype(np.int64)[:, None] + WEEK_BINS + np.arange(WEEK_STATE)
            out[rows[:, None], at] = self.sw[rows]
        return out

    def get(self, rows: npt.NDArray[np.int64], at: npt.NDArray[np.int64]) -> F64:
        """``[len(rows), F]``: bin ``at[i]`` of stream ``rows[i]``, in sensor units (or
        ``[n, k, F]`` for ``rows [n, 1]`` and ``at [n, k]``: k bins of each stream)."""
        out: F64 = self.sp[rows, at].astype(np.float64) * self.su[rows]
        return out

    def put(
        self, rows: npt.NDArray[np.int64], at: npt.NDArray[np.int64], value: F64, first: int
    ) -> None:
        """Bin ``at[i]`` of stream ``rows[i]`` (distinct streams) becomes ``value[i]`` as
        float16 holds it, and the sums ``ss[rows, first]``, ``ss[rows, first + 1]`` follow
        the change of the stored values.

        1. Where a finite value would leave the range its unit gives (or the unit is not
           set yet), the stream's unit becomes the one that puts the larger of the value
           and the stream's largest bin at ``2**UNIT_TOP``, and its bins are re-expressed
           in it (a power-of-two ratio: exact for every bin above float16's smallest
           normal, 2**-24 of the largest).
        2. The value is stored in the unit; the sums take the stored value's change."""
        unit = self.su[rows].astype(np.float64)
        old = self.sp[rows, at].astype(np.float64) * unit
        # 1. A unit that holds the value.
        grow = np.abs(value) > unit * 2.0**UNIT_LIMIT
        if grow.any():
            grow &= np.isfinite(value)
            i, f = np.nonzero(grow)
            r = rows[i]
            kept = self.sp[r, :, f].astype(np.float64) * unit[i, f, None]  # [k, rows]
            peak = np.maximum(np.abs(np.nan_to_num(kept)).max(axis=1), np.abs(value[i, f]))
            new_unit = _unit_for(peak)
            self.sp[r, :, f] = (kept / new_unit[:, None].astype(np.float64)).astype(np.float16)
            self.su[r, f] = new_unit
            unit = self.su[rows].astype(np.float64)
        # 2. Stored in it (where no unit is set, the value is 0, or not finite).
        self.sp[rows, at] = np.divide(value, unit, out=np.array(value), where=unit > 0)
        new = self.sp[rows, at].astype(np.float64) * unit
        self.ss[rows, first] += new - old
        self.ss[rows, first + 1] += new * new - old * old


def week_in_use(p: Profiles, sbin: F64, st0: F64, ts: F64) -> npt.NDArray[np.bool_]:
    """``[B]``: the stream's forecasts include the week (a week old, and the week's
    one-step forecasts have had the smaller absolute error, in every feature on average)."""
    ok = _has_week(sbin, p.rows) & (ts - st0 >= WEEK)
    out = np.zeros(len(sbin), np.bool_)
    if not ok.any():
        return out
    rows = np.nonzero(ok)[0]
    with_week = p.sw[rows, ERR_WITH].astype(np.float64).mean(axis=1)
    without = p.sw[rows, ERR_WITHOUT].astype(np.float64).mean(axis=1)
    out[rows] = with_week < without
    return out


def row_stats(p: Profiles, sbin: F64) -> F64:
    """``[B, STAT_ROWS, F]``: each stream's profile sums (the day's bins ``[0, nb)`` and,
    where the stream has a week, its :data:`WEEK_BINS` bins), computed afresh."""
    B, cap, F = p.sp.shape
    out = np.zeros((B, STAT_ROWS, F))
    if cap == 0 or B == 0:
        return out
    # A block of streams at a time: a restore's hundred thousand profiles in float64 at
    # once would be a quarter of a gigabyte of fresh pages, slower than the arithmetic.
    for lo in range(0, B, _BLOCK):
        sl = slice(lo, min(lo + _BLOCK, B))
        nb = np.clip(sbin[sl], 0, cap).astype(np.int64)
        prof = p.sp[sl].astype(np.float64) * p.su[sl, None, :]
        day = np.where(np.arange(cap)[None, :, None] < nb[:, None, None], prof, 0.0)
        out[sl, DAY_SUM] = day.sum(axis=1)
        out[sl, DAY_SQUARES] = (day * day).sum(axis=1)
        weekly = _has_week(sbin[sl], cap)
        if weekly.any():
            rows = np.nonzero(weekly)[0]
            pick = nb[rows, None] + np.arange(WEEK_BINS)[None, :]
            week = prof[rows[:, None], pick]  # [W, WEEK_BINS, F]
            out[lo + rows, WEEK_SUM] = week.sum(axis=1)
            out[lo + rows, WEEK_SQUARES] = (week * week).sum(axis=1)
    return out


def learn(
    p: Profiles,
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
    The profiles' sums (``p.ss``) follow every bin that changes.

    1. A stream's first value starts its level; its first positive step fixes its bins
       (and their unit, from the value's size).
    2. Where the stream has a week: the trackers learn the absolute errors of the
       forecasts with and without it, made before this value.
    3. The value's bin learns ``x - L - S(τ)`` at the day's rate (``- W(ω)`` too where
       the week is in use); an anomaly after the first day, only where the bin is an
       outlier of the profile that the value lies with the bin's neighbours on: then
       whole (:func:`_repairs`).
    4. Where the stream has a week: its slow level ``Lw`` moves towards ``x - S(τ) - W(ω)``,
       and its hour learns ``x - Lw - S(τ) - W(ω)`` (with the updated day) at the week's
       rate, the same hour of the other days a seventh of it the other way.
    5. The level moves towards ``x - S(τ)`` (with the updated profile; ``- W(ω)`` too
       where the week is in use) by ``LEVEL_RATE``.
    """
    cap = p.rows  # the store's bins per stream (0: no profile)
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
        # The bins' unit from the value's size (offsets from the level are seldom 32
        # times larger), so that a young profile rarely has to re-express its bins.
        unset = begin[:, None] & (p.su == 0)
        p.su[...] = np.where(unset, _unit_for(np.abs(np.nan_to_num(x))), p.su)
    go = stepped & (sbin > 0)
    if not go.any():
        return
    rows = np.nonzero(go)[0]
    xs, t, step, nb = x[rows], ts[rows], dt[rows], sbin[rows]
    at = _bin(t, nb)
    bins = p.get(rows, at)
    weekly = _has_week(nb, cap)
    wrows, wat = rows[weekly], nb[weekly].astype(np.int64) + _week_bin(t[weekly])
    week = p.get(wrows, wat)
    in_use = week_in_use(p, sbin, st0, ts)[rows]
    # 2. The week's trackers: the one-step errors of both forecasts, made before x. A
    #    fast level holds the offset of the hour just seen, so both are judged from
    #    there: the week's forecast adds how the next hour's offset differs from it.
    if weekly.any():
        base = nb[weekly].astype(np.int64)
        prev_week = p.get(wrows, base + _week_bin(prev_ts[wrows]))
        without = xs[weekly] - slev[wrows] - bins[weekly]
        without -= np.where(in_use[weekly, None], prev_week, 0.0)
        r = np.clip(step[weekly] / WEEK, TRACK_RATE_MIN, TRACK_RATE_MAX)[:, None]
        if usual is not None:
            # An incident misleads both forecasts and says nothing about which is better.
            r = np.where(usual[wrows, None], r, 0.0)
        errors = (np.abs(without - (week - prev_week)), np.abs(without))
        for row, err in zip((ERR_WITH, ERR_WITHOUT), errors, strict=True):
            cur = p.sw[wrows, row].astype(np.float64)
            p.sw[wrows, row] = cur + r * (np.nan_to_num(err) - cur)
    # 3. Profile: a plain average over the first days, then SEASON_RATE per day. (Only
    #    the value's bin is read and written: the profile is most of a stream's state.)
    days = np.floor(np.maximum(t - st0[rows], 0.0) / DAY)
    per_day = np.maximum(SEASON_RATE, 1.0 / (1.0 + days))
    rate = np.minimum(MAX_STEP_RATE, per_day * step * nb / DAY)
    # Where the week is in use, the day learns what the week leaves (else it would swing
    # towards every weekend and back, faster than the week learns).
    used = np.zeros((len(rows), x.shape[1]))
    if in_use.any():
        used[weekly] = np.where(in_use[weekly, None], week, 0.0)
    target = xs - slev[rows] - used
    per = np.repeat(rate[:, None], x.shape[1], axis=1)  # [R, F]
    if usual is not None:
        # From the second day on (the first day's values are all the profile has), and
        # for an outlier bin, the value whole (_repairs).
        odd = ~usual[rows] & (days >= 1)
        per[odd] = 0.0
        o = np.flatnonzero(odd)
        if len(o):
            fix = _repairs(p, rows[o], at[o], nb[o], target[o], bins[o])
            per[o] = np.where(fix, 1.0, per[o])
    bins += per * (target - bins)
    p.put(rows, at, bins, DAY_SUM)
    # 4. The week: a plain average over the first weeks, then SEASON_RATE per week.
    if weekly.any():
        weeks = np.floor(np.maximum(t[weekly] - st0[wrows], 0.0) / WEEK)
        per_week = np.maximum(SEASON_RATE, 1.0 / (1.0 + weeks))
        wrate = np.minimum(MAX_STEP_RATE, per_week * step[weekly] * WEEK_BINS / WEEK)
        if usual is not None:
            wrate = np.where(usual[wrows] | (weeks < 1), wrate, 0.0)
        # Against a slow level (about a week's memory, a plain mean at first): the fast
        # one absorbs a weekend within hours, and the week would learn only its edges.
        slow = p.sw[wrows, WEEK_LEVEL].astype(np.float64)
        age = np.maximum(t[weekly] - st0[wrows], step[weekly])
        lrate = np.maximum(step[weekly] / WEEK, step[weekly] / age)[:, None]
        slow += np.minimum(lrate, 1.0) * (xs[weekly] - bins[weekly] - week - slow)
        p.sw[wrows, WEEK_LEVEL] = slow
        delta = wrate[:, None] * (xs[weekly] - slow - bins[weekly] - week)
        # The week holds how the days differ, not what they share (the day's): what one
        # hour of the week learns, the same hour of the other six days unlearn by a
        # seventh, so the hour's offsets keep a zero mean and the day need not chase them.
        hour = (wat - nb[weekly].astype(np.int64)) % 24
        for d in range(7):
            same = nb[weekly].astype(np.int64) + d * 24 + hour
            p.put(wrows, same, p.get(wrows, same) - delta / 7.0, WEEK_SUM)
        p.put(wrows, wat, p.get(wrows, wat) + delta, WEEK_SUM)
        week = p.get(wrows, wat)
        used[weekly] = np.where(in_use[weekly, None], week, 0.0)
    # 5. Level, of the deseasonalised value.
    slev[rows] += LEVEL_RATE * (xs - bins - used - slev[rows])


def _repairs(
    p: Profiles,
    rows: npt.NDArray[np.int64],
    at: npt.NDArray[np.int64],
    nb: F64,
    target: F64,
    bins: F64,
) -> npt.NDArray[np.bool_]:
    """Where a value's bin is an outlier of the profile that the value should replace
    ``[R, F]``, per feature (another feature of the same value may be the incident that
    flagged it): ``target [R, F]`` is the value's offset from the level, ``bins [R, F]``
    its bin's (at ``at``), for the streams ``rows``.

    On the first day each bin takes its value whole, a spike or a dropout too; from the
    second day on, a value the detector flags is not learnt, and a bin holding a spike
    makes every later value at that time of day look like an incident: it would never
    heal, and alarm daily (a 9 among 33s learnt at 18:40 on a flat stream's first day
    raised a `sustained` alarm at 18:40 on the days after). Such a bin stands alone: its
    neighbours (the bins either side) agree with each other and with the value, the bin
    with neither. So where the bin is :data:`REPAIR_APART` times further from its
    neighbours' mean than they are from each other (an edge of a step is not: one
    neighbour is on each side of it) and than the day's bins are from their mean (their
    standard deviation: a bin off by its day's noise is not an outlier, and a value
    flagged for another reason, in a lasting incident's wake, would take it whole), and
    the value is at most :data:`REPAIR_NEAR` times as far from that mean as from the bin
    (a holiday or an outage moves the value away from the neighbours too), the value
    replaces the bin.
    """
    n = nb.astype(np.int64)
    before = p.get(rows, (at - 1) % n)
    after = p.get(rows, (at + 1) % n)
    mid = 0.5 * (before + after)
    _, day_var = _day_moments(p.ss[rows], nb)
    off = np.abs(bins - mid)
    alone = (off >= REPAIR_APART * np.abs(after - before)) & (
        off >= REPAIR_APART * np.sqrt(day_var)
    )
    near = np.abs(target - mid) <= REPAIR_NEAR * np.abs(target - bins)
    out: npt.NDArray[np.bool_] = alone & near
    return out


def _day_moments(sums: F64, nb: F64) -> tuple[F64, F64]:
    """The mean and variance ``[R, F]`` of each stream's day bins, from its profile's sums
    (``sums [R, STAT_ROWS, F]``, ``nb [R]`` bins): E[S²] - mean² in float64 keeps far more
    digits than the float32 bins hold."""
    mean: F64 = sums[:, DAY_SUM] / nb[:, None]
    var: F64 = np.maximum(sums[:, DAY_SQUARES] / nb[:, None] - mean * mean, 0.0)
    return mean, var


def bounded_step(ts: F64, prev_ts: F64, sbin: F64) -> F64:
    """The time since each stream's previous value ``[B]``, at most one of its profile's
    bins (a day for a stream without one yet): after a gap, the last step says nothing
    about the next one, and one value stands for one step, not for the whole gap."""
    out: F64 = np.minimum(ts - prev_ts, DAY / np.maximum(sbin, 1.0))
    return out


def forecast(p: Profiles, sbin: F64, slev: F64, st0: F64, ts: F64, step: F64, horizon: int) -> F64:
    """``[B, horizon, F]``: ``L + S(ts + h·step)`` for h = 1..horizon, ``+ W`` of that
    hour of the week where the week is in use (NaN where a stream's profile has not seen
    a whole day yet, or its step is unknown)."""
    B, cap, F = p.sp.shape
    out = np.full((B, horizon, F), np.nan)
    if cap == 0:
        return out
    ok = (sbin > 0) & (ts - st0 >= DAY) & np.isfinite(step) & (step > 0)
    ok &= np.isfinite(slev).all(axis=1)
    if not ok.any():
        return out
    rows = np.nonzero(ok)[0]
    nb, t, level = sbin[rows], ts[rows], slev[rows]
    weekly = week_in_use(p, sbin, st0, ts)[rows]
    # Every step ahead at once ([n, horizon] times and bins): per step, the bins and the
    # reads cost a fixed ~10 µs each, most of this function at small batches.
    ahead = t[:, None] + np.arange(1, horizon + 1) * step[rows][:, None]
    out[rows] = level[:, None, :] + p.get(rows[:, None], _bin(ahead, nb[:, None]))
    if weekly.any():
        wr = rows[weekly]
        at = nb[weekly].astype(np.int64)[:, None] + _week_bin(ahead[weekly])
        out[wr] += p.get(wr[:, None], at)
    return out


def deseasoned(p: Profiles, sbin: F64, st0: F64, ts: F64) -> tuple[F64, F64]:
    """``(offset, spread) [B, F]``: what the time of day ``ts`` adds to the stream's mean,
    ``S(τ) - mean(S)``, and the variance the profile accounts for, ``var(S)`` over the
    day's bins; NaN until the profile has seen :data:`SETTLED_DAYS` whole days (one day's
    profile is that day's noise as much as its shape). The stream's long-run
    mean plus ``offset`` is where a value is expected at that time of day, and its
    long-run variance less ``spread`` how far values stray from that when nothing
    happens: a reference that a drift does not drag along, unlike the level ``L``.
    From the profile's sums (``p.ss``, kept by :func:`learn`)."""
    B, cap, F = p.sp.shape
    offset = np.full((B, F), np.nan)
    spread = np.full((B, F), np.nan)
    if cap == 0:
        return offset, spread
    ok = (sbin > 0) & (ts - st0 >= SETTLED_DAYS * DAY)
    if not ok.any():
        return offset, spread
    rows = np.nonzero(ok)[0]
    nb = sbin[rows]
    # From the sums the profile keeps beside it (one bin of the day changes per step):
    # reading every settled stream's whole profile at every step cost more than the rest
    # of this function.
    sums = p.ss[rows]
    mean, var = _day_moments(sums, nb)
    now = p.get(rows, _bin(ts[rows], nb))
    weekly = week_in_use(p, sbin, st0, ts)[rows]
    if weekly.any():
        # The hour of the week's offset, and the variance the week adds to the day's.
        wr, base = rows[weekly], nb[weekly].astype(np.int64)
        now[weekly] += p.get(wr, base + _week_bin(ts[wr]))
        wmean = sums[weekly, WEEK_SUM] / WEEK_BINS
        var[weekly] += np.maximum(sums[weekly, WEEK_SQUARES] / WEEK_BINS - wmean * wmean, 0.0)
    offset[rows] = now - mean
    spread[rows] = var
    return offset, spread
