"""Forecast errors and values → anomaly scores in [0, 1), per stream and vectorised over a batch.

Every channel measures *surprise* in nats, ``S = -ln P`` for the probability ``P`` of
seeing something at least this unusual; the most surprising channel wins. At every
step t of a stream once it has a forecast from t-1:

1. **Forecast surprise**: the normalised error ``e = rms_f((x_f - forecast_f) / s_f)``
   in units of the scale ``s`` the model predicted with that forecast (its own
   uncertainty: wide in a noisy hour, narrow in a quiet one; for a model without a scale
   head, or with ``use_scale`` off, the stream's spread before step t), optionally smoothed
   (``short_alpha`` < 1), against the stream's long-run error distribution
   ``(mu, sigma)`` (EW mean and variance of e with rate ``long_alpha``, seeded from
   calibration so a new stream is usable early; the first ``min_history`` errors of a
   stream, made while its normaliser barely started, are not learnt from). The
   surprise is the tail of the stream's own largest errors (:func:`excess_step`, peaks
   over threshold): ``e**2`` beyond a running quantile that ``excess_rate`` of errors
   exceed, its excess exponential with a learnt mean, so a stream whose large errors
   recur (bursts, a daily step the forecast only half anticipates) is not alarmed by
   them, and a stream with Gaussian errors keeps a Gaussian's tail. With
   ``excess_rate`` 0 (models calibrated before 2026-12-01): the Gaussian tail of
   ``(e - mu) / sigma``, after Numenta's anomaly likelihood.
2. **Level novelty**: how far the value lies from the stream's long-run mean (the
   normaliser's statistics before this step), as a two-sided Gaussian tail, times
   ``value_weight``. The forecaster tracks slow departures step by step, so forecast
   errors alone miss them. A value no further from the mean, on its side of it, than
   the ``level_habit``-th largest deviation the stream has shown on that side lately
   (each decaying over ``level_habit_span_s``, two weeks: :func:`habit_step`) is the
   stream's habit, a tweet count's third burst of the fortnight: the level channel
   does not alarm on it (the forecast and the other channels still judge it).
3. **Tail calibration** of the Gaussian tails (2, and 1 where ``excess_rate`` is 0):
   Gaussian tails are far too thin for spiky sensors (counts, traffic, network bytes),
   which throw 8-sigma values every day. A stream whose surprise exceeds
   ``L = tail_level`` nats at the EW rate ``r`` instead of ``e^-L`` has it scaled by
   ``min(1, -ln r / L)`` (:func:`calibrate_tail`), so one threshold fits quiet and spiky
   streams alike. A forecast tail fitted to the stream's own errors is not discounted
   again (``tail_forecast``: models before 2026-12-05 discounted the larger of 1 and 2).
4. **Range novelty**: a value beyond everything the stream has shown (its running
   minimum and maximum, relaxing towards the mean at ``range_decay`` per step so one old
   outlier does not blind it for ever) by at least ``range_min_std`` standard
   deviations and a fraction ``r`` of the range's width scores ``range_rate * r``
   (exceeding the range by 1% is as surprising as a tail of e^-30). A spiky stream's
   routine spikes stay inside its range; the incident that breaks records does not.
   The channel is off for the first ``range_history`` values and while the stream sets
   records at a long-run rate above ``range_max_rate`` (a trend, or a season not seen
   in full yet, where records are routine). A record the forecaster saw coming is no
   incident either: where the forecast has an interval, the margin counts from beyond
   ``range_interval`` times the interval's reach from the forecast (a young stream
   that drifts slowly to the edge of what it has shown crosses it by its own noise).
5. **Stuck sensor**: for a stream that (after ``stuck_history`` values) repeats a value
   at a long-run rate ``p`` below ``stuck_max_rate``, a run of ``run`` unchanged values
   has probability ``p ** run``, so a continuous sensor that freezes is flagged within a
   few steps. Streams that repeat values routinely (counts, quantised readings) do so in
   clusters, where ``p ** run`` would be far too confident; for them this channel is off.
   A frozen sensor's incident lasts while it stays frozen (``stuck_lasts``), and its
   return is judged by the value's level and range, not by the forecast, which followed
   the frozen value in the narrow scale of a constant input (``stuck_return``): an
   ordinary return is the end of the incident, a return far from anything the stream
   has shown is news; and the network's state does not take in the frozen readings
   (``stuck_holds``), so its forecasts after the return are not those of a constant.
6. **Sustained deviation** (:func:`sustained_step`): many values on one side of where
   they are expected, each unremarkable (a holiday, a partial outage, a drift the
   forecaster follows step by step): the EW mean of the standardised deviation from the
   long-run mean (at this time of day and week where the stream's profile knows its day)
   against that mean's own learnt spread. Not tail-calibrated with 1 and 2 (its spread
   is its own); it alarms once per incident (:func:`sustained_onset`), and while it
   lasts the profile does not learn it. Its memory is 20 values, or about 100 minutes
   (``sustained_span_s``) where that is fewer: about 4 values on a half-hourly stream,
   never fewer than about 3 (``sustained_max_rate``).
   Two more channels weigh evidence over many values against the stream's own record
   (scale-free, nothing calibrated), each alarming once per incident: a departure from
   the stream's recent course (:func:`departure_step`: a drift) and a day unlike its
   recent days (:func:`day_step`: the energy of the same deviations over about a day,
   whose signs a holiday mixes).
7. **Novelty**: one incident should raise one alarm, not one per step while it lasts.
   ``peak`` is the stream's recent largest surprise, decaying by ``novelty_decay`` per
   step; a surprise that does not exceed it is multiplied by ``novelty_damp``, and so is
   every surprise within ``refractory`` quiet steps of the stream's last alarm (or of its
   sustained deviation at the threshold): a burst is one incident, and only a surprise
   twice the alarm level, and twice the incident's decayed peak, breaks through it. A
   frozen sensor's onset alarms whatever came before (:func:`stuck_onset`).
8. **Score** ``S / (S + ln 1e5)`` in [0, 1): 0.5 is a tail of 1e-5, 0.6 of 3e-8, 0.75
   of 1e-15. It never saturates, so strong surprises keep their order.
9. **Decision**: ``is_anomaly = warm and score >= threshold``; every long-run statistic
   is updated after scoring, so a surprise does not dilute itself.

Why these channels, and what each moved on NAB: docs/quality.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.engine import finite

__all__ = [
    "DEPARTURE_BLOCKS",
    "HABIT_SLOTS",
    "AnomalyParams",
    "Day",
    "Departure",
    "calibrate_channels",
    "calibrate_tail",
    "day_step",
    "departure_step",
    "error_of",
    "excess_step",
    "gaussian_tail",
    "habit_step",
    "level_surprise",
    "log_tail",
    "novelty",
    "range_surprise",
    "score_of",
    "score_step",
    "stuck_level",
    "stuck_onset",
    "stuck_surprise",
    "sustained_onset",
    "sustained_step",
]

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
# The largest recent deviations a stream keeps on each side of its mean (:func:`habit_step`).
HABIT_SLOTS = 3
SCORE_HALF_NATS = math.log(1e5)
# The block means a stream keeps for the departure channel (:func:`departure_step`): enough
# for a fit and the gap before the newest block, and for the departure ``gap + 1`` blocks
# back that joins the stream's record.
DEPARTURE_BLOCKS = 14


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnomalyParams:
    """Stored in every model.json under ``anomaly``. Training calibrates the error priors
    and the repeat rate; the threshold is configured (see :func:`training.evaluate.alarm_rate`)."""

    # Forecast errors in units of the scale the model predicted with each forecast (a
    # model with a scale head); False: in units of the stream's running spread.
    use_scale: bool = True
    # The forecast surprise as the predictive distribution's own tail, -ln P(|X - f| >= |x - f|)
    # under the calibrated scale, instead of the error against the stream's error statistics.
    # Off by default: measured worse on NAB and on generated feeds (docs/quality.md).
    distribution_surprise: bool = False
    short_alpha: float = 1.0
    long_alpha: float = 1.0 / 1000.0
    prior_mean: float = 1.0
    prior_std: float = 1.0
    prior_weight: float = 50.0
    min_sigma: float = 0.05
    value_weight: float = 1.0
    # Level novelty against the stream's long-run mean at this time of day, in the spread
    # its daily profile leaves (strongly seasonal streams, profile two days old, two
    # values in a row). Off by default: it finds contextual anomalies and drifts on
    # generated feeds without false alarms there, but not better on nab-dev, whose days
    # vary more than the generated ones (docs/quality.md).
    season_level: bool = False
    min_history: int = 10
    tail_level: float = 9.2
    # The tail calibration also discounts the forecast channel's fitted tail (excess_rate
    # > 0), as models before 2026-12-05 (session 33) did: a second discount of a tail
    # already the stream's own. Off: it discounts the Gaussian tails only (docs/quality.md).
    tail_forecast: bool = False
    tail_alpha: float = 1.0 / 1000.0
    range_rate: float = 3000.0
    range_min_std: float = 0.5
    range_decay: float = 1e-5
    range_history: int = 300
    range_max_rate: float = 0.05
    range_alpha: float = 1.0 / 1000.0
    # The record's margin counts from beyond this many times the forecast interval's
    # reach (0: from the range alone, as before 2026-12-04).
    range_interval: float = 2.0
    stuck_alpha: float = 1.0 / 1000.0
    min_rep_p: float = 1e-3
    stuck_max_rate: float = 0.01
    stuck_history: int = 100
    # What a frozen run counts as in the novelty rule once it has crossed the threshold
    # (nats; 0: its growing surprise, an alarm per frozen reading): it alarms once, at the
    # onset, and is damped afterwards like any other incident (score 1/2; stuck_onset).
    stuck_cap: float = 2.0 * math.log(1e5)
    prior_rep: float = 0.1
    novelty_decay: float = 0.95
    novelty_damp: float = 0.5
    # How much more surprising than the recent peak a value must be to count as news
    # (nats; 0: any amount): within a climbing burst every value beats the last by a little.
    novelty_margin: float = 0.0
    # An incident's length (steps; 0: off): within this many quiet steps of the stream's
    # last alarm, or of its sustained deviation at the threshold, nothing is news
    # (:func:`novelty`), so an incident raises one alert, not a burst of them.
    refractory: float = 50.0
    # Within an incident, news must also be twice (1 / novelty_damp) the incident's
    # decayed peak, where that is above the alarm level (false: twice the alarm level,
    # the rule before 2026-12-06): a burst or drift whose every record is hundreds of
    # nats alerts again only as it escalates, not on each record.
    refractory_relative: bool = True
    # A value no further from the stream's mean, on its side, than the level_habit-th
    # largest deviation the stream has shown on that side lately is its habit, not a
    # level anomaly (:func:`habit_step`; 0: off, as before 2026-12-06). Each remembered
    # deviation decays by e over level_habit_span_s seconds of the stream's time (two
    # weeks, the day channel's memory; 5 minutes a value where times are unknown).
    level_habit: int = 3
    level_habit_span_s: float = 14 * 86400.0
    # The profile's share of the served scale follows the stream's errors by hour of day
    # (pipeline.engine.dayspread; false: one figure for the whole day, as before
    # 2026-12-06).
    hour_spread: bool = True
    # A value that comes more than ``gap_shift`` of its profile's bins after the one
    # before is judged against the forecast moved along the stream's day by the gap (the
    # profile's change from the time the forecast was made for to the time the value
    # came), where the day is known (pipeline.engine.stepper; 0: off, as before
    # 2026-12-06). Two bins: beyond a regular feed's jitter.
    gap_shift: float = 2.0
    # A frozen sensor's incident lasts while it stays frozen (its run's surprise at the
    # threshold counts as an alarm for the quiet steps), so its return, the jump from
    # the frozen value the forecaster followed, is within the incident (false: the
    # refractory steps count from the onset, as before 2026-12-06).
    stuck_lasts: bool = True
    # The first value after a frozen run at the threshold (the sensor's return) is judged
    # by its level and range, not by the forecast, which followed the frozen value
    # (false: by the forecast too, as before 2026-12-06).
    stuck_return: bool = True
    # Nor is a frozen sensor's run the network's memory: the LSTM state stays as it was
    # while the run is at the threshold (false: it takes in the frozen readings, as before
    # 2026-12-06, and forecasts the return in the narrow scale of a constant input).
    stuck_holds: bool = True
    # The forecast surprise from a tail fitted to the stream's own largest errors
    # (:func:`excess_step`): the share of errors in the fit (0: the Gaussian tail of the
    # error statistics, as before 2026-12-01), its learning rate, and the largest
    # excess (in mean excesses) one error may teach it.
    excess_rate: float = 0.02
    excess_alpha: float = 0.05
    excess_cap: float = 10.0
    # Sustained deviation (:func:`sustained_step`): the rate of the EW mean of the value's
    # standardised deviation from where it is expected (0: off), and the rate at which
    # that mean's own spread is learnt.
    sustained_rate: float = 0.05
    sustained_alpha: float = 1.0 / 1000.0
    # The mean deviation's memory in time (seconds; 0: ``1 / sustained_rate`` values,
    # whatever their spacing, as before 2026-12-06): a stream sampled more coarsely than
    # every ``sustained_rate * sustained_span_s`` seconds (5 minutes at the defaults, the
    # spacing the channel was designed at) moves it at ``1 - exp(-dt / sustained_span_s)``
    # a value, at most ``sustained_max_rate``, so a half-day's incident on a half-hourly
    # stream weighs what it weighs on a 5-minute one.
    sustained_span_s: float = 6000.0
    sustained_max_rate: float = 0.3
    # Departure from the stream's recent course (:func:`departure_step`): values averaged
    # in blocks of ``departure_block`` (0: off); a line fitted to ``departure_fit`` block
    # means that ended ``departure_gap`` blocks ago, extrapolated to the newest block; an
    # alarm where its departure is ``departure_ratio`` times the largest the stream has
    # shown, once ``departure_history`` departures have been seen.
    departure_block: int = 15
    departure_fit: int = 6
    departure_gap: int = 3
    departure_history: int = 12
    departure_ratio: float = 2.2
    # A day unlike the stream's recent days (:func:`day_step`): the EW mean of the squared
    # deviation from where values are expected (clipped at ``day_clip``), with a time
    # constant of ``day_memory_s`` (0: off), against the largest it has been, forgetting
    # over ``day_forget_s``; an alarm at ``day_ratio`` times that record once the stream
    # is ``day_history_s`` old.
    day_memory_s: float = 86400.0
    day_forget_s: float = 14 * 86400.0
    day_history_s: float = 14 * 86400.0
    day_clip: float = 10.0
    day_ratio: float = 3.5
    threshold: float = 0.6

    def __post_init__(self) -> None:
        if not 0 <= self.level_habit <= HABIT_SLOTS or self.level_habit_span_s <= 0:
            raise ValueError(
                f"level_habit ({self.level_habit}) must be 0 to {HABIT_SLOTS} (the deviations "
                f"a stream keeps), level_habit_span_s ({self.level_habit_span_s}) positive"
            )
        if self.departure_block > 0 and not (
            self.departure_fit >= 2
            and self.departure_gap >= 0
            and self.departure_fit + 2 * self.departure_gap + 2 <= DEPARTURE_BLOCKS
            and self.departure_ratio > 0
        ):
            raise ValueError(
                f"departure_fit ({self.departure_fit}) must be at least 2 and departure_fit + "
                f"2 * departure_gap ({self.departure_gap}) + 2 at most {DEPARTURE_BLOCKS} "
                f"(the block means a stream keeps), departure_ratio positive"
            )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnomalyParams:
        # A model calibrated before a channel existed keeps scoring as it was calibrated.
        return cls(**{**_LEGACY, **data})


# What a model.json without these fields meant.
_LEGACY: dict[str, Any] = {
    "excess_rate": 0.0,
    "sustained_rate": 0.0,
    "sustained_span_s": 0.0,
    "refractory": 0.0,
    "departure_block": 0,
    "range_interval": 0.0,
    "day_memory_s": 0.0,
    "tail_forecast": True,
    "refractory_relative": False,
    "stuck_lasts": False,
    "stuck_return": False,
    "stuck_holds": False,
    "level_habit": 0,
    "hour_spread": False,
    "gap_shift": 0.0,
}


def error_of(x: F64, forecast: F64, std: F64) -> F64:
    """Normalised one-step error per stream: ``x, forecast, std [B, F]`` → ``[B]``."""
    r = (x - forecast) / std
    out: F64 = np.sqrt(np.mean(r * r, axis=1))
    return out


def _log_erfc_abs(u: F64) -> F64:
    """ln erfc(|u|) by the Chebyshev fit of Numerical Recipes (``erfcc``), in log space so
    it stays exact where erfc itself underflows (|u| > 26)."""
    a = np.abs(u)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -1.26551223 + t * (
        1.00002368
        + t
        * (
            0.37409196
            + t
            * (
                0.09678418
                + t
                * (
                    -0.18628806
                    + t
                    * (
                        0.27886807
                        + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                    )
                )
            )
        )
    )
    out: F64 = np.log(t) - a * a + poly
    return out


def log_tail(z: F64) -> F64:
    """ln P(Z > z) for standard normal Z, vectorised; *relative* error of P below 1.2e-7."""
    u = np.asarray(z, np.float64) / math.sqrt(2.0)
    le = _log_erfc_abs(u)
    out: F64 = np.where(u >= 0, math.log(0.5) + le, np.log1p(-0.5 * np.exp(le)))
    return out


def gaussian_tail(z: F64) -> F64:
    """P(Z > z) for standard normal Z, vectorised."""
    out: F64 = np.exp(log_tail(z))
    return out


def score_of(surprise: F64) -> F64:
    """Surprise in nats → score in [0, 1) (0.5 at a tail of 1e-5); NaN stays NaN."""
    s = np.maximum(surprise, 0.0)
    out: F64 = s / (s + SCORE_HALF_NATS)
    return out


def stuck_surprise(
    p: AnomalyParams, repeated: npt.NDArray[np.bool_], n: F64, run: F64, rep_p: F64
) -> tuple[F64, F64, F64]:
    """Surprise of the current run of unchanged values; returns ``(surprise, run, rep_p)``.

    ``repeated [B]``: the value equals the previous one; ``n [B]``: values seen before.
    """
    run = np.where(repeated, run + 1.0, 0.0)
    surprise = stuck_level(p, n, run, rep_p)
    # A run already surprising (a tail below 1e-5) is not learnt from, or a frozen sensor
    # would teach the channel that freezing is normal and switch it off within a few steps.
    a = np.maximum(1.0 / (n + 10.0), p.stuck_alpha) * (surprise < SCORE_HALF_NATS)
    rep_p = rep_p + a * (repeated.astype(np.float64) - rep_p)
    return surprise, run, rep_p


def stuck_level(p: AnomalyParams, n: F64, run: F64, rep_p: F64) -> F64:
    """Surprise (nats) of a run of ``run [B]`` unchanged values after ``n [B]`` values."""
    active = (n >= p.stuck_history) & (rep_p < p.stuck_max_rate)
    out: F64 = np.where(active, -run * np.log(np.maximum(rep_p, p.min_rep_p)), 0.0)
    return out


def stuck_onset(p: AnomalyParams, surprise: F64, rep_p: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """One alarm per frozen run: ``(what the run adds to the novelty rule, onset [B])``.

    A run's surprise grows with every frozen reading, so through the novelty rule alone it
    would beat the stream's recent peak, and alarm, on every one of them. Instead the run
    counts as ``stuck_cap`` nats from the reading where its surprise first reaches the
    threshold (the onset, which the caller alarms on whatever the peak), and the novelty
    rule damps the rest of it like any other incident's. ``rep_p``: the repeat rate the
    surprise was computed with (a surprising run does not move it).
    """
    if p.stuck_cap <= 0:
        return surprise, np.zeros(len(surprise), np.bool_)
    level = _alarm_nats(p)
    step = -np.log(np.maximum(rep_p, p.min_rep_p))
    onset = (surprise >= level) & (surprise - step < level)
    novel: F64 = np.where(surprise >= level, np.maximum(p.stuck_cap, 0.0), surprise)
    return novel, onset


def range_surprise(
    p: AnomalyParams,
    x: F64,
    n: F64,
    lo: F64,
    hi: F64,
    mean: F64,
    rec: F64,
    std: F64,
    expected: tuple[F64, F64, F64] | None = None,
) -> tuple[F64, F64, F64, F64]:
    """Surprise of a value beyond the stream's running range; returns ``(surprise, lo, hi, rec)``.

    ``x, lo, hi, mean, std [B, F]`` (``lo, hi`` NaN for a new stream; ``mean, std`` the
    normaliser's before this step: the range relaxes towards the mean, and a record must
    beat it by ``range_min_std`` standard deviations); ``n [B]`` values seen before;
    ``rec [B]`` the long-run rate of new records; ``expected`` the forecast and its
    interval ``(forecast, lo, hi)``, each ``[B, F]`` (NaN where there is none).
    """
    width = hi - lo
    margin = np.maximum(x - hi, lo - x)
    record = np.any(margin > 0, axis=1)
    if expected is not None and p.range_interval > 0:
        fc, elo, ehi = expected
        top = np.fmax(hi, fc + p.range_interval * (ehi - fc))
        bottom = np.fmin(lo, fc - p.range_interval * (fc - elo))
        margin = np.maximum(x - top, bottom - x)
    margin = np.where(margin > p.range_min_std * std, margin, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        beyond = margin / np.where(width > 0, width, np.nan)
    beyond = finite.nan_to_num(beyond, nan=0.0, posinf=0.0, neginf=0.0).max(axis=1)
    active = (n >= p.range_history) & (rec < p.range_max_rate)
    surprise = np.where(active, p.range_rate * np.maximum(beyond, 0.0), 0.0)
    a = np.maximum(1.0 / (n + 10.0), p.range_alpha)
    rec = rec + a * (record.astype(np.float64) - rec)
    hi = np.fmax(x, hi - p.range_decay * (hi - mean))
    lo = np.fmin(x, lo + p.range_decay * (mean - lo))
    return surprise, lo, hi, rec


def novelty(
    p: AnomalyParams, surprise: F64, peak: F64, quiet: F64 | None = None
) -> tuple[F64, F64]:
    """Damp a surprise that is not news; returns ``(surprise, peak)``.

    Not news: a surprise that does not exceed the stream's recent peak by
    ``novelty_margin`` nats, or (``quiet [B]`` given, ``refractory`` > 0) any surprise
    within ``refractory`` quiet steps of the stream's last incident (``quiet``: steps since
    the stream last alarmed or its sustained deviation was at the threshold). A spiky
    stream's incident is a cluster of values, each of which may beat the decaying peak;
    within one, only a surprise of ``1 / novelty_damp`` times the alarm level alerts again,
    or (``refractory_relative``) that many times the incident's decayed peak where the
    peak is above the alarm level: a drift past the stream's range, whose every record
    is hundreds of nats, alerts again as it escalates, not on each record.
    """
    news = surprise > peak + p.novelty_margin
    damp: F64 | float = p.novelty_damp
    if quiet is not None and p.refractory > 0:
        within = quiet < p.refractory
        news &= ~within
        if p.refractory_relative:
            # Relative to the incident's peak where that is above the alarm level.
            level = _alarm_nats(p)
            damp = np.where(within, p.novelty_damp * level / np.maximum(peak, level), damp)
    damped = np.where(news, surprise, damp * surprise)
    peak = np.maximum(surprise, p.novelty_decay * peak)
    return damped, peak


def habit_step(
    p: AnomalyParams, d: F64, top: F32, decay: F64, learn: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.bool_], F32]:
    """Is each value the stream's habit? Returns ``(habit [B], top)``.

    ``d [B, F]``: the value's deviation from the stream's long-run mean, in sensor units
    (NaN: none); ``top [B, 2 * HABIT_SLOTS, F]``: the largest deviations the stream has
    shown lately above its mean (rows ``0..K-1``, largest first) and below it (rows
    ``K..2K-1``), each decayed since; ``decay [B]``: the factor the time since the
    stream's previous value applies to them; ``learn [B]``: the streams whose value
    joins them.

    1. Decay the kept deviations by the time since the previous value.
    2. Judge the value against them: a habit where every feature lies, on its side of
       the mean, within the ``level_habit``-th largest deviation kept on that side (so a
       burst beyond the last three is not one, nor a dip in a stream whose habit is to
       spike upwards).
    3. Let the value's deviation take its place among them on its side, if it is large
       enough (learning streams only; the others keep theirs, decayed).

    In sensor units, not in standard deviations: a spiky stream's spread grows with its
    spikes, so the same spike would read smaller each time it came. A decayed deviation
    is smaller than the one seen: bursts of exactly one height are a habit only once
    three higher ones are kept.
    """
    k = int(p.level_habit)
    K = HABIT_SLOTS
    if k <= 0:
        return np.zeros(len(d), np.bool_), top
    # 1. Decay.
    kept = top * decay[:, None, None].astype(np.float32)
    # 2. Judge.
    finite_d = np.isfinite(d).all(axis=1)
    with np.errstate(invalid="ignore"):
        within = np.where(d >= 0, d <= kept[:, k - 1], -d <= kept[:, K + k - 1])
    habit: npt.NDArray[np.bool_] = np.asarray(within.all(axis=1) & finite_d, np.bool_)
    # 3. Keep the value's deviation if it is among the largest on its side (a stream
    #    that does not learn offers 0, which every kept deviation is at least).
    ok = learn & finite_d
    v = np.where(ok[:, None], d, 0.0).astype(np.float32)
    _insert(kept[:, :K], np.maximum(v, 0))
    _insert(kept[:, K:], np.maximum(-v, 0))
    return habit, kept


def _insert(top: F32, v: F32) -> None:
    """In place: ``v [B, F]`` among the descending ``top [B, K, F]``, whose smallest drops
    out (from the bottom up, so each row moves down the one above it as it was)."""
    for i in range(top.shape[1] - 1, 0, -1):
        np.maximum(top[:, i], np.minimum(top[:, i - 1], v), out=top[:, i])
    np.maximum(top[:, 0], v, out=top[:, 0])


def level_surprise(p: AnomalyParams, z_level: F64) -> F64:
    """Level novelty: the two-sided Gaussian tail of ``z_level [B]`` (the value's distance
    from the stream's long-run mean in standard deviations; NaN: not known yet, 0 nats),
    times ``value_weight``."""
    if p.value_weight <= 0:
        return np.zeros_like(z_level)
    out: F64 = p.value_weight * _two_sided(finite.nan_to_num(z_level, nan=0.0))
    return out


def _two_sided(z: F64) -> F64:
    """``-ln P(|Z| >= |z|)`` for standard normal Z, in nats (at least 0)."""
    out: F64 = np.maximum(-(math.log(2.0) + log_tail(np.abs(z))), 0.0)
    return out


def _alarm_nats(p: AnomalyParams) -> float:
    """The surprise (nats) whose score is the threshold."""
    return p.threshold / (1.0 - p.threshold) * SCORE_HALF_NATS


def score_step(
    p: AnomalyParams,
    e: F64,
    n: F64,
    short: F64,
    mu: F64,
    var: F64,
    z_level: F64 | None = None,
) -> tuple[F64, F64, F64, F64, F64]:
    """Gaussian surprise of one error per stream (forecast and level channels), and the
    advanced error statistics.

    ``e, n, short, mu, var [B]`` (``n`` counts errors seen, 0 for a new stream, whose
    ``mu, var`` the caller seeds with the priors); ``z_level [B]`` is the value's distance
    from the stream's long-run mean in standard deviations (NaN: not known yet).
    Returns ``(surprise, n, short, mu, var)``.
    """
    short = np.where(n == 0, e, short + p.short_alpha * (e - short))
    sigma = np.maximum(np.sqrt(np.maximum(var, 0.0)), p.min_sigma)
    surprise = -log_tail((short - mu) / sigma)
    if z_level is not None:
        surprise = np.maximum(surprise, level_surprise(p, z_level))
    n = n + 1.0
    # The priors count as `prior_weight` earlier observations, then the rate settles at long_alpha.
    a = np.maximum(1.0 / (n + p.prior_weight), p.long_alpha)
    d = e - mu
    mu = mu + a * d
    var = (1.0 - a) * (var + a * d * d)
    return surprise, n, short, mu, var


def calibrate_tail(p: AnomalyParams, surprise: F64, n: F64, rate: F64) -> tuple[F64, F64]:
    """Shrink the Gaussian surprise of a stream whose tails are heavier than Gaussian.

    Were the stream Gaussian, surprises above ``L = tail_level`` nats would come at the
    rate ``e^-L``; a stream that shows them at the rate ``r`` (EW, ``rate [B]``) gets its
    surprise scaled by ``min(1, -ln r / L)``. ``n [B]``: errors seen (the rate starts as
    if ``1 / tail_alpha`` calm steps had been seen). Returns ``(surprise, rate)``.
    """
    if p.tail_level <= 0:
        return surprise, rate
    scale = np.minimum(1.0, -np.log(np.maximum(rate, math.exp(-p.tail_level))) / p.tail_level)
    a = np.maximum(1.0 / (n + 1.0 + 1.0 / p.tail_alpha), p.tail_alpha)
    rate = rate + a * ((surprise > p.tail_level).astype(np.float64) - rate)
    out: F64 = surprise * scale
    return out, rate


def calibrate_channels(
    p: AnomalyParams, forecast: F64, level: F64, n: F64, rate: F64
) -> tuple[F64, F64, F64]:
    """The forecast and level surprises ``[B]`` after the tail calibration
    (:func:`calibrate_tail`); returns ``(forecast, level, rate)``.

    The calibration discounts Gaussian tails: the level channel's, and the forecast
    channel's where it is Gaussian (``excess_rate`` 0). A forecast tail fitted to the
    stream's own errors (:func:`excess_step`) already knows how heavy the stream's tail is
    and is not discounted again; with ``tail_forecast`` (models before 2026-12-05) both
    channels are scaled by the rate at which the larger of the two exceeds the level.
    """
    forecast = np.maximum(forecast, 0.0)
    if p.tail_forecast or p.excess_rate <= 0:
        top = np.maximum(forecast, level)
        scaled, rate = calibrate_tail(p, top, n, rate)
        k = np.where(top > 0, scaled / np.where(top > 0, top, 1.0), 1.0)
        return forecast * k, level * k, rate
    level, rate = calibrate_tail(p, level, n, rate)
    return forecast, level, rate


def excess_step(
    p: AnomalyParams, e: F64, mu: F64, var: F64, u: F64, beta: F64
) -> tuple[F64, F64, F64]:
    """Forecast surprise from the stream's own tail (peaks over threshold); returns
    ``(surprise, u, beta)``.

    The squared error ``v = e**2`` is compared with ``u``, a running quantile that
    ``excess_rate`` of errors exceed, and the excesses ``v - u`` are modelled as
    exponential with mean ``beta`` (the tail of a Gaussian error's square is exactly
    that, with mean 2): ``S = -ln excess_rate + (v - u) / beta``. A stream whose large
    errors recur (bursts, a daily step the forecast only half anticipates) learns a
    long tail and is not alarmed by them; a quiet stream keeps a short one.
    ``e, mu, var, u, beta [B]``: ``u, beta`` 0 for a stream not seeded yet, which starts
    from its error statistics ``mu, var`` as if its errors were Gaussian.
    """
    seed = beta <= 0
    ev = mu * mu + np.maximum(var, 0.0)
    u = np.where(seed, _excess_quantile(p.excess_rate) * ev, u)
    beta = np.where(seed, 2.0 * ev, beta)
    v = e * e
    exceed = v > u
    surprise = np.where(exceed, -math.log(p.excess_rate) + (v - u) / beta, 0.0)
    # One huge error teaches the tail at most excess_cap mean excesses, so an incident
    # does not blind the stream to the next for long.
    y = np.minimum(v - u, p.excess_cap * beta)
    beta_next = np.maximum(np.where(exceed, beta + p.excess_alpha * (y - beta), beta), 1e-9)
    # The quantile moves by steps of the tail's own scale, up on an exceedance and
    # down otherwise, settling where excess_rate of errors exceed it.
    u_next = u + p.excess_alpha * beta * (exceed.astype(np.float64) - p.excess_rate)
    return surprise, u_next, beta_next


def _excess_quantile(rate: float) -> float:
    """The square of the two-sided standard normal quantile exceeded with probability ``rate``."""
    z = statistics.NormalDist().inv_cdf(1.0 - rate / 2.0)
    return z * z


def sustained_step(
    p: AnomalyParams,
    d: F64,
    n: F64,
    pm: F64,
    pv: F64,
    learn: npt.NDArray[np.bool_],
    dt: F64 | None = None,
) -> tuple[F64, F64, F64]:
    """Surprise of a deviation that lasts; returns ``(surprise, pm, pv)``.

    ``d [B]``: the value's signed deviation from where it is expected (the stream's
    long-run mean, at this time of day and week where its profile knows the day), in the
    spread values show around it. One such value is the level channel's to judge; many
    on the same side, each unremarkable, are a holiday, a partial outage or a drift,
    which a forecaster that follows the stream step by step never sees. ``pm`` is the
    EW mean of ``d`` (rate ``sustained_rate``, about ``1 / rate`` steps, or, given the
    time since each stream's previous value ``dt [B]``, faster on a coarsely sampled
    stream: ``sustained_span_s``), and ``pv`` the
    EW mean of ``pm**2`` (seeded at 1, as if every deviation were the same: the widest
    it can be; rate ``max(1 / (n + 10), sustained_alpha)``, and not from a surprising
    ``pm``): the surprise is the two-sided Gaussian tail of ``pm / sqrt(pv)``,
    so a stream whose deviations persist by nature (a random walk, a wandering level) has
    a wide ``pv`` and is not alarmed by them. ``n [B]``: values seen; ``learn [B]``:
    where ``d`` is known (elsewhere nothing moves and the surprise is 0).
    """
    if p.sustained_rate <= 0:
        return np.zeros(len(d)), pm, pv
    a: F64 | float = p.sustained_rate
    if dt is not None and p.sustained_span_s > 0:
        by_time = 1.0 - np.exp(-finite.nan_to_num(dt, nan=0.0) / p.sustained_span_s)
        a = np.clip(by_time, p.sustained_rate, max(p.sustained_max_rate, p.sustained_rate))
    pm_next = np.where(learn, pm + a * (finite.nan_to_num(d) - pm), pm)
    # Seeded at the widest spread a mean of unit deviations can have (each value the
    # same): a channel starting on a stream it has not followed (a model swap from a
    # version without it, an older frame) learns its spread down from deaf, where the
    # independent value would alarm on a wandering stream until it had learnt.
    pv = np.where(pv > 0, pv, 1.0)
    surprise = np.where(learn, _two_sided(pm_next / np.sqrt(pv)), 0.0)
    rate = np.maximum(1.0 / (n + 10.0), p.sustained_alpha)
    quiet = learn & (surprise < SCORE_HALF_NATS)
    pv = np.where(quiet, pv + rate * (pm_next * pm_next - pv), pv)
    return surprise, pm_next, pv


def sustained_onset(
    p: AnomalyParams, surprise: F64, quiet: F64
) -> tuple[F64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """One alarm per sustained deviation: ``(what it adds to the novelty rule, onset [B],
    ongoing [B])``; ongoing: at or above the threshold, alarmed or not; ``quiet [B]``:
    the steps since the stream last alarmed or this channel was last ongoing.

    The mean deviation climbs for as long as the deviation lasts, and wavers about the
    threshold as it does, so it would alarm at every step of the climb and at every
    waver. It counts once instead: as ``stuck_cap`` nats where it reaches the threshold
    after ``1 / sustained_rate`` quiet steps (the mean deviation's own memory: by then it
    holds little of the last incident), and as nothing while it stays there. An alarm of
    any channel within that memory (the step that began the incident) makes it the same
    incident, not a second alert. The caller keeps ``quiet``.
    """
    level = _alarm_nats(p)
    ongoing = surprise >= level
    onset = ongoing & (quiet >= 1.0 / max(p.sustained_rate, 1e-9))
    at_onset = p.stuck_cap if p.stuck_cap > 0 else surprise  # stuck_cap 0: the surprise
    novel: F64 = np.where(onset, at_onset, np.where(ongoing, 0.0, surprise))
    return novel, onset, ongoing


@dataclasses.dataclass
class Departure:
    """One step of the departure channel for a batch (:func:`departure_step`)."""

    surprise: F64  # [B] what it adds to the novelty rule (nats)
    onset: npt.NDArray[np.bool_]  # [B] it reached the threshold at this block's end
    ratio: F64  # [B, F] each feature's departure in its record (0: not a block end)


def departure_step(
    p: AnomalyParams,
    x: F64,
    learn: npt.NDArray[np.bool_],
    dk: F64,
    dn: F64,
    dq: F64,
    dl: F64,
    ds: F64,
    dref: F64,
    dmax: F64,
    db: F32,
) -> Departure:
    """A departure from the stream's recent course: a drift, or a level moving away faster
    than it ever has. Updates the channel's state in place.

    A drift the forecaster follows step by step, on a stream younger than its day, has
    no single unusual value and moves within the spread the stream has shown; what gives
    it away is where it is heading. Values are averaged in blocks of ``m =
    departure_block`` (``dk [B]`` values so far in the current one, their sum ``ds [B, F]``
    relative to ``dref [B, F]``, the stream's first value, so that the block means keep
    their precision in float32). At each block's end, with its mean stored in the ring
    ``db [B, DEPARTURE_BLOCKS, F]`` (block ``j`` at ``j % DEPARTURE_BLOCKS``; ``dn [B]``
    blocks so far):

    1. a line is fitted to the ``W = departure_fit`` block means that ended ``G =
       departure_gap`` blocks before this one (so the fit holds none of an incident's
       first ``G`` blocks) and extrapolated to this block: the departure is this block's
       mean minus the line's value;
    2. the departure of block ``j - G - 1`` (whose fit ended before this one's began:
       the newest that cannot hold this incident's start) joins the stream's record
       ``dmax [B, F]``, the largest absolute departure it has shown: noise, its day's
       curvature, its spikes, earlier incidents;
    3. once ``departure_history`` departures are in the record, and where the fit holds
       no block of the stream's last frozen reading (``dl [B]``, which the caller keeps:
       a frozen sensor's readings are not its course, and a course fitted through them
       would make its resumption a departure), the departure's
       ``ratio`` to it (the largest over features) is the channel's evidence: at
       ``departure_ratio`` it is at the threshold. It alarms once per incident: as
       ``stuck_cap`` nats at the block where it reaches the threshold after a block below
       it (``dq [B]``: the last block's end was at the threshold), as nothing while it
       stays there, and below it as the fraction of the alarm level it reached.

    ``learn [B]``: the streams whose value is known (elsewhere nothing moves).
    """
    B, F = x.shape
    out = Departure(np.zeros(B), np.zeros(B, np.bool_), np.zeros((B, F)))
    m = p.departure_block
    if m <= 0:
        return out
    first = learn & (dn == 0) & (dk == 0)
    dref[first] = x[first]
    ds += np.where(learn[:, None], x - dref, 0.0)
    dk += learn
    end = np.flatnonzero(learn & (dk >= m))
    if not len(end):
        return out
    W, G, K = p.departure_fit, p.departure_gap, DEPARTURE_BLOCKS
    E = len(end)
    j = dn[end].astype(np.int64)
    ring = db[end]
    ring[np.arange(E), j % K] = ds[end] / m
    db[end] = ring
    dn[end] += 1.0
    ds[end], dk[end] = 0.0, 0.0
    # This block's departure and that of the block G + 1 back (step 2), in one pass.
    prior = j - G - 1
    dep = _departure(ring, np.stack([j, prior], axis=1), W, G)
    now, before = dep[:, 0], dep[:, 1]
    joins = (prior >= W + G)[:, None]
    record = np.where(joins, np.maximum(dmax[end], np.abs(before)), dmax[end])
    dmax[end] = record
    ready = (j >= W + G) & (j - W - 2 * G >= p.departure_history) & (record > 0).any(axis=1)
    ready &= j - G - W > dl[end]
    r = np.divide(np.abs(now), record, out=np.zeros_like(now), where=ready[:, None] & (record > 0))
    ratio = r.max(axis=1)
    level = _alarm_nats(p)
    ongoing = ratio >= p.departure_ratio
    onset = ongoing & (dq[end] < 0.5)
    at_onset = p.stuck_cap if p.stuck_cap > 0 else level
    out.surprise[end] = np.where(
        onset, at_onset, np.where(ongoing, 0.0, level * ratio / p.departure_ratio)
    )
    out.onset[end] = onset
    out.ratio[end] = r
    dq[end] = ongoing
    return out


def _departure(ring: F32, j: npt.NDArray[np.int64], W: int, G: int) -> F64:
    """Block ``j``'s mean minus the line through the ``W`` block means that ended ``G``
    blocks before it, extrapolated to it: ``ring [E, DEPARTURE_BLOCKS, F]``, ``j [E, k]``
    (k blocks of each row) → ``[E, k, F]``. The line's value there is a fixed weighting of
    the fitted means (:func:`_line_weights`)."""
    K = DEPARTURE_BLOCKS
    rows = np.arange(len(ring))[:, None]
    seg = ring[rows[:, :, None], (j[:, :, None] - G - W + np.arange(W)) % K]  # [E, k, W, F]
    line = np.einsum("ekwf,w->ekf", seg.astype(np.float64), _line_weights(W, G))
    out: F64 = ring[rows, j % K].astype(np.float64) - line
    return out


@functools.cache
def _line_weights(W: int, G: int) -> F64:
    """The least-squares line through ``W`` equally spaced points, evaluated ``G + 1``
    points past the last, as weights on the points: mean plus slope times the distance
    from their centre, ``1 / W + t_w (G + (W + 1) / 2) / sum(t^2)``."""
    t = np.arange(W) - (W - 1) / 2.0
    out: F64 = (1.0 / W + t * (G + (W + 1) / 2.0) / float(t @ t)).astype(np.float64)
    return out


# A value joins the day channel's record this long after it was seen (and before twice
# that), so an incident does not raise its own bar while it builds; and only where it
# was below this many times the record then, so an incident does not teach the record
# that incidents are usual.
DAY_GAP_S = 43200.0
DAY_QUIET = 2.0
# The least record a day's energy is measured against: a stream whose values have sat on
# their expected course to a third of their spread (a noiseless shape) is not alarmed by
# the first day that strays a little further.
DAY_FLOOR = 0.1


@dataclasses.dataclass
class Day:
    """One step of the day channel for a batch (:func:`day_step`)."""

    surprise: F64  # [B] what it adds to the novelty rule (nats)
    onset: npt.NDArray[np.bool_]  # [B] it reached the threshold at this step
    ongoing: npt.NDArray[np.bool_]  # [B] an incident lasts: from its onset until quiet
    # [B] within ``day_memory_s`` of the incident's onset: the day itself, which the
    # profile should not learn (after it, a change of the stream's days for good is)
    fresh: npt.NDArray[np.bool_]


def day_step(
    p: AnomalyParams,
    d: F64,
    learn: npt.NDArray[np.bool_],
    ts: F64,
    step: F64,
    yq: F64,
    yrec: F64,
    yb: F64,
    yp: F64,
    yblk: F64,
    yt0: F64,
    yon: F64,
) -> Day:
    """A day unlike the stream's recent days: a holiday, a storm, an event that reshapes
    hours of it. Updates the channel's state in place.

    A holiday on a stream with a week (a Thursday shaped like a Sunday) is a run of
    moderate deviations of both signs from where the profile expects the values: more
    traffic at night, none of the rush hour. The sustained channel's signed mean cancels
    them, and each is within what the stream's routine weeks show. Their energy over a
    day is not. ``d [B]``: the value's deviation from where it is expected, in the spread
    values show there (the sustained channel's input); ``ts [B]``: its time; ``step [B]``:
    the time since the stream's previous value (seconds), which the caller caps at the
    stream's usual step, so that after an outage one value does not make a day, nor the
    record forget what the outage did not show; ``learn [B]``: where ``d`` is known
    (elsewhere nothing moves).

    1. ``yq``: the EW mean of ``min(d², day_clip²)`` with a time constant of
       ``day_memory_s`` (by time, so the sampling rate does not matter); the clip keeps
       one outlier (the level channel's) from making a day.
    2. ``yrec``: the record, the largest ``yq`` the stream has shown, forgetting with a time
       constant of ``day_forget_s`` (the record describes the stream's recent weeks, not
       its first, immature days). Values join it in blocks of :data:`DAY_GAP_S`: ``yb`` is
       the largest quiet ``yq`` (below :data:`DAY_QUIET` times the record) of the current
       block ``yblk``, ``yp`` the previous block's, which joins the record when a new
       block begins.
    3. Once the stream is ``day_history_s`` old (``yt0``: its first value's time), the
       ratio ``yq / max(yrec, DAY_FLOOR)`` is the evidence: at ``day_ratio`` it is at the threshold. It
       alarms once per incident: as ``stuck_cap`` nats at the step where it reaches the
       threshold after it was last quiet (below :data:`DAY_QUIET`; ``yon`` holds the
       onset's time in between, so a ratio that wavers about the threshold is one
       incident), as nothing while the incident lasts, and below the threshold as the
       fraction of the alarm level it reached. The caller keeps the profile from learning
       the incident's first ``day_memory_s`` (``fresh``), not the rest: a stream whose
       days change shape for good re-learns them.
    """
    B = len(d)
    out = Day(np.zeros(B), np.zeros(B, np.bool_), np.zeros(B, np.bool_), np.zeros(B, np.bool_))
    if p.day_memory_s <= 0:
        return out
    y = np.minimum(np.square(finite.nan_to_num(d)), p.day_clip**2)
    first = learn & (yt0 == 0)
    more = learn & ~first
    # 1-2. The energy and the forgetting record, by the time since the last value.
    gap = np.where(more, np.maximum(finite.nan_to_num(step, posinf=0.0, neginf=0.0), 0.0), 0.0)
    yq[:] = np.where(first, y, np.where(more, yq + -np.expm1(-gap / p.day_memory_s) * (y - yq), yq))
    yrec *= np.exp(-gap / p.day_forget_s)
    yt0[:] = np.where(first, np.where(ts == 0, 1e-9, ts), yt0)
    # (No record yet: every value is quiet, and joins it.)
    ratio = np.where(yrec > 0, yq / np.maximum(yrec, DAY_FLOOR), 0.0)
    block = np.floor(ts / DAY_GAP_S)
    new = learn & (block != yblk)
    yrec[:] = np.where(new, np.maximum(yrec, yp), yrec)
    yp[:] = np.where(new, np.where(first, 0.0, yb), yp)
    yb[:] = np.where(new, 0.0, yb)
    yblk[:] = np.where(new, block, yblk)
    yb[:] = np.where(learn & (ratio < DAY_QUIET), np.maximum(yb, yq), yb)
    # 3. Once per incident.
    ready = learn & (ts - yt0 >= p.day_history_s) & (yrec > 0)
    ongoing = ready & (ratio >= p.day_ratio)
    onset = ongoing & (yon <= 0)
    yon[:] = np.where(onset, np.maximum(ts, 1e-9), np.where(learn & (ratio < DAY_QUIET), 0.0, yon))
    lasting = learn & (yon > 0)
    out.fresh = lasting & (ts - yon < p.day_memory_s)
    level = _alarm_nats(p)
    at_onset = p.stuck_cap if p.stuck_cap > 0 else level
    out.surprise = np.where(
        onset, at_onset, np.where(lasting | ~ready, 0.0, level * ratio / p.day_ratio)
    )
    out.onset, out.ongoing = onset, lasting
    return out
