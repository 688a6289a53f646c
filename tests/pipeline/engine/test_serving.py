"""Batching by rank: the i-th event of every stream in a batch goes to the model together."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipeline.engine.serving import _rank_within_stream
from pipeline.engine.stepper import REPLAY_WARMUP


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
    # A frozen sensor alarms when its run becomes surprising, then stays flagged as stuck
    # below the threshold (one incident, one alarm; its score damped within the incident
    # relative to the spike's decayed peak, far above the alarm level).
    assert reason[660] == "stuck" and 0.0 < scored.score[660] < 0.6
    assert (scored.score[650:700] >= 0.6).sum() == 1


def test_served_inputs_forecasts_and_errors_are_those_of_the_replay(tiny_registry: Path) -> None:
    """The live evidence (errors, the inputs behind input drift) measures what training's
    replay measures: the same values, stepped in batches of mixed streams, give the same
    normalised inputs, forecasts and errors as stepping each stream through replay."""
    from pipeline.engine.csvdata import Series
    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from training.evaluate import replay

    registry = Registry(tiny_registry)
    served = ServedModel("tiny", registry)
    rng = np.random.default_rng(8)
    n, streams = 400, 3
    ts = 1_764_000_000.0 + 300.0 * np.arange(n)
    values = 20 + 5 * np.sin(np.arange(n)[None, :] / 15 + np.arange(streams)[:, None])
    values = values + rng.normal(0, 0.5, (streams, n))
    values[:, 250:] += 8.0  # a level shift: the inputs move off centre
    reps = replay(
        served.meta, [Series(f"s{i}", ts, values[i][:, None], ("value",)) for i in range(streams)]
    )
    # Interleaved as a feed, cut into uneven batches.
    order = [(t, i) for t in range(n) for i in range(streams)]
    got_inputs = np.full((streams, n), np.nan)
    got_error = np.full((streams, n), np.nan)
    got_fc = np.full((streams, n), np.nan)
    cuts = [0, *sorted(rng.choice(np.arange(1, len(order)), 20, replace=False)), len(order)]
    for a, b in itertools.pairwise(cuts):
        part = order[a:b]
        batch = DecodedBatch(
            index=np.arange(len(part), dtype=np.int64),
            stream_ids=[f"s{i}" for _, i in part],
            ts=np.asarray([ts[t] for t, _ in part]),
            values=np.asarray([[values[i, t]] for t, i in part]),
            ts_raw=[ts[t] for t, _ in part],
            rejections=[],
        )
        scored = served.score(batch, np.arange(len(part), dtype=np.int64), now=ts[-1])
        assert scored.inputs is not None and scored.abs_error is not None
        for j, row in enumerate(scored.rows.tolist()):
            t, i = part[row]
            got_inputs[i, t] = scored.inputs[j, 0]
            got_error[i, t] = scored.abs_error[j]
            got_fc[i, t] = scored.forecast[j, 0, 0]
    for i, r in enumerate(reps):
        np.testing.assert_allclose(got_inputs[i], r.inputs[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_fc[i], r.forecast[:, 0, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_error[i], r.abs_error, rtol=1e-5, atol=1e-6)


def test_a_swap_does_not_cost_a_seasonal_stream_its_forecasts_or_raise_alarms() -> None:
    """Business-hours streams served mostly by their daily profiles, swapped (to the same
    network, as a nightly refresh that changed little) on day 4: the next 100 forecasts
    are as good as without the swap and raise no alarm. (Starting each stream's blend
    afresh on a swap served the network alone for 50 steps: 53% larger errors and 15 false
    alarms over these 20 streams.)"""
    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel

    registry = Registry(Path(__file__).resolve().parents[3] / "exported_models")
    S, n, swap = 20, 288 * 4, 288 * 3
    ts = 1_764_000_000.0 + 300.0 * np.arange(n)
    day = ts % 86400 / 86400
    rng = np.random.default_rng(0)
    values = np.stack(
        [
            50 + 10 * ((day > 0.35) & (day < 0.75)) + 3 * np.sin(2 * np.pi * day + i)
            + rng.normal(0, 0.3, n)
            for i in range(S)
        ]
    )  # fmt: skip

    def after_swap(swapped: bool) -> tuple[float, int]:
        served = ServedModel("default", registry)
        errors, alarms = [], 0
        for t in range(n):
            if swapped and t == swap:
                served._carry_over(served.meta, served.meta)  # rebuilt as the batch comes
            batch = DecodedBatch(
                index=np.arange(S, dtype=np.int64),
                stream_ids=[f"s{i}" for i in range(S)],
                ts=np.full(S, ts[t]),
                values=values[:, t, None],
                ts_raw=[ts[t]] * S,
                rejections=[],
            )
            scored = served.score(batch, np.arange(S, dtype=np.int64), now=ts[t])
            if swap < t <= swap + 100:
                assert scored.abs_error is not None
                errors.append(float(np.nanmean(scored.abs_error)))
                alarms += int((np.nan_to_num(scored.score) >= served.threshold).sum())
        return float(np.mean(errors)), alarms

    (kept, kept_alarms), (unswapped, _) = after_swap(True), after_swap(False)
    assert kept < 1.05 * unswapped and kept_alarms == 0, (kept, unswapped, kept_alarms)


def test_a_restore_from_columns_installs_what_a_restore_of_snapshots_does(
    tiny_registry: Path,
) -> None:
    """The restorer's columnar path against the per-stream one, on every kind of frame: the
    served version, another version (rebuilt from the ring), another layout (LSTM state
    dropped), non-finite statistics and another feature count (both skipped)."""
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.engine.state import _FIELDS, _MODEL_INDEPENDENT, StateStore
    from pipeline.kafka_io.changelog import decode_columns, decode_snapshot, encode_snapshots

    meta = ServedModel("tiny", Registry(tiny_registry)).meta
    F = len(meta.features)
    rng = np.random.default_rng(11)
    frames: dict[str, tuple[bytes, int]] = {}
    kinds = [
        ("same", meta.hidden, F, meta.version),
        ("old", meta.hidden, F, "v-old"),
        ("layout", meta.hidden + 1, F, meta.version),
        ("nan", meta.hidden, F, meta.version),
        ("features", meta.hidden, F + 1, meta.version),
    ]
    for kind, hidden, features, version in kinds:
        store = StateStore(
            layers=meta.layers, hidden=hidden, features=features, horizon=meta.horizon, ring=8
        )
        ids = [f"{kind}-{i}" for i in range(6)]
        slots = store.slots_for(ids, now=0.0)
        for _ in range(11):
            store.push_inputs(slots, rng.normal(20, 2, (len(ids), features)))
        for name in ("h", "c", "fc", "sp", "sw", "bm", "slev", "sfc", "mfc", "lo", "hi", "last_x"):
            arr = getattr(store, name)
            arr[...] = rng.normal(size=arr.shape)
        store.su[...] = 0.5  # the profile's unit (pipeline.engine.season.Profiles)
        store.mean[slots] = rng.uniform(10, 30, (len(ids), features))
        store.var[slots] = rng.uniform(1, 4, (len(ids), features))
        store.n[slots], store.steps[slots], store.sbin[slots] = 50.0, 50, 288.0
        store.src_offset[slots] = np.arange(len(ids))
        if kind == "nan":
            store.evar[slots[::2]] = np.nan
        for i, frame in enumerate(encode_snapshots(store, slots, "tiny", version)):
            frames[ids[i]] = (frame, i % 3)

    per_stream = ServedModel("tiny", Registry(tiny_registry))
    expected = per_stream.restore(
        {sid: (decode_snapshot(f), p) for sid, (f, p) in frames.items()}, now=5.0
    )
    columnar = ServedModel("tiny", Registry(tiny_registry))
    ids = list(frames)
    groups, bad = decode_columns([f for f, _ in frames.values()])
    assert not bad
    got = [0, 0]
    for g in groups:
        parts = np.asarray([frames[ids[i]][1] for i in g.rows], np.int64)
        done, skipped = columnar.restore_columns([ids[i] for i in g.rows], parts, g, now=5.0)
        got = [got[0] + done, got[1] + skipped]
    assert tuple(got) == expected == (6 * 3 + 3, 3 + 6)
    a, b = per_stream.store, columnar.store
    assert sorted(a.stream_ids()) == sorted(b.stream_ids())
    sa = np.asarray([a.slot_of(s) for s in sorted(a.stream_ids())])
    sb = np.asarray([b.slot_of(s) for s in sorted(a.stream_ids())])
    for name in sorted({*_FIELDS, *_MODEL_INDEPENDENT}):
        xa, xb = getattr(a, name), getattr(b, name)
        if name in ("h", "c"):
            xa, xb = xa[:, sa], xb[:, sb]
        else:
            xa, xb = xa[sa], xb[sb]
        np.testing.assert_array_equal(xa, xb, err_msg=name)


def test_a_swap_rebuilds_each_stream_as_it_would_alone() -> None:
    """The replay batches streams by step, whatever their histories' lengths (a ring not
    full yet, one wrapped many times, times unknown after a restore): each stream's
    rebuilt LSTM state and forecast, and the calibration it learnt from the replay (the
    interval multiplier, the gain, the error statistics), are those of its own replay."""
    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel

    registry = Registry(Path(__file__).resolve().parents[3] / "exported_models")
    rng = np.random.default_rng(3)
    histories = {
        name: 20.0 + np.arange(n) % 13 + rng.normal(size=n)
        for name, n in {"new": 1, "young": 7, "full": 64, "old": 150}.items()
    }

    def served_with(names: list[str], ring: int = 64) -> ServedModel:
        served = ServedModel("default", registry, replay_steps=ring)
        for name in names:
            for t, v in enumerate(histories[name]):
                ts = 1_764_000_000.0 + 60.0 * t
                batch = DecodedBatch(
                    index=np.zeros(1, np.int64),
                    stream_ids=[name],
                    ts=np.full(1, ts),
                    values=np.full((1, 1), v),
                    ts_raw=[ts],
                    rejections=[],
                )
                served.score(batch, np.zeros(1, np.int64), now=ts)
        old = served.store.slot_of("old")
        if old is not None:
            served.store.ring_last[old] = np.nan  # as after a restore
        served._carry_over(served.meta, served.meta)
        served.materialize_all()
        return served

    together = served_with(list(histories))
    for name, values in histories.items():
        # Alone, and in a ring no longer than its history: nothing to align.
        alone = served_with([name], ring=min(len(values), 64))
        a, b = together.store.slot_of(name), alone.store.slot_of(name)
        assert a is not None and b is not None
        for field in ("h", "c"):
            got, want = getattr(together.store, field)[:, a], getattr(alone.store, field)[:, b]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(together.store.fc[a], alone.store.fc[b], rtol=1e-5)
        for field in ("qlog", "gxy", "gxx", "gn", "en", "es", "emu", "evar", "tu", "tb"):
            got, want = getattr(together.store, field)[a], getattr(alone.store, field)[b]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9, err_msg=f"{name} {field}")
    # The full ring's stream learnt from every replayed step after the warm-up.
    full = together.store.slot_of("full")
    assert full is not None
    assert together.store.gn[full] == 64 - REPLAY_WARMUP


def test_a_swap_to_a_model_measuring_errors_in_other_units_raises_no_alarm(
    tmp_path: Path,
) -> None:
    """The shipped default's history, as ``make demo`` serves it: a version without a
    scale head (errors in the stream's spread) swapped live for one with (errors in its
    predicted scale) on clean stretches of generated machines. No alarm in the 150 values
    after the swap. (Keeping the old version's error statistics and starting the interval
    multiplier and gain from nothing: 4 alarms on these 36 streams, 3-46 values after the
    swap; learning all three from the replay but from the old statistics: 2.)"""
    from datetime import UTC, datetime

    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from training.synthetic import generate

    shipped = Path(__file__).resolve().parents[3] / "exported_models" / "default"
    spread, scale = "v20261201T044523Z", "v20261201T070904Z"
    alarms = []
    for seed in (7, 10, 11):
        registry = Registry(tmp_path / str(seed))
        shutil.copytree(shipped, tmp_path / str(seed) / "default")
        registry.promote("default", spread)
        served = ServedModel("default", registry)
        feed = generate(streams=12, length=600, seed=seed, step_s=60.0, prefix="machine",
                        start=datetime(2026, 12, 3, 12, 17, tzinfo=UTC),
                        anomalies_per_stream=1, clean_fraction=0.35)  # fmt: skip
        for t in range(350):
            if t == 200:
                registry.promote("default", scale)
                assert served.maybe_swap() == scale
            batch = DecodedBatch(
                index=np.arange(12, dtype=np.int64),
                stream_ids=[s.name for s in feed],
                ts=np.asarray([s.ts[t] for s in feed]),
                values=np.asarray([[s.values[t]] for s in feed]),
                ts_raw=[s.ts[t] for s in feed],
                rejections=[],
            )
            scored = served.score(batch, np.arange(12, dtype=np.int64), now=float(feed[0].ts[t]))
            for j, r in enumerate(scored.rows.tolist()):
                near = any(a.start - 5 <= t <= a.end + 30 for a in feed[r].anomalies)
                if t >= 200 and not near and scored.score[j] >= served.threshold:
                    alarms.append((seed, feed[r].name, t))
    assert alarms == []


def test_a_restore_from_another_versions_frames_rebuilds_the_streams_as_a_swap_does(
    tmp_path: Path,
) -> None:
    """Frames saved under the shipped default's version without a scale head, restored
    into the version with one (a scorer restarted across a promotion), give every stream
    the state a live swap between the two gives it: the LSTM state and the calibration
    learnt from the replay, the error statistics from the new version's priors."""
    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel

    shutil.copytree(Path(__file__).resolve().parents[3] / "exported_models" / "default",
                    tmp_path / "default")  # fmt: skip
    registry = Registry(tmp_path)
    spread, scale = "v20261201T044523Z", "v20261201T070904Z"
    registry.promote("default", spread)
    served = ServedModel("default", registry)
    rng = np.random.default_rng(5)
    ids = [f"s{i}" for i in range(6)]
    for t in range(120):
        ts = 1_764_000_000.0 + 60.0 * t  # a minute apart: what a restore takes ring times for
        batch = DecodedBatch(
            index=np.arange(6, dtype=np.int64),
            stream_ids=ids,
            ts=np.full(6, ts),
            values=(20.0 + 5 * np.sin(t / 9 + np.arange(6)) + rng.normal(0, 1, 6))[:, None],
            ts_raw=[ts] * 6,
            rejections=[],
        )
        served.score(batch, np.arange(6, dtype=np.int64), now=ts)
    snaps = {}
    for sid in ids:
        slot = served.store.slot_of(sid)
        assert slot is not None
        snaps[sid] = (served.store.snapshot(slot, "default", spread), 0)
    registry.promote("default", scale)
    assert served.maybe_swap() == scale
    served.materialize_all()  # what the swap's streams become when next used
    restored = ServedModel("default", registry)
    assert restored.restore(snaps, now=1_764_036_000.0) == (6, 0)
    fields = ("h", "c", "fc", "qlog", "gn", "gxy", "en", "emu", "evar", "tu", "tb")
    for sid in ids:
        a, b = served.store.slot_of(sid), restored.store.slot_of(sid)
        assert a is not None and b is not None
        for name in fields:
            got, want = getattr(restored.store, name), getattr(served.store, name)
            got, want = (got[:, b], want[:, a]) if name in ("h", "c") else (got[b], want[a])
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{sid} {name}")


