"""StateStore: slots, gather/scatter, growth, eviction, gap reset, ring buffer."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engine.state import StateStore


def _store(capacity: int = 4, ring: int = 3) -> StateStore:
    return StateStore(
        layers=2,
        hidden=3,
        features=1,
        horizon=2,
        capacity=capacity,
        ring=ring,
        prior_mu=0.7,
        prior_var=0.04,
    )


def test_new_streams_get_distinct_initialised_slots_and_the_store_grows() -> None:
    store = _store(capacity=2)
    slots = store.slots_for([f"s{i}" for i in range(5)], now=10.0)
    assert len(set(slots.tolist())) == 5
    assert store.capacity >= 5 and len(store) == 5
    assert np.all(store.emu[slots] == 0.7) and np.all(store.evar[slots] == 0.04)
    assert np.all(np.isneginf(store.last_ts[slots]))
    again = store.slots_for(["s3", "s0"], now=11.0)
    assert again.tolist() == [slots[3], slots[0]]


def test_a_batch_naming_a_new_stream_twice_gives_it_one_slot_across_growth() -> None:
    store = _store(capacity=2)
    (a,) = store.slots_for(["a"], now=0.0).tolist()
    store.steps[a] = 9
    slots = store.slots_for(["b", "a", "c", "b", "d", "e", "c"], now=1.0).tolist()
    assert slots[0] == slots[3] and slots[2] == slots[6] and slots[1] == a
    assert len({*slots}) == 5 == len(store) and store.capacity >= 5
    assert store.steps[a] == 9 and all(store.steps[s] == 0 for s in slots if s != a)
    assert [store.id_of(s) for s in slots] == ["b", "a", "c", "b", "d", "e", "c"]
    assert np.all(store.last_seen[slots] == 1.0)


def test_gather_scatter_round_trips_and_touches_only_the_given_slots() -> None:
    store = _store(capacity=8)
    slots = store.slots_for(["a", "b", "c"], now=0.0)
    st = store.gather(slots[[0, 2]])
    st.h[:] = 1.5
    st.mean[:] = 42.0
    st.steps[:] = 7
    store.scatter(slots[[0, 2]], st)
    assert np.all(store.h[:, slots[0]] == 1.5) and np.all(store.h[:, slots[2]] == 1.5)
    assert np.all(store.h[:, slots[1]] == 0.0)
    assert store.mean[slots[1], 0] == 0.0 and store.steps[slots[2]] == 7
    # gather returns copies: changing them does not change the store
    st2 = store.gather(slots)
    st2.h[:] = -9
    assert np.all(store.h[:, slots[1]] == 0.0)


def test_scatter_writes_exactly_what_plain_assignment_writes_across_growth() -> None:
    """The scatter copies rows as opaque items (StateStore._row_views): for every field,
    with values of other types (cast as an assignment casts them), slots in any order and
    a slot named twice (the last wins), before and after the store grows (new arrays, so
    new views), the store ends as element-wise assignment would leave it."""
    from pipeline.engine.state import _FIELDS, _STATE_AXIS1

    rng = np.random.default_rng(7)
    store = _store(capacity=6)
    store.slots_for([f"s{i}" for i in range(6)], now=0.0)
    for grow in (False, True):
        if grow:
            store.slots_for([f"t{i}" for i in range(20)], now=1.0)
        n = store.capacity
        expected = {name: getattr(store, name).copy() for name in _FIELDS}
        slots = np.asarray([n - 1, 2, 0, 2, 5], np.int64)
        st = store.gather(slots)
        for name in _FIELDS:
            v = getattr(st, name)
            # float64 values for float fields (the stepper's arithmetic), cast on the way in.
            new = (
                rng.normal(0, 100, v.shape) if v.dtype.kind == "f" else rng.integers(0, 9, v.shape)
            )
            setattr(st, name, new.astype(v.dtype if v.dtype.kind != "f" else np.float64))
            target = expected[name]
            if name in _STATE_AXIS1:
                target[:, slots] = getattr(st, name)
            else:
                target[slots] = getattr(st, name)
        store.scatter(slots, st)
        for name in _FIELDS:
            assert np.array_equal(getattr(store, name), expected[name], equal_nan=True), name


def test_idle_streams_are_evicted_and_slots_reused() -> None:
    store = _store(capacity=4)
    store.slots_for(["old1", "old2"], now=0.0)
    store.slots_for(["fresh"], now=100.0)
    assert sorted(store.evict_idle(now=100.0, ttl_s=50.0)) == [("old1", -1), ("old2", -1)]
    assert "old1" not in store and "fresh" in store
    cap = store.capacity
    store.slots_for(["n1", "n2", "n3"], now=101.0)
    assert store.capacity == cap  # freed slots were reused
    # a reused slot starts clean
    slot = store.slot_of("n1")
    assert slot is not None and store.steps[slot] == 0 and np.all(store.h[:, slot] == 0)


def test_reset_dynamics_keeps_scale_and_error_statistics() -> None:
    store = _store()
    (slot,) = store.slots_for(["s"], now=0.0).tolist()
    store.h[:, slot] = 1.0
    store.mean[slot] = 5.0
    store.emu[slot] = 2.0
    store.has_fc[slot] = True
    store.steps[slot] = 99
    store.reset_dynamics(np.array([slot]))
    assert np.all(store.h[:, slot] == 0) and not store.has_fc[slot] and store.steps[slot] == 0
    assert store.mean[slot, 0] == 5.0 and store.emu[slot] == 2.0


def test_ring_buffer_returns_recent_inputs_oldest_first() -> None:
    store = _store(ring=3)
    slots = store.slots_for(["s"], now=0.0)
    for v in range(5):
        store.push_inputs(slots, np.array([[float(v)]]))
    assert store.recent_inputs(int(slots[0]))[:, 0].tolist() == [2.0, 3.0, 4.0]


def test_the_replay_window_right_aligns_every_ring_in_arrival_order() -> None:
    """Empty, partly filled, full and wrapped rings at once, as a swap replays them."""
    store = _store(capacity=4, ring=3)
    slots = store.slots_for(["empty", "one", "full", "wrapped"], now=0.0)
    for n, slot in zip([0, 1, 3, 5], slots.tolist(), strict=True):
        for v in range(n):
            store.push_inputs(np.array([slot]), np.array([[10.0 * slot + v]]), np.array([60.0 * v]))
    inputs, times, lengths = store.recent_window(slots)
    assert lengths.tolist() == [0, 1, 3, 3]
    for row, slot in enumerate(slots.tolist()):
        n = int(lengths[row])
        assert inputs[row, 3 - n :, 0].tolist() == store.recent_inputs(slot)[:, 0].tolist()
        assert times[row, 3 - n :].tolist() == store.recent_times(slot).tolist()
        assert not inputs[row, : 3 - n].any()
    assert inputs[3, :, 0].tolist() == [32.0, 33.0, 34.0]  # the wrapped ring's last three


@pytest.mark.parametrize(
    "kind",
    ["noise about a high level", "a level shift", "a drift through zero", "spikes", "a glitch"],
)
def test_the_ring_keeps_its_inputs_to_within_16_bits_of_their_spread(kind: str) -> None:
    """The ring keeps inputs as 16-bit codes (pipeline.engine.relative16): each one comes
    back to within 2^-10 of how far the ring's inputs lie apart (two roundings: once when
    written, once when the ring takes a new reference) over the last three ring lengths
    (a unit is fitted when the ring wraps, to what it holds), however far from zero they
    lie, however they jump, through wraps and rebases. A glitch 1e30 times the other
    inputs leaves them at the reference's value until it has left the ring."""
    rng = np.random.default_rng(len(kind))
    n = 400
    x = {
        "noise about a high level": 1e6 + rng.normal(0, 0.01, n),
        "a level shift": np.where(np.arange(n) < 150, 20.0, 5e4) + rng.normal(0, 0.1, n),
        "a drift through zero": np.linspace(-3.0, 3.0, n) + rng.normal(0, 1e-3, n),
        "spikes": np.where(rng.random(n) < 0.05, 1e6, 1.0) * rng.normal(1, 0.1, n),
        "a glitch": np.where(np.arange(n) == 100, 1e30, 1.0) * rng.normal(1, 0.1, n),
    }[kind]
    store = _store(capacity=2, ring=16)
    slots = store.slots_for(["s"], now=0.0)
    for t in range(n):
        store.push_inputs(slots, np.array([[x[t]]]))
        want = x[max(0, t - 15) : t + 1]
        got = store.recent_inputs(int(slots[0]))[:, 0].astype(np.float64)
        recent = x[max(0, t - 47) : t + 1]
        bound = 2.0**-10 * (recent.max() - recent.min()) + 2.0**-23 * np.abs(want)
        assert (np.abs(got - want.astype(np.float32)) <= bound).all(), t
    if kind == "a glitch":  # and once it has left, what the ring holds is exact again
        assert (np.abs(got - want) <= 2.0**-10 * (want.max() - want.min()) + 1e-6).all()


