"""Binary events: the same events as JSON, decoded a batch at a time; every bad record gets
a reason, whatever else is in its batch."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine.events import REASONS
from pipeline.errors import EventRejected
from pipeline.kafka_io.binary_events import HEADER, MAGIC, encode_event_binary, record_bytes
from pipeline.kafka_io.codec import decode_batch, decode_event, encode_event

T0 = 1_764_000_000.0


def _events(n: int, F: int, seed: int = 0) -> list[tuple[str, float, list[float]]]:
    rng = np.random.default_rng(seed)
    return [
        (f"pump-{i % 7}-ü", T0 + 60.0 * i + float(rng.uniform()), rng.normal(0, 1e3, F).tolist())
        for i in range(n)
    ]


def _json(sid: str, ts: float, vals: list[float], names: tuple[str, ...]) -> tuple[bytes, bytes]:
    payload = vals[0] if len(names) == 1 else dict(zip(names, vals, strict=True))
    return sid.encode(), encode_event(sid, ts, payload)


@pytest.mark.parametrize("F", [1, 2, 3])
def test_a_binary_batch_decodes_as_the_same_events_in_json(F: int) -> None:
    names = ("value",) if F == 1 else tuple(f"f{k}" for k in range(F))
    events = _events(50, F)
    as_json = decode_batch([_json(s, t, v, names) for s, t, v in events], names, 1000)
    binary = [encode_event_binary(s, t, v) for s, t, v in events]
    as_binary = decode_batch(binary, names, 1000)
    # Mixed on one topic: each record read as its own format, the batch in record order.
    mixed = decode_batch(
        [b if k % 3 else _json(*events[k], names) for k, b in enumerate(binary)], names, 1000
    )
    for got in (as_binary, mixed):
        assert got.rejections == []
        assert got.index.tolist() == list(range(len(events)))
        assert got.stream_ids == as_json.stream_ids
        assert np.array_equal(got.ts, as_json.ts)
        assert np.array_equal(got.values, as_json.values)  # float64 both ways: exact
    assert as_binary.ts_raw == as_binary.ts.tolist()
    # One at a time (the trainer's path) reads the same.
    for (key, value), k in zip(binary, range(len(events)), strict=True):
        sid, ts, _raw, vals = decode_event(key, value, names, 1000)
        assert (sid, ts, vals) == (as_json.stream_ids[k], as_json.ts[k], as_json.values[k].tolist())


def test_the_layout_is_as_documented() -> None:
    key, value = encode_event_binary("s", 1.5, [2.0, -3.0])
    assert key == b"s"
    assert len(value) == record_bytes(2) == HEADER + 16
    assert value[:2] == MAGIC and value[2] == 1 and value[3] == 2
    assert struct.unpack("<d", value[4:12]) == (1.5,)
    assert struct.unpack("<2d", value[12:28]) == (2.0, -3.0)


def _good(sid: str = "s") -> bytes:
    return encode_event_binary(sid, T0, [1.0])[1]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"s", _good()[:-1], "malformed_binary"),  # truncated
        (b"s", _good() + b"\x00", "malformed_binary"),  # too long for its count
        (b"s", MAGIC, "malformed_binary"),
        (b"s", MAGIC + b"\x02\x01" + bytes(16), "malformed_binary"),  # an unknown format
        (b"s", encode_event_binary("s", T0, [1.0, 2.0])[1], "wrong_features"),
        (b"s", MAGIC + b"\x01\x01" + struct.pack("<2d", float("nan"), 1.0), "non_finite"),
        (b"s", MAGIC + b"\x01\x01" + struct.pack("<2d", T0, float("inf")), "non_finite"),
        (None, _good(), "missing_field"),
        (b"", _good(), "missing_field"),
        (b"x" * 257, _good(), "oversized"),
        (b"\xff\xfe", _good(), "wrong_type"),
    ],
)
def test_each_bad_binary_record_gets_its_reason_in_any_batch(
    key: bytes | None, value: bytes, reason: str
) -> None:
    assert reason in REASONS
    # Alone, among good binary records (the batch path), and among JSON ones.
    good = [(b"a", _good("a")), (b"b", _good("b"))]
    json_good = [(b"c", encode_event("c", T0, 1.0))]
    for batch in ([(key, value)], [good[0], (key, value), good[1]], [*json_good, (key, value)]):
        got = decode_batch(batch, ("value",), 1000)
        bad = batch.index((key, value))
        assert [(r.index, r.reason) for r in got.rejections] == [(bad, reason)]
        assert got.index.tolist() == [k for k in range(len(batch)) if k != bad]
        assert got.stream_ids == [batch[k][0].decode() for k in got.index.tolist()]  # type: ignore[union-attr]


def test_a_record_longer_than_the_limit_is_oversized() -> None:
    got = decode_batch([(b"s", _good())], ("value",), record_bytes(1) - 1)
    assert [r.reason for r in got.rejections] == ["oversized"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.binary(max_size=4)),
            st.binary(max_size=40).map(lambda b: MAGIC + b),
        ),
        max_size=20,
    )
)
def test_anything_after_the_magic_never_raises_and_is_accounted_for(
    batch: list[tuple[bytes | None, bytes]],
) -> None:
    got = decode_batch(batch, ("value",), 1000)
    assert len(got.index) + len(got.rejections) == len(batch)
    assert all(r.reason in REASONS for r in got.rejections)
    assert np.isfinite(got.values).all() and np.isfinite(got.ts).all()


_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.just(T0)


@st.composite
def _any_record(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    key = draw(st.sampled_from([b"a", b"b", b"", None, b"\xff", b"k" * 300]))
    kind = draw(st.integers(0, 3))
    if kind == 0:  # the layout, any numbers, sometimes a wrong format byte or count
        count = draw(st.integers(0, 2))
        body = MAGIC + bytes([draw(st.sampled_from([1, 1, 2])), count])
        body += struct.pack(
            f"<{count + 1}d", *draw(st.lists(_numbers, min_size=count + 1, max_size=count + 1))
        )
        return key, body
    if kind == 1:
        return key, MAGIC + draw(st.binary(max_size=24))
    if kind == 2:
        return key, encode_event((key or b"x").decode(errors="replace"), T0, draw(_numbers))
    return key, draw(st.binary(max_size=24) | st.none())


@settings(max_examples=300, deadline=None)
@given(st.lists(_any_record(), max_size=12))
def test_the_batch_path_decides_every_record_as_the_one_at_a_time_path(
    batch: list[tuple[bytes | None, bytes | None]],
) -> None:
    got = decode_batch(batch, ("value",), 1000)
    accepted = dict(zip(got.index.tolist(), range(len(got.index)), strict=True))
    rejected = {r.index: r.reason for r in got.rejections}
    assert sorted([*accepted, *rejected]) == list(range(len(batch)))
    for i, (key, value) in enumerate(batch):
        try:
            sid, ts, _raw, vals = decode_event(key, value, ("value",), 1000)
        except EventRejected as exc:
            assert rejected.get(i) == exc.reason, i
            continue
        j = accepted[i]
        assert (got.stream_ids[j], got.ts[j], got.values[j].tolist()) == (sid, ts, vals)