def test_the_version_a_swap_replaced_is_pinned_with_the_state_it_had(
    tiny_registry: Path, tmp_path: Path
) -> None:
    """The rollback watch pins the previous version right after a swap: it takes over the
    LSTM state the streams had in it, and their calibration (interval multiplier, gain,
    error statistics), exactly, instead of replaying every stream again
    (which held the poll loop as long as the swap did); pinned again, or after a batch
    moved the streams on, it replays."""
    import json
    import shutil

    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel

    shutil.copytree(tiny_registry, tmp_path / "r")
    registry = Registry(tmp_path / "r")
    v1 = registry.current("tiny")
    assert v1 is not None
    served = ServedModel("tiny", registry)
    ids = [f"s{i}" for i in range(5)]

    def step(t: int) -> None:
        batch = DecodedBatch(
            index=np.arange(5, dtype=np.int64),
            stream_ids=ids,
            ts=np.full(5, 1_764_000_000.0 + 60.0 * t),
            values=np.sin(0.3 * t + np.arange(5))[:, None] * 10 + 50,
            ts_raw=[0.0] * 5,
            rejections=[],
        )
        served.score(batch, np.arange(5, dtype=np.int64), now=1_764_000_000.0 + 60.0 * t)

    for t in range(40):
        step(t)
    before = {
        k: getattr(served.store, k).copy()
        for k in ("h", "c", "fc", "qlog", "gn", "gxy", "emu", "tu")
    }
    assert before["gn"].any() and before["tu"].any()  # learnt, so the comparison below bites
    doc = json.loads((tmp_path / "r" / "tiny" / v1 / "model.json").read_text())
    onnx = tmp_path / "r" / "tiny" / v1 / "model.onnx"
    registry.write_version("tiny", "v2", onnx, {**doc, "version": "v2"})
    registry.promote("tiny", "v2")
    assert served.maybe_swap() == "v2"
    # The swap replays nothing yet: each stream is rebuilt when it is next used.
    assert served.store.stale[served.store.live_slots()].all()
    np.testing.assert_array_equal(served.store.h, before["h"])
    previous = served.pinned(v1)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(previous.store, name), value)
    # Pinned again (the state left behind is taken once), it is rebuilt by replay, from
    # this version's streams rebuilt first.
    again = served.pinned(v1)
    assert not served.store.stale.any()
    assert not np.array_equal(served.store.h, before["h"])  # rebuilt by replay
    again.materialize_all()
    assert not np.array_equal(again.store.h, before["h"])
    np.testing.assert_allclose(again.store.h, served.store.h, rtol=1e-5, atol=1e-6)
    # Swapped again, then a batch: the state left behind is stale, and is not taken over.
    registry.write_version("tiny", "v3", onnx, {**doc, "version": "v3"})
    registry.promote("tiny", "v3")
    assert served.maybe_swap() == "v3" and served._left is not None
    stale = served._left[1]["h"]
    step(40)
    later = served.pinned("v2")
    later.materialize_all()
    assert not np.array_equal(later.store.h, stale)


