"""The model topic against the real broker: malformed records are skipped and reported,
never fatal; with a verification key only models signed with its private key install."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.config import KafkaConfig
from pipeline.engine.registry import Registry
from pipeline.errors import KafkaError, ModelRejected
from pipeline.kafka_io.model_topic import (
    decode_frame,
    encode_frame,
    generate_keypair,
    install_latest,
    publish_model,
)
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


@pytest.fixture
def models_topic(topic_factory: Callable[..., str]) -> str:
    return topic_factory("models", config={"cleanup.policy": "compact"})


def test_malformed_records_are_skipped_and_reported(
    kafka_config: KafkaConfig, tiny_registry: Path, models_topic: str, tmp_path: Path
) -> None:
    produce(
        kafka_config,
        models_topic,
        [
            (b"\xff\xfe", b"SCM1 not utf-8 key"),  # key is not UTF-8
            (b"../etc", b"whatever"),  # key is not a model name
            (b"bad", b"SCS"),  # not a model frame
            (b"trunc", b"SCM1\x00\x00\x01\x00{"),  # truncated frame
        ],
    )
    publish_model(kafka_config, models_topic, Registry(tiny_registry).meta("tiny"))
    remote = Registry(tmp_path / "remote")
    report = install_latest(kafka_config, models_topic, remote)
    assert report.installed == [f"tiny/{Registry(tiny_registry).current('tiny')}"]
    assert len(report.malformed) == 2
    assert sorted(name for name, _ in report.refused) == ["bad", "trunc"]
    assert remote.versions("bad") == [] and remote.versions("trunc") == []


def test_with_a_verification_key_only_signed_models_install(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    signer = generate_keypair(tmp_path / "signer.key")
    other = generate_keypair(tmp_path / "other.key")
    meta = Registry(tiny_registry).meta("tiny")
    for key, expect in (
        (None, "not signed"),
        (tmp_path / "other.key", "does not match"),
        (tmp_path / "signer.key", None),
    ):
        topic = topic_factory("models", config={"cleanup.policy": "compact"})
        publish_model(kafka_config, topic, meta, sign_key=key)
        remote = Registry(tmp_path / f"remote-{topic}")
        report = install_latest(kafka_config, topic, remote, verify_key=signer)
        if expect is None:
            assert report.installed == [f"tiny/{meta.version}"] and not report.refused
        else:
            assert report.installed == [] and expect in report.refused[0][1]
            assert remote.current("tiny") is None
    assert other.exists()


def test_a_tampered_signed_frame_is_refused(tiny_registry: Path, tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k")
    frame = bytearray(encode_frame(Registry(tiny_registry).meta("tiny"), tmp_path / "k"))
    doc, _raw, _onnx, sig = decode_frame(bytes(frame))
    assert sig is not None and doc["sha256"]
    at = bytes(frame).index(b'"sha256"')
    frame[at + 12] ^= 1  # flip a bit inside model.json
    from pipeline.kafka_io.model_topic import _verify

    _doc, raw2, _o, sig2 = decode_frame(bytes(frame))
    with pytest.raises(ModelRejected, match="does not match"):
        _verify(tmp_path / "k.pub", raw2, sig2)


def test_an_unreachable_broker_is_a_kafka_error_not_a_crash(
    tiny_registry: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_registry, tmp_path / "r")
    nowhere = KafkaConfig(bootstrap="127.0.0.1:1", request_timeout_s=3.0)
    with pytest.raises(KafkaError):
        install_latest(nowhere, "models", Registry(tmp_path / "r"), timeout_s=2)
