"""Binary events and binary score records through the real broker: the same results as
JSON, record for record."""

from __future__ import annotations

import math
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


def test_binary_events_and_scores_give_what_json_gives(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
) -> None:
    events = [
        (f"s{s}", T0 + 60 * t, 20.0 + s + (t % 9) + 30.0 * (t == 70))
        for t in range(90)
        for s in range(6)
    ]
    # The same events, keys and positions in two topics: one JSON, one binary (events in
    # pipeline.kafka_io.binary_events' layout), each with two bad records of its kind.
    feeds = {
        "json": (
            [(sid.encode(), encode_event(sid, ts, v)) for sid, ts, v in events],
            [(b"s0", b'{"stream_id": "s0", "value": 1.0}'), (b"s1", b"\x00binary")],
            [b"malformed_json", b"missing_field"],
        ),
        "binary": (
            [encode_event_binary(sid, float(ts), [v]) for sid, ts, v in events],
            [(b"s0", b"SE\x01\x01" + bytes(3)), encode_event_binary("s1", T0, [math.inf])],
            [b"malformed_binary", b"non_finite"],
        ),
    }
    docs = {}
    for fmt, (feed, bad, reasons) in feeds.items():
        inp = topic_factory(f"in-{fmt}", partitions=2)
        produce(kafka_config, inp, feed[:200] + bad + feed[200:])
        out = f"{inp}.out"
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
        dlq = read_all(kafka_config, out + ".dlq", expect=len(bad))
        assert sorted(dict(r.headers)["statecast.reason"] for r in dlq) == reasons
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
