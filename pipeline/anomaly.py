"""Forecast errors → anomaly scores in [0, 1], per stream and vectorised over a batch.

The method, applied at every step t of a stream once it has a forecast from t-1:

1. **Normalised error** ``e = rms_f((x_f - forecast_f) / std_f)``: the surprise of the
   observed value in units of the stream's own spread (statistics before step t).
2. **Short-term surprise** ``s = EW mean of e`` with a fast rate (a handful of steps),
   so one spike and a sustained shift both register.
3. **Long-term error distribution** ``(mu, sigma)``: EW mean and variance of e with a
   slow rate, seeded from the calibration on validation data so a new stream is
   usable early. This is what makes the threshold adaptive per stream: a noisy
   sensor has a wide error distribution and needs a larger surprise to alarm.
4. **Level novelty**: how far the value itself lies from the stream's long-run
   distribution (the normaliser's mean and spread before this step), as a two-sided
   Gaussian tail. Forecast errors alone miss slow departures that the model tracks
   step by step; on NAB this channel carries most of the signal (docs/quality.md).
5. **Stuck sensor**: for a stream that (after ``stuck_history`` values) repeats a value
   at a long-run rate ``p`` below ``stuck_max_rate``, a run of ``run`` unchanged values
   has probability ``p ** run``, so a continuous sensor that freezes is flagged within a
   few steps. Streams that repeat values routinely (counts, quantised readings) do so in
   clusters, where ``p ** run`` would be far too confident; for them this channel is off.
6. **Likelihood** (after Numenta's anomaly likelihood): the Gaussian tail
   ``tail = min(P(Z > (s - mu) / sigma), level_tail ** value_weight, p ** run)``, then the log
   scale ``score = log(tail + 1e-10) / log(1e-10)`` in [0, 1], so 0.5 means a tail of 1e-5.
7. **Decision**: ``is_anomaly = warm and score >= threshold``; the long-term statistics
   are updated after scoring, so a surprise does not dilute itself.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["AnomalyParams", "error_of", "gaussian_tail", "score_step"]

F64 = npt.NDArray[np.float64]
_LOG_FLOOR = math.log(1e-10)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnomalyParams:
    """Stored in every model.json under ``anomaly``; the threshold comes from calibration."""

    short_alpha: float = 0.3
    long_alpha: float = 1.0 / 1000.0
    prior_mean: float = 1.0
    prior_std: float = 1.0
    prior_weight: float = 50.0
    min_sigma: float = 0.05
    value_weight: float = 1.0
    min_history: int = 10
    stuck_alpha: float = 1.0 / 1000.0
    min_rep_p: float = 1e-3
    stuck_max_rate: float = 0.01
    stuck_history: int = 100
    prior_rep: float = 0.1
    threshold: float = 0.5

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnomalyParams:
        return cls(**data)


def error_of(x: F64, forecast: F64, std: F64) -> F64:
    """Normalised one-step error per stream: ``x, forecast, std [B, F]`` → ``[B]``."""
    r = (x - forecast) / std
    out: F64 = np.sqrt(np.mean(r * r, axis=1))
    return out


def gaussian_tail(z: F64) -> F64:
    """P(Z > z) for standard normal Z, vectorised.

    erfc by the Chebyshev fit of Numerical Recipes (``erfcc``): *relative* error below
    1.2e-7 everywhere, which the log-scale score needs deep in the tail.
    """
    u = z / math.sqrt(2.0)
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
    erfc_a = t * np.exp(-a * a + poly)
    erfc_u = np.where(u >= 0, erfc_a, 2.0 - erfc_a)
    out: F64 = 0.5 * erfc_u
    return out


def stuck_tail(
    p: AnomalyParams, repeated: npt.NDArray[np.bool_], n: F64, run: F64, rep_p: F64
) -> tuple[F64, F64, F64]:
    """Tail probability of the current run of unchanged values; returns ``(tail, run, rep_p)``.

    ``repeated [B]``: the value equals the previous one; ``n [B]``: values seen before.
    """
    run = np.where(repeated, run + 1.0, 0.0)
    active = (n >= p.stuck_history) & (rep_p < p.stuck_max_rate)
    tail = np.where(active, np.maximum(rep_p, p.min_rep_p) ** run, 1.0)
    a = np.maximum(1.0 / (n + 10.0), p.stuck_alpha)
    rep_p = rep_p + a * (repeated.astype(np.float64) - rep_p)
    return tail, run, rep_p


def score_step(
    p: AnomalyParams,
    e: F64,
    n: F64,
    short: F64,
    mu: F64,
    var: F64,
    z_level: F64 | None = None,
    extra_tail: F64 | None = None,
) -> tuple[F64, F64, F64, F64, F64]:
    """Score one error per stream and advance the error statistics.

    ``e, n, short, mu, var [B]`` (``n`` counts errors seen, 0 for a new stream, whose
    ``mu, var`` the caller seeds with the priors); ``z_level [B]`` is the value's distance
    from the stream's long-run mean in standard deviations (NaN: not known yet).
    Returns ``(score, n, short, mu, var)``.
    """
    short = np.where(n == 0, e, short + p.short_alpha * (e - short))
    sigma = np.maximum(np.sqrt(np.maximum(var, 0.0)), p.min_sigma)
    tail = gaussian_tail((short - mu) / sigma)
    if z_level is not None and p.value_weight > 0:
        level_tail = 2.0 * gaussian_tail(np.abs(np.nan_to_num(z_level, nan=0.0)))
        tail = np.minimum(tail, np.minimum(level_tail, 1.0) ** p.value_weight)
    if extra_tail is not None:
        tail = np.minimum(tail, extra_tail)
    score = np.clip(np.log(tail + 1e-10) / _LOG_FLOOR, 0.0, 1.0)
    n = n + 1.0
    # The priors count as `prior_weight` earlier observations, then the rate settles at long_alpha.
    a = np.maximum(1.0 / (n + p.prior_weight), p.long_alpha)
    d = e - mu
    mu = mu + a * d
    var = (1.0 - a) * (var + a * d * d)
    return score, n, short, mu, var
