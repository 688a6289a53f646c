"""Nothing a producer sends can stop or poison the scorer (the per-record path).

The property test drives the real decode → score → encode → changelog-frame path (the
scorer's :class:`BatchScorer` and :class:`ServedModel` with a really trained model) with
arbitrary bytes, arbitrary JSON, binary events with any numbers in them and arbitrary
keys, and checks after every batch:

- no exception escapes;
- every record yields exactly one output or exactly one dead letter with a reason;
- every stream's state is finite, and its changelog frame decodes.

Examples: ``STATECAST_FUZZ_EXAMPLES`` (2,000 in ``make test``; the slow twin runs
1,000,000). The regression tests below each fail on the code before the fix.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ScorerConfig
from pipeline.engine.admission import Bounds
from pipeline.engine.events import REASONS
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.kafka_io import Record
from pipeline.kafka_io.binary_events import MAGIC as BINARY_MAGIC
from pipeline.kafka_io.binary_scores import decode_score
from pipeline.kafka_io.changelog import decode_snapshots, encode_snapshots
from pipeline.kafka_io.codec import decode_batch, encode_event
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.batch import BatchScorer
from pipeline.scorer.routing import Router
from tests.memory_producer import MemoryProducer

NOW = 1_764_000_000.0
OUT, DLQ = "scores", "scores.dlq"

# -- the harness ----------------------------------------------------------------------


class Harness:
    """One model's per-record path with an in-memory producer."""

    def __init__(self, registry: Path, **bounds: Any) -> None:
        self.config = ScorerConfig(
            registry=registry, model="tiny", output_topic=OUT, dlq_topic=DLQ, **bounds
        )
        self.served = ServedModel(
            "tiny",
            Registry(registry),
            bounds=Bounds(
                self.config.max_abs_value, self.config.max_future_skew_s, self.config.max_streams
            ),
            warmup_steps=0,
        )
        self.metrics = ScorerMetrics()
        self.batches = BatchScorer(
            self.config, {"tiny": self.served}, Router("tiny", {}), self.metrics
        )
        self.producer = MemoryProducer()
        self.offset = 0

    def records(self, items: list[tuple[bytes | None, bytes | None]]) -> list[Record]:
        out = []
        for key, value in items:
            out.append(Record("in", 0, self.offset, key, value, 0, []))  # type: ignore[arg-type]
            self.offset += 1
        return out

    def run(self, items: list[tuple[bytes | None, bytes | None]]) -> dict[int, tuple[str, Any]]:
        """Score one batch; returns input offset → ('out', doc) or ('dlq', reason)."""
        self.producer.clear()
        recs = self.records(items)
        self.batches.score(recs, self.producer, NOW)  # type: ignore[arg-type]
        seen: dict[int, tuple[str, Any]] = {}
        for topic, key, value, headers, _part in self.producer.sent:
            if topic == OUT:
                assert value is not None
                if self.config.output_format == "binary":
                    doc = decode_score(value, key)
                else:
                    doc = orjson.loads(value)
                at, what = doc["offset"], ("out", doc)
            else:
                h = dict(headers)
                at = int(h["statecast.source.offset"])
                what = ("dlq", h["statecast.reason"].decode())
            assert at not in seen, f"record {at} yielded two results"
            seen[at] = what
        assert sorted(seen) == [r.offset for r in recs], "a record yielded no result"
        return seen

    def assert_state_sound(self, streams: list[str] | None = None) -> None:
        """The named streams' (default: every stream's) state is finite and its frame decodes."""
        store = self.served.store
        names = store.stream_ids() if streams is None else [s for s in streams if s in store]
        slots = np.asarray([store.slot_of(s) for s in names], np.int64)
        if not len(slots):
            return
        assert store.gather(slots).finite_rows().all(), "a stream's state is not finite"
        frames = encode_snapshots(store, slots, "tiny", self.served.version)
        assert all(s is not None for s in decode_snapshots(frames))


@pytest.fixture(scope="module")
def harness(tiny_registry: Path) -> Harness:
    return Harness(tiny_registry)


def good(sid: str, ts: float, value: float) -> tuple[bytes, bytes]:
    return sid.encode(), encode_event(sid, ts, value)


# -- the property test ----------------------------------------------------------------

_weird_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0, 1e12, 1e13, 2**63, 2**64, -(2**63)]),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
)
_json = st.recursive(
    st.one_of(_weird_numbers, st.text(max_size=20)),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=4,
)
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e308, -1e308, 5e-324, 0.0, -0.0, 1e12, 1e13, float(2**64)]
)
_sids = st.sampled_from(["s0", "s1", "s2", "ünï", "s\x00", ""]) | st.text(max_size=4)


