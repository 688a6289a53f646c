"""One frozen config per process: flags beat environment beat file beat defaults."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from pipeline.config import KafkaConfig, LocalKafkaConfig, ScorerConfig, load
from pipeline.errors import ConfigError


def test_precedence_flags_env_file_default() -> None:
    env = {
        "STATECAST_INPUT_TOPIC": "from-env",
        "STATECAST_BOOTSTRAP": "h:1",
        "STATECAST_UNTIL_IDLE": "3",
    }
    cfg = load(ScorerConfig, {"input_topic": "from-flag"}, env)
    assert cfg.input_topic == "from-flag"
    assert cfg.kafka == KafkaConfig(bootstrap="h:1")
    assert cfg.until_idle == 3.0
    assert cfg.output_topic == "sensor-scores"
    cfg2 = load(ScorerConfig, {}, {}, file_values={"group": "g-file"})
    assert cfg2.group == "g-file"
    assert (
        load(ScorerConfig, {}, {"STATECAST_GROUP": "g-env"}, file_values={"group": "g-file"}).group
        == "g-env"
    )


def test_types_are_converted_from_strings() -> None:
    cfg = load(
        ScorerConfig, {}, {"STATECAST_ROUTES": "pump-=pumps, fan-=fans", "STATECAST_REGISTRY": "/x"}
    )
    assert cfg.routes == ("pump-=pumps", "fan-=fans")
    assert cfg.route_map == {"pump-": "pumps", "fan-": "fans"}
    assert cfg.registry == Path("/x")
    assert load(LocalKafkaConfig, {"port": "19999"}, {}).port == 19999
    assert (
        load(LocalKafkaConfig, {}, {"STATECAST_GC_PAUSE_TARGET_MS": "50"}).gc_pause_target_ms == 50
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"max_poll_records": "many"}, "max_poll_records='many' is not a valid int"),
        ({"max_poll_records": 0}, "max_poll_records must be > 0"),
        ({"output_topic": "sensor-readings"}, "three different topics"),
        ({"routes": ("nope",)}, "PREFIX=MODEL"),
        ({"bootstrap": "nohostport"}, "HOST:PORT"),
        ({"backend": "aiokafka"}, "backend must be one of"),
        ({"season_bins": 2}, r"season_bins must be 0 \(off\) or in \[4, 288\]"),
        ({"season_bins": 1000}, "season_bins must be 0"),
        ({"poll_linger_ms": -1}, "poll_linger_ms must be >= 0"),
        ({"output_format": "avro"}, "output_format must be json or binary"),
        ({"standby": True}, "standby keeps local snapshots of other partitions: set state_dir"),
        ({"standby": True, "state_dir": "/s", "standby_interval_s": 0}, "standby_interval_s"),
    ],
)
def test_bad_values_name_the_field(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(ScorerConfig, flags, {})


def test_a_broker_pause_goal_of_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="gc_pause_target_ms must be > 0"):
        load(LocalKafkaConfig, {"gc_pause_target_ms": 0}, {})


def test_backend_comes_from_the_environment_and_names_the_extra_when_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = load(ScorerConfig, {}, {"STATECAST_BACKEND": "confluent-kafka"})
    assert cfg.kafka.backend == "confluent-kafka"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "confluent_kafka" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"statecast\[confluent\]"):
        KafkaConfig(backend="confluent-kafka")


def test_configs_are_frozen() -> None:
    cfg = ScorerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.group = "x"  # type: ignore[misc]
