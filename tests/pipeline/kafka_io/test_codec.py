"""The event codec: valid events decode exactly; garbage never raises, always gets a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine.events import REASONS, parse_ts
from pipeline.errors import EventRejected
from pipeline.kafka_io.codec import decode_batch, decode_event, encode_event

FEATURES = ("value",)


def test_valid_single_and_multivariate_events() -> None:
    sid, ts, raw, vals = decode_event(
        b"p1", encode_event("p1", "2026-11-25T10:00:00Z", 21.5), FEATURES, 1000
    )
    assert (sid, raw, vals) == ("p1", "2026-11-25T10:00:00Z", [21.5])
    assert ts == parse_ts("2026-11-25T10:00:00+00:00")
    doc = encode_event("p2", 1764064800, {"temp": 1.0, "vib": 2})
    assert decode_event(None, doc, ("vib", "temp"), 1000)[3] == [2.0, 1.0]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'{"ts": 1, "value": 1}', "missing_field"),
        (b'{"stream_id": "p", "value": 1}', "missing_field"),
        (b'{"stream_id": "p", "ts": 1}', "missing_field"),
        (b'{"stream_id": 7, "ts": 1, "value": 1}', "wrong_type"),
        (b'{"stream_id": "p", "ts": true, "value": 1}', "wrong_type"),
        (b'{"stream_id": "p", "ts": "yesterday", "value": 1}', "wrong_type"),
        (b'{"stream_id": "p", "ts": 1, "value": "1"}', "wrong_type"),
        (b'{"stream_id": "p", "ts": 1, "value": NaN}', "non_finite"),
        (b'{"stream_id": "p", "ts": 1, "value": 1e999}', "non_finite"),
        (b'{"stream_id": "p", "ts": Infinity, "value": 1}', "non_finite"),
        (b'{"stream_id": "p", "ts": 1' + b"0" * 400 + b', "value": 1}', "non_finite"),
        (b'{"stream_id": "p", "ts": 1, "value": -1' + b"0" * 400 + b"}", "non_finite"),
        (b'{"stream_id": "p", "ts": 1, "values": {"x": 1}}', "wrong_features"),
        (b'{"stream_id": "q", "ts": 1, "value": 1}', "key_mismatch"),
        (b'{"stream_id": "p", "ts": 1, "value": 1, "pad": "' + b"x" * 600 + b'"}', "oversized"),
    ],
)
def test_each_bad_kind_gets_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(EventRejected) as info:
        decode_event(b"p", value, FEATURES, 500)
    assert info.value.reason == reason
    assert reason in REASONS


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=80), st.text(max_size=60).map(str.encode)), max_size=30)
)
def test_garbage_never_raises_and_every_record_is_accounted_for(blobs: list[bytes]) -> None:
    batch = decode_batch([(None, b) for b in blobs], FEATURES, 1000)
    assert len(batch.stream_ids) + len(batch.rejections) == len(blobs)
    assert all(r.reason in REASONS for r in batch.rejections)
    assert np.isfinite(batch.values).all() and np.isfinite(batch.ts).all()


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "stream_id": json_scalars,
            "ts": json_scalars,
            "value": json_scalars,
            "values": st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
        },
    )
)
def test_near_valid_json_is_decoded_or_rejected_with_a_reason(doc: dict[str, object]) -> None:
    raw = json.dumps(doc).encode()  # Python writes NaN/Infinity tokens, as real producers do
    batch = decode_batch([(None, raw)], FEATURES, 1000)
    if batch.rejections:
        assert batch.rejections[0].reason in REASONS
    else:
        assert batch.stream_ids == [doc["stream_id"]]
        assert batch.values[0, 0] == float(doc["value"])  # type: ignore[arg-type]
