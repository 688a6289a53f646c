"""A copy of state rows made a few at a time: it holds every stream as it was when it
began, whatever changed or freed rows in between, provided the changes announce
themselves first (before_update), as the scorer's batches, swaps and evictions do."""

from __future__ import annotations

import numpy as np

from pipeline.engine.row_copy import RowCopy
from pipeline.kafka_io.changelog import encode_snapshots
from tests.pipeline.scorer.test_local_state import _store


def test_a_copy_made_in_turns_holds_the_state_it_began_with() -> None:
    store = _store(40)
    slots = np.arange(3, 40, dtype=np.int64)  # not every stream
    before = encode_snapshots(store, slots, "m", "v1")
    copy = RowCopy(store, slots)
    rng = np.random.default_rng(0)
    turns = 0
    while not copy.done:
        # A batch: its streams are announced, then changed.
        batch = rng.choice(40, 6, replace=False).astype(np.int64)
        copy.before_update(batch)
        store.h[:, batch] += 1.0
        store.src_offset[batch] += 7
        copy.advance(5)
        turns += 1
    assert turns > 3  # it really was made in turns
    assert encode_snapshots(copy.copy, np.arange(len(slots)), "m", "v1") == before
    # Without the announcement a change would have reached the copy: the rule matters.
    unannounced = RowCopy(store, slots)
    store.h[:, slots] += 1.0
    unannounced.finish()
    assert encode_snapshots(unannounced.copy, np.arange(len(slots)), "m", "v1") != before


def test_a_freed_and_reused_slot_keeps_its_old_stream_in_the_copy() -> None:
    store = _store(10)
    slots = np.arange(10, dtype=np.int64)
    before = encode_snapshots(store, slots, "m", "v1")
    copy = RowCopy(store, slots)
    gone = np.asarray([store.slot_of("s4")], np.int64)
    copy.before_update(gone)  # eviction announces the streams it frees
    store.release(["s4"])
    new = store.slots_for(["n0", "n1"], now=0.0)  # may reuse s4's slot; new slots are not ours
    copy.before_update(new)
    store.h[:, new] = 9.0
    copy.finish()
    assert encode_snapshots(copy.copy, np.arange(10), "m", "v1") == before
    assert copy.copy.id_of(4) == "s4"
