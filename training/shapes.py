"""Feeds with nothing to find: the shapes of NAB's anomaly-free files and of everyday
operational metrics, for the alert budget (at most one alarm per 5,000 events per stream).

NAB holds four anomaly-free artificial files (a flat line, a noiseless day, a perfect
square wave, noise), and every false alarm on them costs; nab-dev has none of them but a
day with small noise. The operational shapes are what real feeds look like when nothing
happens: hourly readings, low counts, CPU percentages quantised by the collector, events
on a schedule, irregular or missing timestamps, a random walk. :data:`HEAVY` are anomaly-free
too, but with tails far heavier than Gaussian (independent lognormal values; a stream
that spikes on one reading in a hundred): what the detector makes of a stream whose
spikes are its habit is reported apart from the budget's shapes.

Deterministic per seed; each stream starts on 2014-04-01 like NAB's files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from training.synthetic import SyntheticStream

__all__ = ["HEAVY", "SHAPES", "clean_feeds"]

F64 = npt.NDArray[np.float64]
T0 = 1396310400.0  # 2014-04-01 00:00 UTC
DAY = 86400.0


def _grid(n: int, step_s: float) -> F64:
    out: F64 = T0 + step_s * np.arange(n, dtype=np.float64)
    return out


def _hours(ts: F64) -> F64:
    out: F64 = np.mod(ts, DAY) / 3600.0
    return out


def _q(v: F64, step: float) -> F64:
    out: F64 = np.round(v / step) * step
    return out


def _day(ts: F64) -> F64:
    out: F64 = np.sin(2 * np.pi * _hours(ts) / 24.0)
    return out


Maker = Callable[[np.random.Generator, int], tuple[F64, F64]]


def _flat(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    return _grid(n, 300.0), np.full(n, float(rng.choice([0.0, 20.0, 50.0])))


def _daily_no_noise(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 300.0)
    return ts, 50.0 + 30.0 * _day(ts + rng.uniform(0, DAY))


def _square_wave(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 300.0)
    h = _hours(ts + rng.uniform(0, DAY))
    return ts, np.where((h >= 6) & (h < 18), 80.0, 20.0)


def _noisy(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    return _grid(n, 300.0), rng.uniform(0.0, 100.0, n)


def _daily_small_noise(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 300.0)
    h = _hours(ts)
    busy = np.clip(np.minimum((h - 7.0) / 2.0, (19.0 - h) / 2.0), 0.0, 1.0)
    return ts, 20.0 + 60.0 * busy + rng.normal(0.0, 1.0, n)


def _hourly_temperature(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 3600.0)
    walk = np.cumsum(rng.normal(0.0, 0.06, n))
    return ts, 70.0 + 5.0 * _day(ts - 9 * 3600.0) + walk + rng.normal(0.0, 0.7, n)


def _low_counts(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 300.0)
    return ts, rng.poisson(3.0 * (1.0 + 0.8 * _day(ts))).astype(np.float64)


def _cpu_quantised(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 300.0)
    return ts, _q(np.maximum(0.0, 2.0 + 0.5 * _day(ts) + rng.normal(0.0, 0.2, n)), 0.066)


def _cpu_idle(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    return _grid(n, 300.0), _q(np.maximum(0.0, 0.1 + rng.normal(0.0, 0.03, n)), 0.066)


def _scheduled_jobs(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = _grid(n, 300.0)
    on = np.mod(np.arange(n), 12) < 2  # ten minutes of every hour
    return ts, np.where(on, 60.0, 3.0) + _q(rng.normal(0.0, 0.5, n), 0.1)


def _random_walk(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    return _grid(n, 300.0), 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))


def _gaps(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    step = np.where(rng.random(n) < 0.02, rng.integers(2, 50, n) * 300.0, 300.0)
    ts = T0 + np.cumsum(step)
    return ts, 50.0 + 20.0 * _day(ts) + rng.normal(0.0, 2.0, n)


def _jitter(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    ts = T0 + np.cumsum(rng.uniform(200.0, 400.0, n))
    return ts, 50.0 + 20.0 * _day(ts) + rng.normal(0.0, 2.0, n)


def _lognormal(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    return _grid(n, 300.0), np.exp(rng.normal(3.0, 0.6, n))


def _habitual_spikes(rng: np.random.Generator, n: int) -> tuple[F64, F64]:
    base = _q(np.maximum(0.0, 1.0 + rng.normal(0.0, 0.1, n)), 0.1)
    return _grid(n, 300.0), np.where(rng.random(n) < 0.01, rng.uniform(20.0, 60.0, n), base)


_MAKERS: dict[str, Maker] = {
    "flat": _flat,
    "daily_no_noise": _daily_no_noise,
    "square_wave": _square_wave,
    "noisy": _noisy,
    "daily_small_noise": _daily_small_noise,
    "hourly_temperature": _hourly_temperature,
    "low_counts": _low_counts,
    "cpu_quantised": _cpu_quantised,
    "cpu_idle": _cpu_idle,
    "scheduled_jobs": _scheduled_jobs,
    "random_walk": _random_walk,
    "gaps": _gaps,
    "jitter": _jitter,
    "lognormal": _lognormal,
    "habitual_spikes": _habitual_spikes,
}
HEAVY = ("lognormal", "habitual_spikes")
SHAPES = tuple(k for k in _MAKERS if k not in HEAVY)


def clean_feeds(
    seed: int, length: int = 4032, shapes: tuple[str, ...] = SHAPES
) -> list[SyntheticStream]:
    """One stream of ``length`` values per shape (NAB's artificial files hold 4,032, two
    weeks every 5 minutes), none of them with an anomaly."""
    out = []
    for name in shapes:
        # Seeded by the shape's own place, so a stream does not depend on its company.
        rng = np.random.default_rng([seed, list(_MAKERS).index(name)])
        ts, values = _MAKERS[name](rng, length)
        out.append(SyntheticStream(f"{name}-{seed}", ts, values.astype(np.float64), ()))
    return out
