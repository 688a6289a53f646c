"""A broad generated corpus for pretraining the default model to forecast unseen streams.

In the spirit of synthetic pretraining (Chronos adds generated series to its corpus):
each stream draws its own sampling period, scale and a mix of components, so that one
model meets, before it ever sees a real sensor, what real sensors do:

- sampling every 1, 5, 10, 30 or 60 minutes, sometimes jittered, with occasional gaps;
- daily and weekly seasons of random shape and strength (or none);
- trends, random walks and level shifts;
- Gaussian, AR(1) and heavy-tailed (Student-t) noise;
- counts (Poisson around a seasonal rate), quantised readings, spiky bursty series;
- scales from 1e-2 to 1e5.

No anomalies are injected: the corpus teaches forecasting. Series are deterministic in
the seed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from pipeline.engine.csvdata import Series
from training.synthetic import SyntheticStream

__all__ = ["corpus", "held_out"]

F64 = npt.NDArray[np.float64]
PERIODS_S = (60.0, 300.0, 300.0, 300.0, 600.0, 1800.0, 3600.0)
DAY, WEEK = 86_400.0, 7 * 86_400.0


def _times(rng: np.random.Generator, n: int, step: float, t0: float) -> F64:
    steps = np.full(n, step)
    if rng.random() < 0.25:  # irregular sampling
        steps *= rng.uniform(0.7, 1.3, n)
    if rng.random() < 0.2:  # a few gaps of many steps
        for at in rng.integers(1, n, 3):
            steps[at] *= rng.integers(5, 60)
    out: F64 = t0 + np.cumsum(steps) - steps[0]
    return out


def _season(rng: np.random.Generator, t: F64) -> F64:
    out = np.zeros_like(t)
    if rng.random() < 0.75:  # daily, a few harmonics
        for k in range(1, int(rng.integers(1, 4)) + 1):
            out += rng.normal(0, 1.0 / k) * np.sin(2 * np.pi * k * t / DAY + rng.uniform(0, 6.3))
    if rng.random() < 0.4:  # weekly, or a weekend dip
        if rng.random() < 0.5:
            out += rng.normal(0, 0.7) * np.sin(2 * np.pi * t / WEEK + rng.uniform(0, 6.3))
        else:
            weekday = np.floor(np.mod(t / DAY + 3, 7))  # Monday = 0
            out -= rng.uniform(0.3, 1.5) * (weekday >= 5)
    if rng.random() < 0.3:  # square daily pattern (business hours)
        hour = np.mod(t, DAY) / 3600
        start = rng.uniform(5, 10)
        out += rng.uniform(0.5, 2) * ((hour > start) & (hour < start + rng.uniform(6, 12)))
    return out


def _noise(rng: np.random.Generator, n: int) -> F64:
    kind = rng.integers(0, 3)
    if kind == 0:
        eps = rng.normal(0, 1, n)
    elif kind == 1:
        eps = rng.standard_t(rng.uniform(2.2, 5), n) / 2
    else:
        eps = rng.normal(0, 1, n)
        phi = rng.uniform(0.3, 0.95)
        for i in range(1, n):
            eps[i] += phi * eps[i - 1]
        eps *= np.sqrt(1 - phi**2)
    return eps


def _one(rng: np.random.Generator, n: int, t0: float) -> tuple[F64, F64]:
    step = float(rng.choice(PERIODS_S))
    t = _times(rng, n, step, t0)
    season = _season(rng, t)
    walk = np.cumsum(rng.normal(0, 1, n)) * rng.choice([0.0, 0.0, 0.05, 0.2])
    trend = rng.normal(0, 1) * (t - t[0]) / max(t[-1] - t[0], 1.0) * rng.choice([0.0, 1.0])
    shifts = np.zeros(n)
    if rng.random() < 0.3:
        for at in rng.integers(n // 10, n, int(rng.integers(1, 4))):
            shifts[at:] += rng.normal(0, 2)
    noise = _noise(rng, n) * rng.uniform(0.05, 1.0)
    x = season + walk + trend + shifts + noise
    kind = rng.integers(0, 6)
    scale = 10 ** rng.uniform(-2, 5)
    if kind == 0:  # counts around a seasonal rate
        rate = np.exp(np.clip(0.6 * (season + shifts) + rng.uniform(0, 4), -5, 9))
        return t, rng.poisson(rate).astype(np.float64)
    if kind == 1:  # quantised readings
        q = rng.choice([0.1, 0.5, 1.0, 2.0])
        return t, np.round((x * 5 + 50) / q) * q
    if kind == 2:  # spiky, bursty (tweets, requests)
        base = np.exp(0.5 * season + rng.uniform(0, 3))
        bursts = rng.random(n) < 0.01
        return t, scale * (base * rng.lognormal(0, 0.4, n) + bursts * base * rng.uniform(3, 15, n))
    return t, scale * (x + rng.uniform(-5, 50))


def corpus(
    streams: int = 200, length: int = 3000, seed: int = 0, prefix: str = "corpus"
) -> list[SyntheticStream]:
    """``streams`` varied series of ``length`` points each (no injected anomalies)."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 1, 6, tzinfo=UTC).timestamp()  # a Monday
    out = []
    for s in range(streams):
        start = t0 + float(rng.integers(0, 365)) * DAY + float(rng.uniform(0, DAY))
        t, x = _one(rng, length, start)
        out.append(SyntheticStream(f"{prefix}-{s:04d}", t, x, ()))
    return out


def held_out(seed: int, streams: int = 60, length: int = 4000) -> list[Series]:
    """A corpus the default model never saw (it was trained on seed 0), as single-feature
    series: what the forecast and detection benchmarks measure on."""
    return [c.series() for c in corpus(streams, length, seed=seed, prefix="corpus")]