def test_the_ring_keeps_its_inputs_times_as_gaps() -> None:
    """Times come back as seconds into the week of each input, counted back from the
    newest: each to within its gap's 16-bit rounding (a millisecond for inputs a second
    apart, two minutes for three days apart), not the sum of those after it. An input whose time
    is not known makes it and those before it unknown."""
    store = _store(capacity=2, ring=8)
    slots = store.slots_for(["fast", "slow"], now=0.0)
    t0 = 1_796_000_000.0
    fast = t0 + np.cumsum(np.full(12, 1.001))
    slow = t0 + np.cumsum(np.full(12, 3 * 86_400.0 + 7.0))
    for t in range(12):
        store.push_inputs(slots, np.ones((2, 1)), np.array([fast[t], slow[t]]))
    week = 7 * 86_400.0
    got_fast = store.recent_times(int(slots[0]))
    got_slow = store.recent_times(int(slots[1]))
    np.testing.assert_allclose(got_fast, np.mod(fast[-8:], week), atol=1e-3)
    off = np.abs(got_slow - np.mod(slow[-8:], week))
    assert (np.minimum(off, week - off) <= 2.0**-11 * (slow[1] - slow[0])).all()  # ~2 min
    store.push_inputs(slots[:1], np.ones((1, 1)), None)
    store.push_inputs(slots[:1], np.ones((1, 1)), np.array([fast[-1] + 5.0]))
    times = store.recent_times(int(slots[0]))
    assert np.isnan(times[:-1]).all() and times[-1] == pytest.approx(np.mod(fast[-1] + 5, week))


