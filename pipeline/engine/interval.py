"""Forecast intervals from the model's predicted scale, calibrated per stream online.

A probabilistic step model predicts, per horizon step and feature, a location (the
forecast) and a scale (``scale`` output, in the stream's normalised units; the stepper
turns both into sensor units). For a central interval of probability ``coverage``:

    lo, hi = forecast ∓ m · q · scale

where ``q`` is the distribution's quantile (:func:`half_width`) and ``m`` a per-stream
multiplier adapted online, as adaptive conformal inference does (Gibbs and Candès,
2021): after every event, ``log m += rate · (miss - (1 - coverage))`` where ``miss`` is
1 if the value fell outside its t+1 interval. A stream whose model is overconfident
widens its intervals, an underconfident one narrows them, and each stream's long-run
miss rate approaches ``1 - coverage`` whatever the model's calibration on it.

The same scale gives the detector its forecast surprise: the error in units of the
predicted scale (:mod:`pipeline.engine.stepper`).
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from pipeline.errors import ConfigError

__all__ = ["DISTRIBUTIONS", "Band", "IntervalParams", "adapt", "half_width", "scale_per_mae"]

F64 = npt.NDArray[np.float64]
# The predictive distributions a model's scale head can be trained for (model.json).
DISTRIBUTIONS = ("laplace", "gaussian")
LOG_LIMIT = 3.0  # m stays within e^±3 (x0.05 .. x20) of the model's own scale


@dataclasses.dataclass(frozen=True)
class IntervalParams:
    """The interval the scorer reports: its probability and the adaptation rate."""

    coverage: float = 0.9
    rate: float = 0.05

    def __post_init__(self) -> None:
        if not 0.5 <= self.coverage < 1.0:
            raise ConfigError(f"interval coverage must be in [0.5, 1), got {self.coverage}")
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"interval adaptation rate must be in [0, 1], got {self.rate}")


def half_width(distribution: str, coverage: float) -> float:
    """``q``: the central ``coverage`` interval is location ± q · scale."""
    alpha = 1.0 - coverage
    if distribution == "laplace":  # P(|X - μ| > q·b) = e^-q
        return -math.log(alpha)
    if distribution == "gaussian":
        return NormalDist().inv_cdf(1.0 - alpha / 2.0)
    raise ConfigError(f"unknown distribution {distribution!r}; known: {DISTRIBUTIONS}")


def scale_per_mae(distribution: str) -> float:
    """The distribution's scale per unit of mean absolute deviation: a Laplace's ``b`` is
    its mean absolute deviation, a Gaussian's sigma is sqrt(pi / 2) times it."""
    if distribution == "laplace":
        return 1.0
    if distribution == "gaussian":
        return math.sqrt(math.pi / 2.0)
    raise ConfigError(f"unknown distribution {distribution!r}; known: {DISTRIBUTIONS}")


def adapt(qlog: F64, miss: F64, params: IntervalParams) -> F64:
    """One adaptive-conformal update of the per-stream log multiplier."""
    out: F64 = np.clip(qlog + params.rate * (miss - (1.0 - params.coverage)), -LOG_LIMIT, LOG_LIMIT)
    return out


@dataclasses.dataclass(frozen=True)
class Band:
    """The interval rule of one served model: its distribution's ``q`` and the adaptation."""

    q: float
    params: IntervalParams
    distribution: str = "laplace"

    @classmethod
    def of(cls, distribution: str, params: IntervalParams) -> Band:
        return cls(half_width(distribution, params.coverage), params, distribution)

    def surprise(self, x: F64, fc1: F64, fs1: F64, qlog: F64) -> F64:
        """``-ln P(|X - forecast| >= |x - forecast|)`` in nats under the predictive
        distribution, its scale times the stream's multiplier (so the surprise is
        calibrated per stream); several features: the most surprising one, less ln F
        (a Bonferroni bound). NaN where the scale is unknown."""
        u = np.abs(x - fc1) / (np.exp(qlog)[:, None] * fs1)
        if self.distribution == "laplace":
            nats = u  # P(|X - mu| >= u b) = e^-u
        else:
            from pipeline.engine.anomaly import log_tail

            nats = -(math.log(2.0) + log_tail(u))
        out: F64 = np.maximum(nats.max(axis=1) - math.log(x.shape[1]), 0.0)
        return out

    def nll(self, x: F64, fc1: F64, fs1: F64, qlog: F64, std: F64) -> F64:
        """Negative log density of ``x [B, F]`` under the served predictive distribution
        (its scale times the stream's multiplier), in the stream's units ``std [B, F]``
        so streams and models compare; summed over features. NaN where the scale is unknown."""
        b = np.exp(qlog)[:, None] * fs1 / std
        u = np.abs(x - fc1) / std / b
        if self.distribution == "laplace":
            out: F64 = np.sum(np.log(2.0 * b) + u, axis=1)
        else:
            out = np.sum(0.5 * math.log(2.0 * math.pi) + np.log(b) + 0.5 * u * u, axis=1)
        return out

    def bounds(self, fc: F64, fs: F64, qlog: F64) -> tuple[F64, F64]:
        """``(lo, hi)`` of forecasts ``fc [B, Z, F]`` with scales ``fs`` (NaN stays NaN)."""
        half = self.q * np.exp(qlog)[:, None, None] * fs
        return fc - half, fc + half

    def missed(self, x: F64, fc1: F64, fs1: F64, qlog: F64) -> F64:
        """1.0 where a value ``x [B, F]`` fell outside its t+1 interval (any feature)."""
        half = self.q * np.exp(qlog)[:, None] * fs1
        out: F64 = np.any(np.abs(x - fc1) > half, axis=1).astype(np.float64)
        return out
