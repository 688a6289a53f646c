"""Event-time covariates: known phases at known times, bounded gaps, and models without
covariates (the previous shipped default) still serving."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.engine.covariates import COVARIATES, covariates
from pipeline.engine.events import DecodedBatch
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel

REPO = Path(__file__).resolve().parents[3]


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_phases_of_known_times() -> None:
    ts = np.asarray(
        [_at("2026-11-30T00:00:00"), _at("2026-11-30T12:00:00"), _at("2026-12-03T06:00:00")]
    )
    got = covariates(ts, ts - 60.0, COVARIATES)
    # Monday midnight: day and week phases both 0.
    np.testing.assert_allclose(got[0], [0, 1, 0, 1, np.log1p(1) / 5], atol=1e-6)
    # Monday noon: half a day.
    np.testing.assert_allclose(got[1, :2], [0, -1], atol=1e-6)
    # Thursday 06:00: a quarter day; 3.25 days into the week.
    week = 2 * np.pi * 3.25 / 7
    np.testing.assert_allclose(got[2, :4], [1, 0, np.sin(week), np.cos(week)], atol=1e-6)


def test_gap_is_zero_for_a_first_event_and_bounded_for_a_long_silence() -> None:
    ts = np.asarray([1e9, 1e9, 1e9])
    prev = np.asarray([-np.inf, np.nan, 1e9 - 10 * 365 * 86400.0])
    gap = covariates(ts, prev, ("gap",))[:, 0]
    assert gap[0] == gap[1] == 0.0 and gap[2] == 3.0


def test_a_model_without_covariates_still_serves(tmp_path: Path) -> None:
    shutil.copytree(REPO / "exported_models", tmp_path / "models")
    reg = Registry(tmp_path / "models")
    reg.promote("default", "v20261125T220814Z")  # trained before covariates existed
    served = ServedModel("default", reg)
    assert served.meta.covariates == ()
    n = 30
    batch = DecodedBatch(
        index=np.arange(n, dtype=np.int64),
        stream_ids=["s"] * n,
        ts=1_764_000_000.0 + 60.0 * np.arange(n),
        values=(20 + np.sin(np.arange(n) / 3))[:, None],
        ts_raw=list(range(n)),
        rejections=[],
    )
    scored = served.score(batch, np.arange(n, dtype=np.int64), now=1_764_100_000.0)
    assert len(scored.rows) == n and np.isfinite(scored.forecast).all()
    assert served.band is None and np.isnan(scored.lo).all()  # no scale head: no interval