@st.composite
def _record(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    kind = draw(st.integers(0, 7))
    sid = draw(_sids)
    key: bytes | None = draw(st.one_of(st.just(sid.encode()), st.binary(max_size=6), st.none()))
    if kind == 0:
        return key, draw(st.binary(max_size=40))
    if kind == 1:  # JSON with NaN/Infinity tokens, huge integers, odd types
        ts = draw(_weird_numbers | st.just(NOW))
        value = draw(_weird_numbers | st.floats(-100, 100))
        extra = draw(st.sampled_from(["", ',"x":NaN', ',"y":Infinity', ',"z":-Infinity']))
        body = (
            '{"stream_id":'
            + orjson.dumps(sid).decode()
            + ',"ts":'
            + _lit(ts)
            + ',"value":'
            + _lit(value)
            + extra
            + "}"
        )
        return key, body.encode()
    if kind == 2:  # arbitrary JSON documents, deep-ish nesting
        return key, json.dumps(draw(_json)).encode()  # NaN, Infinity, any int size
    if kind == 3:
        return key, None
    if kind == 6:  # the binary layout (pipeline.kafka_io.binary_events) with any numbers
        count = draw(st.integers(0, 3))
        nums = draw(st.lists(_floats | st.just(NOW), min_size=count + 1, max_size=count + 1))
        body = BINARY_MAGIC + bytes([draw(st.sampled_from([1, 1, 1, 0, 2])), count])
        body += struct.pack(f"<{count + 1}d", *nums)
        return key, body[: len(body) - draw(st.sampled_from([0, 0, 0, 1, 8]))]
    if kind == 7:  # the binary magic, then anything
        return key, BINARY_MAGIC + draw(st.binary(max_size=30))
    # plausible events (a little late, a little early, extreme values)
    ts = NOW - draw(st.floats(0, 1e6)) if kind == 4 else NOW + draw(st.floats(-10, 1e7))
    value = draw(st.floats(-1e13, 1e13) | st.sampled_from([1e308, -1e308, 0.0]))
    return sid.encode(), encode_event(sid, ts, value)


def _lit(x: object) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return repr(x)
    return orjson.dumps(x).decode() if not isinstance(x, int) or isinstance(x, bool) else str(x)


EXAMPLES = int(os.environ.get("STATECAST_FUZZ_EXAMPLES", "2000"))


def _property(h: Harness, batch: list[tuple[bytes | None, bytes | None]]) -> None:
    results = h.run(batch)
    touched = []
    for kind, what in results.values():
        if kind == "dlq":
            assert what in REASONS
        else:
            assert all(math.isfinite(f) for f in _flat(what["forecast"]))
            touched.append(what["stream_id"])
    h.assert_state_sound(touched)


def _flat(x: Any) -> list[float]:
    return [v for r in x for v in _flat(r)] if isinstance(x, list) else [x]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(_record(), min_size=1, max_size=8))
def test_every_record_yields_one_result_and_state_stays_finite(
    harness: Harness, batch: list[tuple[bytes | None, bytes | None]]
) -> None:
    _property(harness, batch)


@pytest.fixture(scope="module")
def binary_harness(tiny_registry: Path) -> Harness:
    return Harness(tiny_registry, output_format="binary")


