"""Batching by rank: the i-th event of every stream in a batch goes to the model together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipeline.engine.serving import _rank_within_stream


@given(st.lists(st.integers(0, 12), max_size=200))
def test_rank_counts_earlier_events_of_the_same_stream(slots: list[int]) -> None:
    seen: dict[int, int] = {}
    expected = []
    for s in slots:
        expected.append(seen.get(s, 0))
        seen[s] = expected[-1] + 1
    assert _rank_within_stream(np.asarray(slots, np.int64)).tolist() == expected


def test_restore_skips_a_state_with_another_feature_count(tiny_registry: Path) -> None:
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.engine.state import StateStore

    served = ServedModel("tiny", Registry(tiny_registry))
    meta = served.meta
    F = len(meta.features)

    def snapshot_with(features: int) -> tuple[object, int]:
        store = StateStore(
            layers=meta.layers, hidden=meta.hidden, features=features, horizon=meta.horizon
        )
        (slot,) = store.slots_for(["x"], now=0.0).tolist()
        store.mean[slot] = 1.0
        store.var[slot] = 1.0
        return store.snapshot(slot, "tiny", meta.version), 0

    restored, skipped = served.restore(
        {"ok": snapshot_with(F), "wrong": snapshot_with(F + 2)},  # type: ignore[dict-item]
        now=0.0,
    )
    assert (restored, skipped) == (1, 1)
    assert "ok" in served.store and "wrong" not in served.store


def test_every_score_names_its_channel_and_the_interval_the_value_left(
    tiny_registry: Path,
) -> None:
    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.engine.stepper import REASONS

    served = ServedModel("tiny", Registry(tiny_registry))
    rng = np.random.default_rng(5)
    n = 700
    v = 20 + np.sin(np.arange(n) / 9) + rng.normal(0, 0.2, n)
    v[600] = 80.0  # a spike
    v[650:] = v[649]  # then the sensor freezes
    batch = DecodedBatch(
        index=np.arange(n, dtype=np.int64),
        stream_ids=["s"] * n,
        ts=1_764_000_000.0 + 60.0 * np.arange(n),
        values=v[:, None],
        ts_raw=list(range(n)),
        rejections=[],
    )
    scored = served.score(batch, np.arange(n, dtype=np.int64), now=1_764_100_000.0)
    reason = [REASONS[k] for k in scored.reason.tolist()]
    assert reason[600] in ("forecast", "level", "range") and scored.score[600] > 0.6
    assert not scored.expected_lo[600, 0] <= 80.0 <= scored.expected_hi[600, 0]
    assert scored.expected_lo[599, 0] < scored.expected_hi[599, 0]
    assert reason[660] == "stuck" and scored.score[660] > 0.6