def test_each_feature_gets_its_share_of_what_the_reasons_channel_measured() -> None:
    from pipeline.engine.stepper import REASONS, _shares

    x = np.array(
        [[1.0, 4.0], [10.0, 0.5], [3.0, 3.0], [0.0, 5.0], [2.0, 2.0], [1.0, 1.0], [-1.0, 3.0]]
    )
    zeros, ones = np.zeros_like(x), np.ones_like(x)
    lo, hi = np.zeros_like(x), np.full_like(x, 5.0)
    kinds = ("forecast", "range", "stuck", "level", "sustained", "drift", "day")
    reason = np.array([REASONS.index(r) for r in kinds])
    ratio = np.zeros_like(x)
    ratio[5] = [3.0, 1.0]  # the departure in its record, per feature
    alarmed = np.ones(len(x), np.bool_)
    share = _shares(reason, alarmed, x, zeros, ones, zeros, ones, lo, hi, zeros, ones, ratio)
    np.testing.assert_allclose(share[0], [1 / 17, 16 / 17])  # squared errors 1 and 16
    np.testing.assert_allclose(share[1], [1.0, 0.0])  # only a is beyond its range
    np.testing.assert_allclose(share[2], [0.5, 0.5])  # a frozen sensor repeats both
    np.testing.assert_allclose(share[3], [0.0, 1.0])  # a sits at the mean
    np.testing.assert_allclose(share[4], [0.5, 0.5])  # both 2 away from where expected
    np.testing.assert_allclose(share[5], [0.75, 0.25])  # a departed three times as far
    np.testing.assert_allclose(share[6], [0.25, 0.75])  # b three times as far from its day
    quiet = _shares(reason, ~alarmed, x, zeros, ones, zeros, ones, lo, hi, zeros, ones, ratio)
    assert np.isnan(quiet).all()  # measured on anomalies only
    one = _shares(reason[:1], alarmed[:1], x[:1, :1], zeros[:1, :1], ones[:1, :1], zeros[:1, :1],
                  ones[:1, :1], lo[:1, :1], hi[:1, :1], zeros[:1, :1], ones[:1, :1],
                  ratio[:1, :1])  # fmt: skip
    assert one.tolist() == [[1.0]]


