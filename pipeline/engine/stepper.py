"""One scoring step for a batch of streams: the heart shared by the scorer and training evaluation.

For each stream in the batch, with value ``x`` arriving (all vectorised over streams):

1. score ``x`` against the forecast made at the previous step (if any; after a gap of
   hours, moved along the stream's day by the gap), in units of the
   scale the model predicted with it (a model without a scale head: the stream's spread
   before this step), and against the stream's level and range
   (:mod:`pipeline.engine.anomaly`); adapt the stream's interval multiplier to whether
   ``x`` fell inside its t+1 interval (:mod:`pipeline.engine.interval`);
2. update the online normaliser with ``x`` (:mod:`pipeline.engine.normalise`);
3. run one LSTM step on the normalised input with the stream's (h, c);
4. turn the new forecast and its scale back into sensor units with the step's statistics,
   the one-step forecast's change from ``x`` scaled by the stream's gain
   (:mod:`pipeline.engine.gain`);
5. given event times, mix the stream's own daily profile (:mod:`pipeline.engine.season`,
   which learnt ``x`` in step 1 unless ``x`` was flagged) into the forecast and its scale,
   by the weight its one-step errors earned against the model's
   (:mod:`pipeline.engine.blend`), at every horizon; the profile's share of the scale is
   its recent error at the next value's hour of day (:mod:`pipeline.engine.dayspread`,
   which learnt ``x``'s error in step 1 unless ``x`` was flagged).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from pipeline.engine import blend, dayspread, finite, gain, season
from pipeline.engine.anomaly import (
    AnomalyParams,
    calibrate_channels,
    day_step,
    departure_step,
    error_of,
    excess_step,
    habit_step,
    level_surprise,
    novelty,
    range_surprise,
    score_of,
    score_step,
    stuck_level,
    stuck_onset,
    stuck_surprise,
    sustained_onset,
    sustained_step,
)
from pipeline.engine.inference import StepSession
from pipeline.engine.interval import Band, adapt, scale_per_mae
from pipeline.engine.normalise import NormaliserParams, floor_of, std_of, update
from pipeline.engine.state import StepState

__all__ = ["REASONS", "Stepped", "advance", "learn_residual", "rebuild"]

# Why a stream scored what it scored: the channel with the largest surprise
# (pipeline.engine.anomaly), by index.
REASONS = ("forecast", "level", "range", "stuck", "sustained", "drift", "day")

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Stepped:
    """Per stream, what one step found (NaN where the stream had no forecast yet)."""

    score: F64  # [B] anomaly score in [0, 1)
    error: F64  # [B] the normalised forecast error
    reason: npt.NDArray[np.int64]  # [B] index into REASONS: the channel that scored highest
    expected_lo: F64  # [B, F] the t+1 interval the value was expected in (NaN: none)
    expected_hi: F64  # [B, F]
    # How good the forecast of this value was, comparable across models (live evidence):
    abs_error: F64  # [B] mean |x - forecast| over features, in the stream's spread
    nll: F64  # [B] its negative log density under the interval's distribution (NaN: none)
    inputs: F64  # [B, F] the normalised values the network saw (input drift, drift.py)
    # [B, F] each feature's share of what the reason's channel measured (sums to 1; a
    # single-feature stream: 1; NaN where it did not alarm): which sensor moved.
    share: F64


# The share of a stream's variance its daily profile must explain before the level channel
# measures against the time of day (``AnomalyParams.season_level``; docs/quality.md).
SEASONAL_SHARE = 0.6
# The time a value stands for where the stream's times are unknown (the level channel's
# habit decays by it): the 5-minute spacing the channels were designed at.
HABIT_STEP_S = 300.0
# The least share of a stream's variance the deviation's spread is taken to be (its
# standard deviation at least a tenth of the stream's), as before it was learnt.
RESIDUAL_FLOOR = 0.1
RESIDUAL_ADMIT = 3.0  # the farthest value it learns from, in its own spreads
# The replay of a model swap (:func:`rebuild`) starts each stream's LSTM state from zero;
# the model's calibration on the stream (interval multiplier, gain, error statistics)
# learns from the replayed forecasts after this many steps (a quarter of the default
# replay ring of 64: the first forecasts of a state rebuilt from zero are no guide).
REPLAY_WARMUP = 16


def learn_residual(
    norm: NormaliserParams,
    rv: F64,
    st0: F64,
    sbin: F64,
    x: F64,
    centre: F64,
    std: F64,
    ts: F64,
    learn: npt.NDArray[np.bool_],
) -> F64:
    """``rv [B, F]`` after ``x``: the EW mean of ``min(r², 1)``, ``r = (x - centre) / std``
    the value's residual about where the profile expects it at this time of day (NaN:
    the profile has not settled) in the stream's long-run spread, over ``learn`` (values
    that are no incident's). Learnt wherever the profile has settled, used where it
    explains most of the variance: a stream near that line would otherwise use what a few
    values taught it. A plain average from the day the profile settled (its values
    counted by time, as the profile's bins count them), then the normaliser's memory.
    One value counts at most one long-run spread: an incident the detector does not flag
    should not widen it much."""
    days = np.maximum((ts - st0) / season.DAY - season.SETTLED_DAYS, 0.0)
    rate = np.maximum(1.0 / (days * sbin + 1.0), norm.alpha)[:, None]
    with np.errstate(invalid="ignore"):
        r2 = np.minimum(((x - centre) / std) ** 2, 1.0)
    # Nor a value beyond three of the spreads it measures: a slow drift that no channel
    # has flagged yet would otherwise widen the spread it is measured in as it grows.
    within = (rv <= 0) | (r2 <= RESIDUAL_ADMIT**2 * np.maximum(rv, RESIDUAL_FLOOR**2))
    ok = learn[:, None] & np.isfinite(r2) & within
    return np.where(ok, rv + rate * (finite.nan_to_num(r2) - rv), rv)


def advance(
    session: StepSession,
    norm: NormaliserParams,
    anom: AnomalyParams,
    st: StepState,
    x: F64,
    cov: F32 | None = None,
    band: Band | None = None,
    ts: F64 | None = None,
    prev_ts: F64 | None = None,
) -> Stepped:
    """Advance ``st`` in place by one event per stream.

    ``cov [B, C]`` are the event-time covariates of the model (:mod:`.covariates`), if any;
    ``band`` the interval rule whose multiplier ``st.qlog`` adapts (None: no intervals);
    ``ts [B]`` the events' times and ``prev_ts [B]`` each stream's previous event time
    (-inf: none): without them the daily profile is neither learnt nor used.
    """
    if ts is not None and prev_ts is None:
        prev_ts = np.full(len(x), -np.inf)
    # 1. Score against the previous forecast, in the scale predicted with it (or the
    #    spread known before this value), and against the stream's level, range and
    #    repeat rate (pipeline.engine.anomaly).
    std_prev = std_of(norm, st.mean, st.var)
    fc1, fs1 = st.fc[:, 0, :], st.fs[:, 0, :]
    scaled = st.has_fc & np.isfinite(fs1).all(axis=1)
    e_scale = np.where(scaled[:, None], fs1, std_prev) if anom.use_scale else std_prev
    expected = np.full((2, *x.shape), np.nan)
    nll = np.full(len(x), np.nan)
    z_level = np.where(st.n >= anom.min_history, error_of(x, st.mean, std_prev), np.nan)
    # Where the value is expected, and how far values stray from it when nothing happens:
    # the stream's long-run mean and spread, or, where its profile knows the day (two
    # days old, the day most of the variance), the long-run mean at this time of day and
    # week in the spread the profile leaves. (For season_level never less than the
    # profile's own recent one-step error: a young profile holds its first days' noise,
    # and so claims too much. The sustained channel learns its own spread instead: that
    # error grows within the very incident it should see, and would blind it.)
    centre, bare = st.mean, std_prev
    known_day = np.zeros(len(x), np.bool_)
    # Where the profile expects the value (NaN: not settled), whether or not it is used.
    at_day = np.full_like(x, np.nan)
    if ts is not None and prev_ts is not None and (anom.season_level or anom.sustained_rate > 0):
        offset, spread = season.deseasoned(st.profiles(), st.sbin, st.st0, ts)
        known = st.bm[:, -1] >= blend.MIN_EVIDENCE
        day_bare = np.sqrt(np.maximum(std_prev**2 - spread, (RESIDUAL_FLOOR * std_prev) ** 2))
        # Only where the day explains most of the stream's variance: elsewhere the
        # profile is mostly its days' noise, and the variance it claims is not the day's.
        seasonal = np.mean(spread, axis=1) >= SEASONAL_SHARE * np.mean(std_prev**2, axis=1)
        known_day = known & seasonal & np.isfinite(offset).all(axis=1)
        at_day = st.mean + offset
        centre = np.where(known_day[:, None], at_day, st.mean)
        # The residual's own spread once learnt (st.rv): the difference of two variances
        # above is a small one of two large ones where the day is most of the variance,
        # and swung 4-fold with a slow level swing (docs/quality.md, session 26).
        share = np.sqrt(np.maximum(st.rv, RESIDUAL_FLOOR**2)) * std_prev
        day_bare = np.where(st.rv > 0, share, day_bare)
        bare = np.where(known_day[:, None], day_bare, std_prev)
        if anom.season_level:
            mae = st.bm[:, len(blend.WEIGHTS) - 1, None] * std_prev
            floor = np.maximum(1.25 * mae, 0.1 * std_prev)
            resid = np.where(
                known_day[:, None], np.sqrt(np.maximum(std_prev**2 - spread, floor**2)), std_prev
            )
            # Two values in a row on the same side: a contextual anomaly or a drift lasts,
            # while one odd value is the forecast channel's to judge.
            d_now = (x - centre) / resid
            off_prev, _ = season.deseasoned(st.profiles(), st.sbin, st.st0, prev_ts)
            d_prev = (st.last_x - st.mean - off_prev) / resid
            both = np.where(
                np.sign(d_now) == np.sign(d_prev), np.minimum(np.abs(d_now), np.abs(d_prev)), 0.0
            )
            z_season = np.sqrt(np.mean(both * both, axis=1))
            use = known_day & np.isfinite(z_season) & np.isfinite(z_level)
            z_level = np.where(use, z_season, z_level)
        if anom.gap_shift > 0:
            # After a gap the forecast made at the previous value, for one step later, is
            # hours stale: where the day is known, it moves along the profile by the gap.
            fc1 = _after_gap(anom, st, fc1, known_day, ts, prev_ts)
    # (After the gap's move: the forecast the value is judged against is final here.)
    e = error_of(x, fc1, e_scale)
    abs_error = np.where(st.has_fc, np.mean(np.abs(x - fc1) / std_prev, axis=1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = np.mean((x - centre) / bare, axis=1)
    sure = (st.n >= anom.min_history) & np.isfinite(deviation)
    # A day unlike the stream's recent days (a holiday): in place on its state, by time.
    timed = ts is not None and prev_ts is not None
    # The time since each stream's previous value (at most one profile bin): the sustained
    # channel's memory is counted in time where it is known.
    dt = (
        season.bounded_step(ts, prev_ts, st.sbin)
        if ts is not None and prev_ts is not None
        else None
    )
    sustained, pm, pv = sustained_step(anom, deviation, st.n, st.pm, st.pv, sure & st.has_fc, dt)
    none = np.zeros(len(x))
    day = day_step(
        anom, deviation, sure & st.has_fc & timed,
        ts if ts is not None else none,
        dt if dt is not None else none,
        st.yq, st.yrec, st.yb, st.yp, st.yblk, st.yt0, st.yon,
    )  # fmt: skip
    # A departure from the stream's recent course (a drift): in place on its block state.
    present = np.asarray(np.isfinite(x).all(axis=1), np.bool_)
    dep = departure_step(
        anom, x, present, st.dk, st.dn, st.dq, st.dl, st.ds, st.dref, st.dmax, st.db
    )
    raw, en, es, emu, evar, tu, tb = _error_step(
        anom, e, st.en, st.es, st.emu, st.evar, st.tu, st.tb
    )
    repeated = np.all(x == st.last_x, axis=1)
    # A frozen sensor's return: its forecast followed the frozen value, in the narrow
    # scale of a constant input, so the jump back is no forecast error (stuck_return).
    returned = (
        ~repeated
        & (score_of(stuck_level(anom, st.n, st.run, st.rep_p)) >= anom.threshold)
        & bool(anom.stuck_return)
    )
    raw = np.where(returned, 0.0, raw)
    if band is not None and scaled.any():
        expected = np.stack(band.bounds(fc1[:, None, :], st.fs[:, :1], st.qlog))[:, :, 0]
        if anom.use_scale and anom.distribution_surprise:
            # The forecast surprise straight from the predictive distribution.
            tail = band.surprise(x, fc1, np.where(scaled[:, None], fs1, 1.0), st.qlog)
            raw = np.where(scaled, tail, raw)
        nll = np.where(
            scaled, band.nll(x, fc1, np.where(scaled[:, None], fs1, 1.0), st.qlog, std_prev), np.nan
        )
        st.qlog = _adapt_interval(band, x, fc1, fs1, scaled, st.qlog)
    # The first errors of a stream (its normaliser barely started) are no guide to later ones.
    learn = st.has_fc & (st.n >= anom.min_history) & ~returned
    level = level_surprise(anom, z_level)
    forecast_cal, level_cal, trate = calibrate_channels(anom, raw, level, st.en, st.trate)
    # A deviation no larger, on its side, than the third largest the stream has shown
    # lately is its habit, not a level anomaly (anomaly.habit_step).
    step_s = dt if dt is not None else np.full(len(x), HABIT_STEP_S)
    decay = np.exp(-step_s / anom.level_habit_span_s)
    habit, st.hm = habit_step(anom, x - st.mean, st.hm, decay, learn)
    level_cal = np.where(habit, 0.0, level_cal)
    gauss = np.maximum(forecast_cal, level_cal)
    # The gain of this stream's forecasts (pipeline.engine.gain) learns from the change
    # that just happened against the change the model predicted for it.
    st.gxy, st.gxx, st.gn = gain.learn(
        st.gxy, st.gxx, st.gn, st.dlt, x - st.last_x, std_prev,
        st.has_fc & np.isfinite(st.last_x).all(axis=1),
    )  # fmt: skip
    # The blend learns which of the model's and the profile's last forecasts did better.
    st.bm = blend.learn(st.bm, x, st.mfc, st.sfc, std_prev, st.has_fc)
    sfc_prev = st.sfc  # (step 5 replaces it)
    stuck, st.run, st.rep_p = stuck_surprise(anom, repeated, st.n, st.run, st.rep_p)
    stuck_novel, onset = stuck_onset(anom, stuck, st.rep_p)
    lo_before, hi_before = st.lo, st.hi
    beyond, st.lo, st.hi, st.rec = range_surprise(
        anom, x, st.n, st.lo, st.hi, st.mean, st.rec, std_prev, (fc1, expected[0], expected[1])
    )
    st.last_x = x.copy()
    has = st.has_fc
    # The reason: the channel with the largest surprise (forecast and level as calibrated).
    reason = np.argmax(np.stack([forecast_cal, level_cal, beyond, stuck]), axis=0)
    # A sustained deviation is not tail-calibrated with the others: its spread is its own.
    # It is the reason where its onset (what it adds to the novelty rule) tops the rest.
    sustained_novel, _, lasting = sustained_onset(anom, sustained, st.pq)
    rest = np.max(np.stack([gauss, beyond, stuck_novel]), axis=0)
    reason = np.where(sustained_novel > rest, REASONS.index("sustained"), reason)
    # So is a departure, which counts once per incident like a sustained deviation.
    rest = np.maximum(rest, sustained_novel)
    reason = np.where(dep.surprise > rest, REASONS.index("drift"), reason)
    # And a day unlike the stream's recent days.
    rest = np.maximum(rest, dep.surprise)
    reason = np.where(day.surprise > rest, REASONS.index("day"), reason)
    others = np.maximum(
        np.maximum(np.maximum(stuck_novel, dep.surprise), np.maximum(beyond, sustained_novel)),
        day.surprise,
    )
    surprise, peak = novelty(anom, np.maximum(gauss, others), st.peak, st.pq)
    # A sensor that just froze alarms, even within another incident's decaying peak.
    surprise = np.where(onset, np.maximum(surprise, stuck), surprise)
    st.peak = np.where(has, peak, st.peak)
    st.en = np.where(learn, en, st.en)
    st.es = np.where(learn, es, st.es)
    st.emu = np.where(learn, emu, st.emu)
    st.evar = np.where(learn, evar, st.evar)
    st.trate = np.where(learn, trate, st.trate)
    st.tu = np.where(learn, tu, st.tu)
    st.tb = np.where(learn, tb, st.tb)
    st.pm, st.pv = pm, pv
    score = np.where(has, score_of(surprise), np.nan)
    alarmed = finite.nan_to_num(score) >= anom.threshold
    # Reported on anomalies only, so measured there only.
    share = _shares(
        reason,
        alarmed,
        x,
        fc1,
        e_scale,
        st.mean,
        std_prev,
        lo_before,
        hi_before,
        centre,
        bare,
        dep.ratio,
    )
    # Quiet steps: since the stream last alarmed, or the sustained channel was at the
    # threshold (pipeline.engine.anomaly.sustained_onset).
    frozen = score_of(stuck) >= anom.threshold
    # (A frozen sensor's incident lasts while it stays frozen, with stuck_lasts.)
    incident = lasting | alarmed | (frozen & bool(anom.stuck_lasts))
    st.pq = np.where(has, np.where(incident, 0.0, st.pq + 1.0), st.pq)
    # The departure channel's course does not run through a frozen sensor's readings,
    # which are not the course: the block this value belongs to (the one that just
    # ended, if one did) is the stream's last such.
    st.dl = np.where(has & frozen, st.dn - (st.dk == 0), st.dl)
    e = np.where(has, e, np.nan)
    # The profile learns this value, unless it is an anomaly: a normal day should not
    # learn an incident's shape (the level still follows it).
    if ts is not None and prev_ts is not None:
        # (A sustained deviation alarms once, and lasts: none of it is usual. Nor is a day
        # unlike the others, for a day from its onset; after that its values are learnt,
        # so that a stream whose days change shape for good re-learns them.)
        usual = ~alarmed & ~lasting & ~day.fresh
        st.rv = learn_residual(norm, st.rv, st.st0, st.sbin, x, at_day, std_prev, ts, usual)
        season.learn(st.profiles(), st.sbin, st.slev, st.st0, x, ts, prev_ts, usual)
        if anom.hour_spread:
            # The profile's error at this value, as the blend measured it (its w = 1 mix),
            # by hour of day (pipeline.engine.dayspread).
            with np.errstate(invalid="ignore"):
                perr = np.mean(np.abs(x - sfc_prev) / std_prev, axis=1)
            step = season.bounded_step(ts, prev_ts, st.sbin)
            seen = has & np.isfinite(perr)
            since = np.maximum(st.st0, st.tt)
            st.tq = dayspread.learn(st.te, st.tq, perr, ts, since, step, usual, seen)
    # 2. Normaliser.
    st.n, st.mean, st.var = update(norm, st.n, st.mean, st.var, x)
    std = std_of(norm, st.mean, st.var)
    z = np.clip((x - st.mean) / std, -norm.clip, norm.clip).astype(np.float32)
    inputs = z.astype(np.float64)
    # 3. One LSTM step (the covariates go in beside the normalised value).
    if cov is not None and cov.shape[1]:
        z = np.concatenate([z, cov], axis=1)
    f, s, h, c = session.step(z, st.h, st.c)
    if anom.stuck_holds:
        # A frozen sensor's readings are not the network's memory (stuck_holds).
        hold = frozen[None, :, None]
        h, c = np.where(hold, st.h, h), np.where(hold, st.c, c)
    st.h, st.c = h, c
    # 4. Forecast and scale in sensor units; the one-step forecast's change from x scaled
    #    by the stream's gain (learnt on one-step changes, so applied to that step only).
    st.fc = f.astype(np.float64) * std[:, None, :] + st.mean[:, None, :]
    st.dlt = st.fc[:, 0, :] - x
    st.fc[:, 0, :] = x + gain.gain_of(st.gxy, st.gxx, st.gn)[:, None] * st.dlt
    st.fs = np.full_like(st.fc, np.nan) if s is None else s.astype(np.float64) * std[:, None, :]
    st.mfc = st.fc[:, 0, :].copy()
    # 5. The daily profile's forecast, mixed in by the stream's blend weight.
    if ts is not None and prev_ts is not None:
        step = season.bounded_step(ts, prev_ts, st.sbin)
        seasonal = season.forecast(
            st.profiles(), st.sbin, st.slev, st.st0, ts, step, st.fc.shape[1]
        )
        st.sfc = seasonal[:, 0, :]
        w = blend.weight_of(st.bm)
        mix = (w > 0) & np.isfinite(seasonal).all(axis=(1, 2))
        if mix.any():
            st.fc[mix] += w[mix, None, None] * (seasonal[mix] - st.fc[mix])
            if s is not None:
                # The mix's scale, weighted like its forecast, so that the interval and
                # the forecast surprise describe the forecast that is served: the
                # profile's recent mean absolute error, as a scale, in place of the
                # model's scale for its share.
                per = 1.0 if band is None else scale_per_mae(band.distribution)
                mae = per * st.bm[mix, len(blend.WEIGHTS) - 1, None, None] * std[mix, None, :]
                if anom.hour_spread:
                    # ... at the next value's hour of the day (pipeline.engine.dayspread),
                    # unless the stream's week is in use: there the hour of the day averages
                    # days of other shapes (weekdays and weekends), and it cost false alarms
                    # on generated taxi-like feeds (docs/quality.md, session 37).
                    since = np.maximum(st.st0, st.tt)
                    hr = dayspread.ratio(st.te, st.tq, ts + step, st.st0, since, step)
                    weekly = season.week_in_use(st.profiles(), st.sbin, st.st0, ts)
                    hr = np.where(weekly, 1.0, hr)
                    mae = mae * hr[mix, None, None]
                st.fs[mix] += w[mix, None, None] * (mae - st.fs[mix])
    # A profile that has predicted a square wave perfectly has no error to lend as a scale,
    # and a scale of 0 would make the next error 0/0, or infinite: the scale is never
    # below the stream's floor (NaN, a model without a scale head, stays NaN).
    st.fs = np.maximum(st.fs, floor_of(norm, st.mean)[:, None, :])
    st.has_fc = np.ones_like(has)
    st.steps = st.steps + 1
    return Stepped(
        score, e, reason.astype(np.int64), expected[0], expected[1], abs_error, nll, inputs, share
    )


def _after_gap(
    anom: AnomalyParams,
    st: StepState,
    fc1: F64,
    known_day: npt.NDArray[np.bool_],
    ts: F64,
    prev_ts: F64,
) -> F64:
    """The one-step forecast ``fc1 [B, F]`` judged against a value that came more than
    ``anom.gap_shift`` profile bins after the one before: plus the profile's change from
    the time it was made for to the value's time, where the stream's day is known (the
    model's share was made for one step later too, and the day moved under both)."""
    gapped = (
        st.has_fc
        & known_day
        & (ts - prev_ts > anom.gap_shift * season.DAY / np.maximum(st.sbin, 1.0))
    )
    gapped &= np.isfinite(st.sfc).all(axis=1)
    if not gapped.any():
        return fc1
    g = np.nonzero(gapped)[0]
    p = st.profiles()
    sub = season.Profiles(p.sp[g], p.su[g], p.sw[g], p.ss[g])
    now = season.forecast(sub, st.sbin[g], st.slev[g], st.st0[g], prev_ts[g], ts[g] - prev_ts[g], 1)
    moved = now[:, 0, :] - st.sfc[g]
    ok = np.isfinite(moved).all(axis=1)
    out = fc1.copy()
    out[g[ok]] += moved[ok]
    return out


def _shares(
    reason: npt.NDArray[np.int64],
    alarmed: npt.NDArray[np.bool_],
    x: F64,
    fc1: F64,
    e_scale: F64,
    mean: F64,
    std: F64,
    lo: F64,
    hi: F64,
    centre: F64,
    bare: F64,
    ratio: F64,
) -> F64:
    """Each feature's share ``[B, F]`` of what the channel named by ``reason`` measured: the
    squared forecast error (forecast), the squared distance from the long-run mean (level),
    the excess beyond the running range in its widths (range), the absolute deviation
    from where the value was expected (sustained, and day), the departure in its record
    (drift, ``ratio``: pipeline.engine.anomaly.departure_step); a frozen sensor repeats every feature,
    and a channel that measured nothing on any feature, equal shares. Only where
    ``alarmed [B]`` (NaN elsewhere); a single-feature stream's share is 1 everywhere."""
    B, F = x.shape
    if F == 1:
        return np.ones((B, 1))
    out: F64 = np.full((B, F), np.nan)
    r = np.flatnonzero(alarmed)
    if not len(r):
        return out
    x, fc1, e_scale, mean, std = x[r], fc1[r], e_scale[r], mean[r], std[r]
    lo, hi, centre, bare, ratio = lo[r], hi[r], centre[r], bare[r], ratio[r]
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.abs((x - centre) / bare)  # sustained and day measure the same deviation
        per = np.stack(
            [
                ((x - fc1) / e_scale) ** 2,
                ((x - mean) / std) ** 2,
                np.maximum(np.maximum(x - hi, lo - x), 0.0) / (hi - lo),
                np.zeros_like(x),
                off,
                ratio,
                off,
            ]
        )[reason[r], np.arange(len(r))]
    per = np.where(np.isfinite(per), per, 0.0)
    total = per.sum(axis=1, keepdims=True)
    out[r] = np.where(total > 0, per / np.where(total > 0, total, 1.0), 1.0 / F)
    return out


def _error_step(
    anom: AnomalyParams, e: F64, en: F64, es: F64, emu: F64, evar: F64, tu: F64, tb: F64
) -> tuple[F64, F64, F64, F64, F64, F64, F64]:
    """The forecast channel's surprise at the normalised errors ``e [B]`` and the advanced
    error statistics ``(en, es, emu, evar, tu, tb)``: Gaussian (``score_step``), or from
    the stream's own tail where ``excess_rate`` > 0 (``excess_step``, which reads the
    statistics as they stood before ``e``)."""
    raw, en_, es_, emu_, evar_ = score_step(anom, e, en, es, emu, evar)
    if anom.excess_rate > 0:
        raw, tu, tb = excess_step(anom, e, emu, evar, tu, tb)
    return raw, en_, es_, emu_, evar_, tu, tb


def _adapt_interval(band: Band, x: F64, fc1: F64, fs1: F64, scaled: npt.NDArray[np.bool_],
                    qlog: F64) -> F64:  # fmt: skip
    """The interval multiplier after ``x``, where the stream had a scale (``scaled``)."""
    missed = band.missed(x, fc1, np.where(scaled[:, None], fs1, 0.0), qlog)
    out: F64 = np.where(scaled, adapt(qlog, missed, band.params), qlog)
    return out


def rebuild(
    session: StepSession,
    norm: NormaliserParams,
    st: StepState,
    recent: F32,
    lengths: npt.NDArray[np.int64],
    recent_cov: F32 | None = None,
    band: Band | None = None,
    anom: AnomalyParams | None = None,
    new_units: bool = False,
) -> None:
    """Rebuild (h, c) and the last forecast of each stream by replaying its recent inputs.

    Used after a model swap: the normaliser and error statistics are kept (they describe
    the sensor, not the model), and so are the daily profile and the blend's evidence (a
    stream served mostly by its profile stays so: starting the blend again would serve
    the new model alone for its first ``blend.MIN_EVIDENCE`` steps, worse forecasts and
    a biased live comparison at every refresh; the evidence follows the new model within
    about ``1 / blend.RATE`` steps). What calibrates a model's own outputs on the stream
    learns from the replay itself, from its ``REPLAY_WARMUP``-th step on (before that the
    rebuilt state is still forgetting its zero start), as if the new model had served those
    steps: the interval multiplier (of ``band``'s rule) and the gain start again; the
    forecast-error statistics of ``anom``'s rules (their mean and spread, the tail's
    quantile and scale) go on from the old model's, which weigh as the model's priors do
    for a new stream (``prior_weight`` errors). Where the old model measured its errors in
    other units (``new_units``: one of the two has a scale head and the other not, so one
    divides errors by its predicted scale and the other by the stream's spread), they
    start from the new model's priors instead: kept, they alarmed 1-46 values after such
    a swap, until they caught up (``make demo``, whose first version has no scale head).
    ``recent [B, T, F]`` holds each
    stream's last ``lengths [B]`` inputs right-aligned (oldest first, ending at ``T - 1``;
    the rows before them are ignored), ``recent_cov [B, T, C]`` their covariates: every
    stream ends on the last replayed step, and a step runs the streams that have an input
    there in one batch.
    """
    st.qlog = np.zeros_like(st.qlog)
    st.gxy, st.gxx, st.gn = np.zeros_like(st.gxy), np.zeros_like(st.gxx), np.zeros_like(st.gn)
    if anom is not None:
        st.en = np.zeros_like(st.en)
        if new_units:
            st.emu = np.full_like(st.emu, anom.prior_mean)
            st.evar = np.full_like(st.evar, anom.prior_std**2)
            st.tu, st.tb = np.zeros_like(st.tu), np.zeros_like(st.tb)
    B, T = recent.shape[:2]
    st.h = np.zeros_like(st.h)
    st.c = np.zeros_like(st.c)
    std = std_of(norm, st.mean, st.var)
    first = T - np.asarray(lengths, np.int64)
    fc, fs = st.fc.copy(), st.fs.copy()
    learn_from = first + REPLAY_WARMUP  # the first step judged against a replayed forecast
    prev_x = np.full(st.mean.shape, np.nan)
    for t in range(int(first.min(initial=T)), T):
        # Every stream once the shortest history has begun (the usual case: full rings),
        # indexed by a slice, which copies nothing.
        some = np.flatnonzero(first <= t)
        rows: npt.NDArray[np.int64] | slice = slice(None) if len(some) == B else some
        x = recent[rows, t].astype(np.float64)
        judged = learn_from[rows] <= t
        if judged.any():
            _learn_calibration(st, rows, x, prev_x[rows], fc[rows, 0], fs[rows, 0], std[rows],
                               judged, band, anom)  # fmt: skip
        prev_x[rows] = x
        z = np.clip((x - st.mean[rows]) / std[rows], -norm.clip, norm.clip).astype(np.float32)
        if recent_cov is not None:
            z = np.concatenate([z, recent_cov[rows, t].astype(np.float32)], axis=1)
        f, s, h, c = session.step(z, st.h[:, rows], st.c[:, rows])
        st.h[:, rows] = h
        st.c[:, rows] = c
        fc[rows] = f.astype(np.float64) * std[rows][:, None, :] + st.mean[rows][:, None, :]
        st.dlt[rows] = fc[rows, 0] - x
        fs[rows] = np.nan if s is None else s.astype(np.float64) * std[rows][:, None, :]
    st.fc, st.fs = fc, fs
    st.mfc = fc[:, 0, :].copy()


def _learn_calibration(
    st: StepState,
    rows: npt.NDArray[np.int64] | slice,
    x: F64,
    prev_x: F64,
    fc1: F64,
    fs1: F64,
    std: F64,
    judged: npt.NDArray[np.bool_],
    band: Band | None,
    anom: AnomalyParams | None,
) -> None:
    """One replayed value ``x`` of streams ``rows`` teaches their calibration what
    :func:`advance` would have taught it live: whether it fell in the replayed forecast's
    interval, the change it made against the change forecast, and its error."""
    scaled = judged & np.isfinite(fs1).all(axis=1)
    if anom is not None:
        e_scale = np.where(scaled[:, None], fs1, std) if anom.use_scale else std
        names = ("en", "es", "emu", "evar", "tu", "tb")
        _, *learnt = _error_step(anom, error_of(x, fc1, e_scale),
                                 *(getattr(st, name)[rows] for name in names))  # fmt: skip
        for name, new in zip(names, learnt, strict=True):
            old = getattr(st, name)
            old[rows] = np.where(judged, new, old[rows])
    if band is not None:
        st.qlog[rows] = _adapt_interval(band, x, fc1, fs1, scaled, st.qlog[rows])
    ok = judged & np.isfinite(prev_x).all(axis=1)
    st.gxy[rows], st.gxx[rows], st.gn[rows] = gain.learn(
        st.gxy[rows], st.gxx[rows], st.gn[rows], st.dlt[rows], x - prev_x, std, ok
    )
