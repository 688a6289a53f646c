"""Binary score records: the same fields as the JSON records, in the documented layout."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.engine.stepper import REASONS
from pipeline.errors import BadScoreRecord
from pipeline.kafka_io import Record
from pipeline.kafka_io.binary_scores import (
    REASON_CODES,
    decode_score,
    encode_scores_binary,
)
from pipeline.kafka_io.outputs import encode_scores

N = 40


def _inputs(F: int, Z: int, band: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    fc = rng.normal(0, 50, (N, Z, F))
    fc[0] = np.nan  # a stream without a forecast yet
    score = rng.random(N)
    score[1] = np.nan
    score[2:6] = 0.99  # flagged, whatever the draw
    return {
        "values": rng.normal(0, 50, (N, F)),
        "forecast": fc,
        "score": score,
        "lo": fc - 1.5 if band else None,
        "hi": fc + 2.5 if band else None,
        "expected_lo": rng.normal(size=(N, F)),
        "expected_hi": np.where(rng.random((N, F)) < 0.2, np.nan, 3.0),
        "shares": rng.dirichlet(np.ones(F), N) if F > 1 else None,
        "warm": rng.random(N) > 0.1,
        "threshold": 0.6,
        "features": ("value",) if F == 1 else tuple(f"f{k}" for k in range(F)),
        "model": "pumps",
        "version": "v20261205T114726Z",
        "records": [
            Record("in", k % 4, 10_000 + k, f"pump-{k}".encode(), b"", 0, []) for k in range(N)
        ],
    }


def _close(a: Any, b: Any, *, digits: int | None) -> bool:
    """JSON's value (rounded to ``digits``, or as it is) against the binary record's."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_close(a[k], b[k], digits=digits) for k in a)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(
            _close(x, y, digits=digits) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, float) and isinstance(b, float):
        return a == (b if digits is None else round(b, digits))
    return bool(a == b) and type(a) is type(b)


@pytest.mark.parametrize(
    ("F", "Z", "band"), [(1, 5, True), (3, 4, True), (1, 3, False), (2, 1, False)]
)
def test_every_binary_record_decodes_to_the_json_records_fields(F: int, Z: int, band: bool) -> None:
    kw = _inputs(F, Z, band, seed=F * 10 + Z)
    reason = np.random.default_rng(0).integers(0, len(REASONS), N)
    ts = 1_764_000_000.0 + 60.0 * np.arange(N)
    docs = encode_scores(
        stream_ids=[f"pump-{k}" for k in range(N)],
        ts_raw=ts.tolist(),
        reasons=[REASONS[k] for k in reason],
        **kw,
    )
    binary = encode_scores_binary(ts=ts, reason=reason, **kw)
    assert len(binary) == N
    assert sum(orjson.loads(d)["is_anomaly"] for d in docs) >= 4
    for k, (doc, rec) in enumerate(zip(docs, binary, strict=True)):
        want = orjson.loads(doc)
        got = decode_score(rec, kw["records"][k].key)
        assert got.keys() == want.keys()
        for name in want:
            # JSON writes the inputs as they are and rounds what the model computed.
            digits = {"feature_share": 3, "value": None, "values": None, "ts": None}.get(name, 6)
            assert _close(want[name], got[name], digits=digits), (k, name, want[name], got[name])
    assert len(binary[0]) < len(docs[0])


def test_the_layout_is_the_documented_one() -> None:
    F, Z = 3, 4
    kw = _inputs(F, Z, True, seed=1)
    rec = encode_scores_binary(ts=np.full(N, 1.5e9), reason=np.zeros(N, np.int64), **kw)[
        2
    ]  # flagged
    assert rec[:3] == b"SC\x01" and rec[5:8] == bytes([F, Z, 0])
    assert rec[3] & 1 and rec[3] & 4 and rec[4] == REASON_CODES.index(REASONS[0])
    assert struct.unpack_from("<qi", rec, 8) == (10_002, 2)
    assert struct.unpack_from("<3d", rec, 24) == (1.5e9, kw["score"][2], 0.6)
    body = np.frombuffer(rec, "<f8", 4 * F + 3 * Z * F, 48)
    np.testing.assert_array_equal(body[:F], kw["values"][2])
    np.testing.assert_array_equal(body[F : F + Z * F], kw["forecast"][2].ravel())
    np.testing.assert_array_equal(body[F + 2 * Z * F : F + 3 * Z * F], kw["hi"][2].ravel())
    at = 48 + 8 * (4 * F + 3 * Z * F)
    names = []
    for _ in range(2 + F):
        (n,) = struct.unpack_from("<H", rec, at)
        names.append(rec[at + 2 : at + 2 + n].decode())
        at += 2 + n
    assert names == ["pumps", "v20261205T114726Z", "f0", "f1", "f2"] and at == len(rec)


def test_format_1_reason_codes_keep_their_meaning() -> None:
    # Appending a reason is allowed; moving one would change what stored records say.
    assert REASON_CODES[:7] == ("forecast", "level", "range", "stuck", "sustained", "drift", "day")
    assert set(REASONS) <= set(REASON_CODES)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b'{"stream_id": "pump-1"}', "magic"),
        (b"SC\x02" + bytes(60), "format 2"),
        (b"SC\x01\x00\x00\x01\x05\x00" + bytes(60), "shorter"),
    ],
)
def test_what_is_not_a_binary_record_is_refused_clearly(value: bytes, message: str) -> None:
    with pytest.raises(BadScoreRecord, match=message):
        decode_score(value)
