"""``statecast replay``'s records: what the scorer's decoder reads back from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.commands.replay import collect_streams, encoder, merged_events, replay
from pipeline.config import KafkaConfig, load
from pipeline.errors import ConfigError
from pipeline.kafka_io.codec import decode_batch


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _decoded(
    paths: list[Path], fmt: str, model_features: list[str], order: list[str] | None = None
) -> list[tuple[str, float, list[float]]]:
    streams = collect_streams(paths)
    encode = encoder(fmt, order or [])
    records = [encode(s, row) for _, s, row in merged_events(streams)]
    batch = decode_batch(records, model_features, 1 << 16)
    assert not batch.rejections and list(batch.index) == list(range(len(records)))
    return [
        (sid, float(ts), v.tolist())
        for sid, ts, v in zip(batch.stream_ids, batch.ts, batch.values, strict=True)
    ]


def test_binary_and_json_replays_decode_to_the_same_events(tmp_path: Path) -> None:
    """One feature: the same streams, times and values either way (binary needs no names)."""
    a = _csv(
        tmp_path / "a.csv",
        "timestamp,value",
        ["2014-04-01 00:00:00,1.5", "2014-04-01 00:05:00,2.25"],
    )
    b = _csv(tmp_path / "b.csv", "timestamp,value", ["2014-04-01 00:02:00,-3.0"])
    as_json = _decoded([a, b], "json", ["value"])
    as_binary = _decoded([a, b], "binary", ["value"])
    assert as_binary == as_json
    assert [s for s, _, _ in as_binary] == ["a", "b", "a"]  # merged by time
    assert as_binary[2][2] == [2.25]


def test_a_multi_feature_binary_replay_follows_the_models_order(tmp_path: Path) -> None:
    """The CSV's columns in one order, the model's in another: binary values follow the
    model's (as --features names it), and decode to what the JSON events decode to."""
    f = _csv(
        tmp_path / "pump.csv",
        "timestamp,temp,pressure,flow",
        ["1700000000,20.5,1.25,7", "1700000060,21.0,1.5,8"],
    )
    model = ["flow", "temp", "pressure"]
    as_json = _decoded([f], "json", model)
    as_binary = _decoded([f], "binary", model, model)
    assert as_binary == as_json
    np.testing.assert_array_equal(as_binary[0][2], [7.0, 20.5, 1.25])


@pytest.mark.parametrize(
    "order", [[], ["temp"], ["pressure", "speed"], ["temp", "pressure", "speed"]]
)
def test_binary_refuses_a_multi_feature_csv_without_the_models_full_order(
    tmp_path: Path, order: list[str]
) -> None:
    f = _csv(tmp_path / "pump.csv", "timestamp,temp,pressure", ["1700000000,20.5,1.25"])
    (s,) = collect_streams([f])
    with pytest.raises(ConfigError, match="--features"):
        encoder("binary", order)(s, 0)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="format"):
        encoder("avro")


def test_replay_refuses_before_touching_kafka_when_any_stream_cannot_take_the_format(
    tmp_path: Path,
) -> None:
    """The second file has two columns and no --features: refused before the topic is
    made (the bootstrap below answers nothing, so reaching Kafka would fail otherwise)."""
    one = _csv(tmp_path / "a.csv", "timestamp,value", ["1700000000,1.0"])
    two = _csv(tmp_path / "b.csv", "timestamp,temp,pressure", ["1700000000,20.5,1.25"])
    kafka = load(KafkaConfig, {"bootstrap": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="--features"):
        replay(kafka, "never-made", collect_streams([one, two]), encode=encoder("binary"))
