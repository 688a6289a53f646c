"""Realistic synthetic sensor feeds with labelled, injected anomalies.

Each stream is a daily (and optionally weekly) seasonal signal with trend, AR(1)
noise and occasional benign bumps, sampled every ``step_s`` seconds. Anomalies of
the kinds that break real sensors are injected at known positions:

* ``spike``        a single large excursion
* ``level_shift``  the mean jumps and stays
* ``drift``        a slow ramp away from normal
* ``stuck``        the sensor repeats one value
* ``noise_burst``  variance explodes for a while
* ``season_break`` the daily pattern flips phase

Used for the shipped default model, the demo feed and tests; deterministic per seed.
"""

from __future__ import annotations

import csv
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.engine.csvdata import Series

__all__ = ["KINDS", "Anomaly", "SyntheticStream", "generate", "write_csv"]

KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "season_break")


@dataclasses.dataclass(frozen=True)
class Anomaly:
    kind: str
    start: int
    end: int  # inclusive


@dataclasses.dataclass(frozen=True)
class SyntheticStream:
    name: str
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    anomalies: tuple[Anomaly, ...]

    def series(self) -> Series:
        """The stream as the single-feature series that training and replay take."""
        return Series(self.name, self.ts, self.values.reshape(len(self.ts), -1), ("value",))


def _base(rng: np.random.Generator, n: int, step_s: float) -> npt.NDArray[np.float64]:
    t = np.arange(n) * step_s
    day = 86400.0
    level = rng.uniform(10, 100)
    amp = level * rng.uniform(0.05, 0.4)
    phase = rng.uniform(0, 2 * np.pi)
    season = amp * np.sin(2 * np.pi * t / day + phase)
    season += 0.3 * amp * np.sin(4 * np.pi * t / day + 2 * phase)
    if rng.random() < 0.5:
        season += 0.2 * amp * np.sin(2 * np.pi * t / (7 * day))
    trend = level * rng.uniform(-0.05, 0.05) * t / max(t[-1], 1.0)
    noise = np.zeros(n)
    sigma = amp * rng.uniform(0.03, 0.15)
    phi = rng.uniform(0.3, 0.9)
    eps = rng.normal(0, sigma, n)
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + eps[i]
    out: npt.NDArray[np.float64] = level + season + trend + noise
    return out


def _inject(rng: np.random.Generator, x: npt.NDArray[np.float64], kind: str, start: int) -> Anomaly:
    n = len(x)
    scale = float(np.std(x)) or 1.0
    if kind == "spike":
        x[start] += rng.choice([-1, 1]) * scale * rng.uniform(4, 8)
        return Anomaly(kind, start, start)
    if kind == "level_shift":
        x[start:] += rng.choice([-1, 1]) * scale * rng.uniform(1.5, 3)
        return Anomaly(kind, start, min(n - 1, start + 30))
    if kind == "drift":
        length = min(n - start, int(rng.integers(60, 200)))
        x[start : start + length] += np.linspace(0, 1, length) * scale * rng.uniform(2, 4)
        x[start + length :] += scale * 3
        return Anomaly(kind, start, start + length - 1)
    if kind == "stuck":
        length = min(n - start, int(rng.integers(40, 120)))
        x[start : start + length] = x[start]
        return Anomaly(kind, start, start + length - 1)
    if kind == "noise_burst":
        length = min(n - start, int(rng.integers(20, 80)))
        x[start : start + length] += rng.normal(0, scale * 1.5, length)
        return Anomaly(kind, start, start + length - 1)
    # season_break: invert the deviation from a slow mean for a while
    length = min(n - start, int(rng.integers(100, 250)))
    seg = x[start : start + length]
    x[start : start + length] = 2 * seg.mean() - seg
    return Anomaly(kind, start, start + length - 1)


def generate(
    streams: int = 8,
    length: int = 2000,
    step_s: float = 300.0,
    seed: int = 0,
    anomalies_per_stream: int = 2,
    start: datetime | None = None,
    prefix: str = "sensor",
    clean_fraction: float = 0.3,
) -> list[SyntheticStream]:
    """``streams`` feeds of ``length`` points; anomalies only after ``clean_fraction``."""
    rng = np.random.default_rng(seed)
    t0 = (start or datetime(2026, 1, 1, tzinfo=UTC)).timestamp()
    out = []
    for s in range(streams):
        x = _base(rng, length, step_s)
        found = []
        lo = int(length * clean_fraction)
        if anomalies_per_stream and length - lo > 50:
            positions = np.sort(
                rng.choice(np.arange(lo, length - 20), anomalies_per_stream, replace=False)
            )
            kinds = rng.choice(KINDS, anomalies_per_stream)
            for pos, kind in zip(positions.tolist(), kinds.tolist(), strict=True):
                found.append(_inject(rng, x, str(kind), int(pos)))
        ts = (t0 + np.arange(length) * step_s).astype(np.float64)
        out.append(SyntheticStream(f"{prefix}-{s:03d}", ts, x, tuple(found)))
    return out


def write_csv(streams: list[SyntheticStream], folder: Path) -> list[Path]:
    """One NAB-layout CSV (``timestamp,value``) per stream; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in streams:
        path = folder / f"{s.name}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True):
                w.writerow(
                    [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"), f"{v:.6g}"]
                )
        paths.append(path)
    return paths
