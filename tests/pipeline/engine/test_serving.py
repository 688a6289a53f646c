"""Batching by rank: the i-th event of every stream in a batch goes to the model together."""

from __future__ import annotations

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
