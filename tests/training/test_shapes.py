"""The alert budget on feeds with nothing to find, through the shipped default model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.registry import Registry
from training.evaluate import replay
from training.shapes import HEAVY, SHAPES, clean_feeds

REPO = Path(__file__).resolve().parents[2]
WARMUP = 48


def test_shapes_are_deterministic_per_seed_and_differ_between_seeds() -> None:
    a, b, c = clean_feeds(1, length=500), clean_feeds(1, length=500), clean_feeds(2, length=500)
    assert [f.name.rsplit("-", 1)[0] for f in a] == list(SHAPES)
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x.values, y.values) and np.array_equal(x.ts, y.ts)
        assert np.all(np.diff(x.ts) > 0) and np.isfinite(x.values).all() and not x.anomalies
        if not x.name.startswith(("flat", "square_wave", "daily_no_noise")):
            assert not np.array_equal(x.values, z.values)
    assert {f.name.rsplit("-", 1)[0] for f in clean_feeds(1, 10, HEAVY)} == set(HEAVY)


@pytest.mark.parametrize("seed", [1])
def test_clean_shapes_stay_within_the_alert_budget(seed: int) -> None:
    """At most one alarm per 5,000 events over the set, and once a stream is past NAB's
    probationary 15% (a new stream's first daily edges may alarm, as a first sight of
    them should) at most one per stream: a flat line, a square wave or noise that
    alarmed again and again would fail here."""
    meta = Registry(REPO / "exported_models").meta("default")
    feeds = clean_feeds(seed)
    got = replay(meta, [f.series() for f in feeds])
    alarms = events = 0
    for f, r in zip(feeds, got, strict=True):
        flag = np.nan_to_num(r.score) >= meta.anomaly.threshold
        flag[:WARMUP] = False
        assert flag[int(0.15 * len(flag)) :].sum() <= 1, f.name
        alarms += int(flag.sum())
        events += len(flag) - WARMUP
    assert alarms <= events / 5000
