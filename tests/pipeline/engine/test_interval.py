"""Forecast intervals: the distribution's quantile, and the per-stream adaptation that
holds coverage whatever the model's calibration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.events import DecodedBatch
from pipeline.engine.interval import Band, IntervalParams, adapt, half_width
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.errors import ConfigError


def test_half_widths_are_the_distributions_quantiles() -> None:
    assert half_width("laplace", 0.9) == pytest.approx(math.log(10))
    assert half_width("gaussian", 0.9) == pytest.approx(1.6449, abs=1e-4)
    with pytest.raises(ConfigError):
        half_width("cauchy", 0.9)
    with pytest.raises(ConfigError):
        IntervalParams(coverage=1.0)


@pytest.mark.parametrize("wrong", [0.2, 1.0, 5.0])
def test_adaptation_brings_each_streams_coverage_to_the_target(wrong: float) -> None:
    """Laplace noise of scale 1, a model that claims ``wrong``: too narrow, right, too wide.
    After a settling period every stream's miss rate is within 2 points of 10%."""
    rng = np.random.default_rng(0)
    band = Band.of("laplace", IntervalParams(coverage=0.9, rate=0.05))
    B, T = 40, 6000
    qlog = np.zeros(B)
    misses = np.zeros(B)
    for t in range(T):
        x = rng.laplace(0.0, 1.0, (B, 1))
        missed = band.missed(x, np.zeros((B, 1)), np.full((B, 1), wrong), qlog)
        if t >= 1000:
            misses += missed
        qlog = adapt(qlog, missed, band.params)
    rate = misses / (T - 1000)
    assert np.abs(rate - 0.1).max() < 0.02, rate
    if wrong == 1.0:  # a calibrated model keeps its own width
        assert abs(float(np.median(qlog))) < 0.15


def test_served_intervals_contain_the_forecast_and_cover_a_noisy_stream(
    tiny_registry: Path,
) -> None:
    served = ServedModel("tiny", Registry(tiny_registry))
    assert served.band is not None
    rng = np.random.default_rng(1)
    n, streams = 1500, 4
    t = np.arange(n)
    rows = []
    for s in range(streams):
        v = 50 + 10 * np.sin(t / 20 + s) + rng.normal(0, 1 + s, n)
        rows.extend((i, f"s{s}", float(v[i])) for i in range(n))
    rows.sort()
    batch = DecodedBatch(
        index=np.arange(len(rows), dtype=np.int64),
        stream_ids=[sid for _, sid, _ in rows],
        ts=1_764_000_000.0 + 60.0 * np.asarray([i for i, _, _ in rows], np.float64),
        values=np.asarray([[v] for _, _, v in rows]),
        ts_raw=[i for i, _, _ in rows],
        rejections=[],
    )
    scored = served.score(batch, np.arange(len(rows), dtype=np.int64), now=1_764_100_000.0)
    assert len(scored.rows) == len(rows)
    lo, fc, hi = scored.lo[:, 0, 0], scored.forecast[:, 0, 0], scored.hi[:, 0, 0]
    assert np.isfinite(lo).all() and (lo <= fc).all() and (fc <= hi).all()
    # Coverage of the next value, per stream, after the first 300 events.
    for s in range(streams):
        mine = np.asarray([i for i, (_, sid, _) in enumerate(rows) if sid == f"s{s}"])
        v = batch.values[mine, 0]
        inside = (v[301:] >= lo[mine][300:-1]) & (v[301:] <= hi[mine][300:-1])
        assert 0.85 <= inside.mean() <= 0.95, (s, inside.mean())


def test_nll_is_the_negative_log_density_in_stream_units() -> None:
    import math

    from pipeline.engine.interval import Band, IntervalParams

    x, fc, std = np.array([[3.0]]), np.array([[1.0]]), np.array([[2.0]])
    fs, q = np.array([[4.0]]), np.zeros(1)  # scale 2 stream units, error 1 stream unit
    lap = Band.of("laplace", IntervalParams()).nll(x, fc, fs, q, std)
    assert math.isclose(float(lap[0]), math.log(2 * 2.0) + 1 / 2.0)
    gau = Band.of("gaussian", IntervalParams()).nll(x, fc, fs, q, std)
    assert math.isclose(float(gau[0]), 0.5 * math.log(2 * math.pi) + math.log(2.0) + 0.125)