def test_adopt_carries_model_independent_state_only() -> None:
    old = _store(capacity=4)
    slots = old.slots_for(["a", "b"], now=5.0)
    old.mean[slots] = 3.0
    old.h[:, slots] = 1.0
    new = StateStore(layers=1, hidden=5, features=1, horizon=4, capacity=4, ring=3)
    new.adopt(old)
    assert new.slot_of("a") == old.slot_of("a")
    assert np.all(new.mean[slots] == 3.0) and np.all(new.h == 0)
    with pytest.raises(ValueError):
        StateStore(layers=1, hidden=5, features=2, horizon=4, capacity=4).adopt(old)


def test_memory_is_bounded_by_active_streams_under_churn() -> None:
    store = _store(capacity=16)
    for step in range(50):
        store.slots_for([f"s{step}-{i}" for i in range(10)], now=float(step))
        store.evict_idle(now=float(step), ttl_s=2.5)
    assert len(store) <= 30
    assert store.capacity <= 64


def test_a_reserved_store_takes_its_streams_in_one_allocation() -> None:
    store = StateStore(layers=1, hidden=2, features=1, horizon=1, capacity=4, ring=2)
    store.slots_for(["a", "b", "c"], now=0.0)
    store.h[0, store.slot_of("a")] = 7.0
    rows = store.reserve(100)
    assert store.capacity >= 103 and (rows.start, rows.stop) == (4, store.capacity)
    store.prefault(rows)  # what a restore does beside its reading: changes nothing
    assert store.h[0, store.slot_of("a")].tolist() == [7.0, 7.0]
    assert not store.h[:, rows].any() and not store.mean[rows].any()
    h = store.h
    store.slots_for([f"s{i}" for i in range(100)], now=0.0)
    assert store.h is h  # no regrowth: nothing was copied again
    assert store.h[0, store.slot_of("a")].tolist() == [7.0, 7.0]
    capacity = store.capacity
    rows = store.reserve(store.capacity - len(store))  # room enough already: nothing happens
    assert store.capacity == capacity and rows.start == rows.stop


def test_a_non_finite_lstm_state_value_is_found_from_its_bits() -> None:
    """``finite_rows`` reads the float16 LSTM state's bits: the same answer as
    ``np.isfinite(...).all`` for every kind of value, including the largest finite ones,
    subnormals and negative zero, and for no streams at all."""
    from pipeline.engine.state import _finite_half

    rng = np.random.default_rng(3)
    special = np.array([65504.0, -65504.0, 6e-8, -0.0, 0.0, np.inf, -np.inf, np.nan])
    a = rng.normal(0.0, 100.0, (2, 40, 8)).astype(np.float16)
    a[rng.integers(0, 2, 16), rng.integers(0, 40, 16), rng.integers(0, 8, 16)] = rng.choice(
        special, 16
    )
    assert (_finite_half(a) == np.isfinite(a).all(axis=(0, 2))).all()
    assert not _finite_half(a).all() and _finite_half(a).any()
    assert _finite_half(np.zeros((2, 0, 8), np.float16)).shape == (0,)


def test_statistics_kept_in_float32_are_read_in_float64_and_checked_against_float32() -> None:
    """The store keeps the channels' statistics in float32 and a step reads them in
    float64. A value float32 cannot hold (it would turn infinite in the store) makes the
    stream's state count as non-finite before the scatter, so the serving loop resets it
    and dead-letters the event that did it, not the next one."""
    from pipeline.engine.state import _F32_STATISTICS

    store = _store(capacity=4)
    slots = store.slots_for(["a", "b", "c"], now=0.0)
    for name in _F32_STATISTICS:
        assert getattr(store, name).dtype == np.float32, name
    # a surprise compared with itself, a count of events, a time, block indices
    for name in ("peak", "n", "last_ts", "dn", "dl"):
        assert getattr(store, name).dtype == np.float64, name
    st = store.gather(slots)
    assert all(getattr(st, name).dtype == np.float64 for name in _F32_STATISTICS)
    assert st.finite_rows().all()
    st.evar[1] = 1e39  # finite in float64, infinite in float32
    st.bm[2, 0] = -1e39
    assert st.finite_rows().tolist() == [True, False, False]
    st.evar[1] = st.bm[2, 0] = 1.0 / 3.0
    st.gn[0] = 2.0**24 + 1  # a count past float32's integers: kept as "many"
    store.scatter(slots, st)
    assert store.evar[slots[1]] == np.float32(1.0 / 3.0) and store.gn[slots[0]] == 2.0**24