@settings(
    max_examples=max(EXAMPLES // 4, 1),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(_record(), min_size=1, max_size=8))
def test_binary_score_records_too(
    binary_harness: Harness, batch: list[tuple[bytes | None, bytes | None]]
) -> None:
    _property(binary_harness, batch)


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)  # about 6 ms an example: hypothesis's generation dominates
@settings(
    max_examples=1_000_000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(_record(), min_size=1, max_size=8))
def test_a_million_batches(
    harness: Harness, batch: list[tuple[bytes | None, bytes | None]]
) -> None:
    _property(harness, batch)


# -- regressions: each of these failed before the fix ----------------------------------


def test_a_2_pow_64_timestamp_is_dead_lettered_not_a_crash_loop(tiny_registry: Path) -> None:
    h = Harness(tiny_registry)
    crafted = b'{"stream_id":"s0","ts":18446744073709551616,"value":1.0,"x":NaN}'
    negative = b'{"stream_id":"s0","ts":-18446744073709551616,"value":1.0}'
    got = h.run([(b"s0", crafted), (b"s0", negative), good("s0", NOW, 1.0)])
    assert [got[i] for i in (0, 1)] == [("dlq", "implausible_ts"), ("dlq", "implausible_ts")]
    assert got[2][0] == "out"


def test_an_extreme_value_never_poisons_a_stream(tiny_registry: Path) -> None:
    h = Harness(tiny_registry)
    got = h.run([good("s", NOW + i, 20.0 + i % 3) for i in range(20)])
    assert all(kind == "out" for kind, _ in got.values())
    bad = h.run([good("s", NOW + 21, 1e308), good("s", NOW + 22, -1e308)])
    assert [what for _, what in bad.values()] == ["out_of_range", "out_of_range"]
    later = h.run([good("s", NOW + 23 + i, 20.0) for i in range(30)])
    assert all(kind == "out" for kind, _ in later.values())
    assert all(math.isfinite(f) for _, d in later.values() for f in _flat(d["forecast"]))


def test_without_a_bound_a_step_that_would_go_non_finite_resets_the_stream(
    tiny_registry: Path,
) -> None:
    h = Harness(tiny_registry, max_abs_value=math.inf)
    h.run([good("s", NOW + i, 20.0 + i % 3) for i in range(20)])
    got = h.run([good("s", NOW + 21, 1e308), good("s", NOW + 22, -1e308)])
    assert "state_reset" in [what for _, what in got.values()]
    h.assert_state_sound()
    later = h.run([good("s", NOW + 23 + i, 20.0) for i in range(30)])
    assert all(kind == "out" for kind, _ in later.values())
    assert h.metrics.state_resets.labels("tiny")._value.get() >= 1


def test_a_far_future_timestamp_does_not_dead_letter_the_stream_for_ever(
    tiny_registry: Path,
) -> None:
    h = Harness(tiny_registry)
    h.run([good("s", NOW + i, 1.0) for i in range(5)])
    got = h.run([good("s", 4102444800, 1.0)])  # 2100-01-01
    assert list(got.values()) == [("dlq", "implausible_ts")]
    later = h.run([good("s", NOW + 10 + i, 1.0) for i in range(10)])
    assert all(kind == "out" for kind, _ in later.values())


def test_rejected_events_do_not_refresh_last_seen(tiny_registry: Path) -> None:
    h = Harness(tiny_registry)
    h.run([good("s", NOW, 1.0)])
    slot = h.served.store.slot_of("s")
    assert slot is not None
    h.served.store.last_seen[slot] = 5.0  # long ago
    h.run([good("s", NOW - 100, 1.0)])  # late: out_of_order
    assert h.served.store.last_seen[slot] == 5.0


def test_new_streams_beyond_max_streams_are_refused_and_held_ones_keep_scoring(
    tiny_registry: Path,
) -> None:
    h = Harness(tiny_registry, max_streams=3)
    got = h.run([good(f"s{i}", NOW, 1.0) for i in range(5)])
    assert Counter(what if kind == "dlq" else "out" for kind, what in got.values()) == {
        "out": 3,
        "capacity": 2,
    }
    assert len(h.served.store) == 3
    again = h.run([good(f"s{i}", NOW + 1, 1.0) for i in range(3)])
    assert all(kind == "out" for kind, _ in again.values())


MAGIC = 1234.5  # the value that carries the injected fault


def test_an_unexpected_failure_costs_only_its_own_record(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: a step whose batch carries MAGIC raises (as a bug in our numeric
    code or in onnxruntime would). Only that record is dead-lettered; every other record
    is scored exactly as in a run without it."""
    import pipeline.engine.serving as serving

    batch = [good(f"s{i}", NOW + t, float(10 * i + t % 4)) for t in range(6) for i in range(4)]
    want = Harness(tiny_registry).run(batch)
    original = serving.advance

    def advance_with_fault(session: Any, norm: Any, anom: Any, st_: Any, x: Any, *rest: Any) -> Any:
        if (x == MAGIC).any():
            raise RuntimeError("injected fault")
        return original(session, norm, anom, st_, x, *rest)

    monkeypatch.setattr(serving, "advance", advance_with_fault)
    poisoned = [*batch[:10], good("s9", NOW + 2.5, MAGIC), *batch[10:]]
    got = Harness(tiny_registry).run(poisoned)
    assert got.pop(10) == ("dlq", "internal_error")
    assert len(got) == len(want)
    for a, b in zip(
        [v for _, v in sorted(got.items())], [v for _, v in sorted(want.items())], strict=True
    ):
        assert a[0] == b[0] == "out"
        np.testing.assert_allclose(a[1]["forecast"], b[1]["forecast"], atol=1e-6)


def test_decoding_never_raises_on_the_crafted_records() -> None:
    crafted = [
        b'{"stream_id":"s0","ts":18446744073709551616,"value":1.0,"x":NaN}',
        b'{"stream_id":"s0","ts":1e400,"value":1}',
        b'{"stream_id":"s0","ts":"2026-13-45","value":1}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"stream_id":"s0","ts":1,"value":' + b"9" * 5000 + b"}",
    ]
    batch = decode_batch([(b"s0", c) for c in crafted], ("value",), 65536)
    assert len(batch.rejections) + len(batch.stream_ids) == len(crafted)


def test_a_failure_outside_the_engine_costs_only_its_own_record(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection in decoding (as a bug in the codec would be): the batch is handled
    record by record, only the record that still fails is dead-lettered."""
    import pipeline.scorer.batch as batch_module

    original = batch_module.decode_batch

    def decode_with_fault(items: Any, features: Any, max_bytes: int) -> Any:
        if any(value is not None and b"1234.5" in value for _key, value in items):
            raise RuntimeError("injected fault")
        return original(items, features, max_bytes)

    monkeypatch.setattr(batch_module, "decode_batch", decode_with_fault)
    h = Harness(tiny_registry)
    got = h.run([good("a", NOW, 1.0), good("b", NOW, MAGIC), good("c", NOW, 2.0)])
    assert got[1] == ("dlq", "internal_error")
    assert got[0][0] == got[2][0] == "out"