def test_a_swap_rebuilds_each_stream_when_next_used_as_a_swap_at_once_would(
    tmp_path: Path,
) -> None:
    """A swap marks the streams stale and returns; each is rebuilt when a batch next
    scores it, or between batches (``catch_up``). Every output after the swap, and every
    stream's state in the end, is what rebuilding all of them at the swap gives, on the
    shipped default's swap between versions that measure errors in different units, with
    streams used at different times after it (and one evicted and its slot reused)."""
    from pipeline.engine.events import DecodedBatch
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel

    spread, scale = "v20261201T044523Z", "v20261201T070904Z"
    S, n, swap = 24, 160, 100
    rng = np.random.default_rng(11)
    values = 30 + 5 * np.sin(np.arange(n)[None, :] / 7 + np.arange(S)[:, None])
    values = values + rng.normal(0, 0.5, (S, n))
    ids = [f"s{i}" for i in range(S)]

    def run(lazy: bool) -> tuple[ServedModel, list[np.ndarray]]:
        root = tmp_path / ("lazy" if lazy else "eager")
        shutil.copytree(Path(__file__).resolve().parents[3] / "exported_models" / "default",
                        root / "default")  # fmt: skip
        registry = Registry(root)
        registry.promote("default", spread)
        served = ServedModel("default", registry)
        outputs = []
        for t in range(n):
            if t == swap:
                registry.promote("default", scale)
                assert served.maybe_swap() == scale
                if lazy:
                    assert served.store.stale[served.store.live_slots()].all()
                else:
                    served.materialize_all()
            if t == swap + 20:
                served.store.release(["s5"])  # its slot goes to the next new stream
            # After the swap, each stream comes back on a step of its own (some never).
            rows = [i for i in range(S) if t < swap or ((t - swap) >= i % 7 and i % 11 != 3)]
            if lazy and t > swap and t % 5 == 0:
                served.catch_up(2)
            batch = DecodedBatch(
                index=np.arange(len(rows), dtype=np.int64),
                stream_ids=[ids[i] if not (i == 5 and t >= swap + 20) else "new" for i in rows],
                ts=np.full(len(rows), 1_764_000_000.0 + 60.0 * t),
                values=values[rows, t, None],
                ts_raw=[0.0] * len(rows),
                rejections=[],
            )
            scored = served.score(batch, np.arange(len(rows), dtype=np.int64), now=batch.ts[0])
            assert not scored.rejections
            if t >= swap:
                outputs += [scored.score, scored.forecast, scored.lo, scored.hi, scored.reason]
        served.materialize_all()
        return served, outputs

    (lazy, got), (eager, want) = run(True), run(False)
    assert lazy.store.stale_slots().size == 0 and not eager.store.stale.any()
    assert len(lazy.store) == S and sum(len(v) for v in got[::5]) > 1000
    # Up to the last bits: a replay batched with other streams can round differently
    # (onnxruntime's kernels depend on the batch size), and the float16 LSTM state with it.
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    for sid in [*ids, "new"]:
        a, b = lazy.store.slot_of(sid), eager.store.slot_of(sid)
        assert (a is None) == (b is None) == (sid == "s5")
        if a is None or b is None:
            continue
        got_snap = lazy.store.snapshot(a, "m", "v")
        want_snap = eager.store.snapshot(b, "m", "v")
        for field in ("h", "c", "fc", "fs", "qlog", "gxy", "gn", "en", "emu", "evar", "tu"):
            tol = 1e-3 if field in ("h", "c") else 1e-9
            np.testing.assert_allclose(
                getattr(got_snap, field).astype(np.float64) if field in ("h", "c")
                else getattr(got_snap, field),
                getattr(want_snap, field), rtol=1e-5, atol=tol, err_msg=f"{sid} {field}",
            )  # fmt: skip
