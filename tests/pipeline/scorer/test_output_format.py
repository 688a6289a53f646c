"""Binary score records and binary events through the real broker: the same results as
JSON, record for record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io.binary_events import encode_event_binary
from pipeline.kafka_io.binary_scores import decode_score
from pipeline.kafka_io.codec import encode_event
from tests.kafka_helpers import ScorerThread, produce, read_all, scorer_config

pytestmark = pytest.mark.integration

T0 = 1_764_000_000


def test_a_binary_scorer_writes_what_a_json_scorer_writes(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
) -> None:
    inp = topic_factory("in", partitions=2)
    feed = [
        (
            f"s{s}".encode(),
            encode_event(f"s{s}", T0 + 60 * t, 20.0 + s + (t % 9) + 30.0 * (t == 70)),
        )
        for t in range(90)
        for s in range(6)
    ]
    bad = [(b"s0", b'{"stream_id": "s0", "value": 1.0}'), (b"s1", b"\x00binary")]
    produce(kafka_config, inp, feed[:200] + bad + feed[200:])

    docs = {}
    for fmt in ("json", "binary"):
        out = f"{inp}.{fmt}"
        cfg = scorer_config(
            kafka_config,
            tiny_registry,
            inp,
            group_factory(),
            out=out,
            output_format=fmt,
            until_idle=2.0,
        )
        ScorerThread(cfg).start().join()
        records = read_all(kafka_config, out, expect=len(feed))
        assert len(records) == len(feed)
        assert len(read_all(kafka_config, out + ".dlq", expect=len(bad))) == len(bad)
        decode = (
            (lambda r: orjson.loads(r.value))
            if fmt == "json"
            else (lambda r: decode_score(r.value, r.key))
        )
        docs[fmt] = {(d["partition"], d["offset"]): d for d in map(decode, records)}

    assert docs["json"].keys() == docs["binary"].keys()
    # Two runs batch the events differently, and float32 inference rounds a little
    # differently per batch size: agreement to 1e-5, not to JSON's sixth decimal.
    close = {"rel": 1e-5, "abs": 1e-5}
    flagged = 0
    for at, want in docs["json"].items():
        got = docs["binary"][at]
        assert got.keys() == want.keys(), at
        assert got["stream_id"] == want["stream_id"] and got["value"] == want["value"]
        assert got["ts"] == want["ts"] and got["model_version"] == want["model_version"]
        assert got["is_anomaly"] == want["is_anomaly"] and got["warm"] == want["warm"]
        assert got["anomaly_score"] == pytest.approx(want["anomaly_score"], **close)
        assert got["forecast"] == pytest.approx(want["forecast"], **close)
        assert got["forecast_lo"] == pytest.approx(want["forecast_lo"], **close)
        if want["is_anomaly"]:
            flagged += 1
            assert got["anomaly_reason"] == want["anomaly_reason"]
            assert got["expected_hi"] == pytest.approx(want["expected_hi"], **close)
    assert flagged  # the jump at t = 70 is an anomaly in every stream


def test_binary_events_score_as_their_json_twins(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
) -> None:
    events = [
        (f"s{s}", float(T0 + 60 * t), 20.0 + s + (t % 9) + 30.0 * (t == 70))
        for t in range(90)
        for s in range(4)
    ]
    bad = [(b"s0", b"SE\x01\x01" + bytes(3)), (None, encode_event_binary("s1", T0, [1.0])[1])]
    docs = {}
    for fmt in ("json", "binary"):
        inp = topic_factory(f"in-{fmt}", partitions=2)
        if fmt == "json":
            feed = [(sid.encode(), encode_event(sid, ts, v)) for sid, ts, v in events]
        else:
            feed = [encode_event_binary(sid, ts, [v]) for sid, ts, v in events]
        produce(kafka_config, inp, feed[:150] + bad + feed[150:])
        cfg = scorer_config(
            kafka_config, tiny_registry, inp, group_factory(), out=f"{inp}.out", until_idle=2.0
        )
        ScorerThread(cfg).start().join()
        records = read_all(kafka_config, f"{inp}.out", expect=len(feed))
        dlq = read_all(kafka_config, f"{inp}.out.dlq", expect=len(bad))
        assert len(records) == len(feed)
        reasons = sorted(dict(r.headers)["statecast.reason"] for r in dlq)
        assert reasons == [b"malformed_binary", b"missing_field"]
        # Keyed by stream and event time: the two topics' offsets differ by the bad records.
        docs[fmt] = {(d["stream_id"], d["ts"]): d for d in (orjson.loads(r.value) for r in records)}

    assert docs["json"].keys() == docs["binary"].keys()
    close = {"rel": 1e-5, "abs": 1e-5}
    flagged = 0
    for at, want in docs["json"].items():
        got = docs["binary"][at]
        assert got["value"] == want["value"] and got["is_anomaly"] == want["is_anomaly"]
        assert got["anomaly_score"] == pytest.approx(want["anomaly_score"], **close)
        assert got["forecast"] == pytest.approx(want["forecast"], **close)
        flagged += want["is_anomaly"]
    assert flagged  # the jump at t = 70 is an anomaly in every stream
