"""Promoted models on a compacted Kafka topic, so scorers on other machines need no shared disk.

Record key: the model name. Value (versioned binary frame, never pickle)::

    b"SCM1" | u32 big-endian length of model.json | model.json bytes | model.onnx bytes
    b"SCM2" | u32 length of model.json | model.json | u16 length of signature | signature
            | model.onnx bytes

The topic is compacted, so it keeps the latest promoted version of every model.
:func:`install_latest` reads it to the end and writes what it finds into a local
registry, verifying before anything becomes visible: the sha256 in model.json
(integrity) and, where a verification key is configured, an Ed25519 signature over the
model.json bytes (origin: model.json carries the sha256, so the signature covers the
ONNX file too). Without a key, anyone who can write to the topic can deploy a model;
with one, unsigned and wrongly signed models are refused.

Nothing on the topic can stop a scorer: a record with a key that is not a model name,
or a value that is not a frame, is skipped and reported.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.config import KafkaConfig
from pipeline.engine.registry import ModelMeta, Registry, check_name, sha256_of
from pipeline.errors import KafkaError, ModelRejected, RegistryError
from pipeline.kafka_io import ensure_topic, open_producer

__all__ = [
    "DEFAULT_MODEL_TOPIC",
    "InstallReport",
    "decode_frame",
    "encode_frame",
    "generate_keypair",
    "install_latest",
    "publish_model",
]

DEFAULT_MODEL_TOPIC = "statecast-models"
MAGIC = b"SCM1"
MAGIC_SIGNED = b"SCM2"
MAX_FRAME_BYTES = 64 * 1024 * 1024


def encode_frame(meta: ModelMeta, sign_key: Path | None = None) -> bytes:
    """A model frame; signed (SCM2) with the Ed25519 private key at ``sign_key``, if given."""
    doc = json.dumps(meta.raw, sort_keys=True).encode()
    onnx = meta.onnx_path.read_bytes()
    if sign_key is None:
        return MAGIC + struct.pack(">I", len(doc)) + doc + onnx
    sig: bytes = _private_key(sign_key).sign(doc)
    return (
        MAGIC_SIGNED + struct.pack(">I", len(doc)) + doc + struct.pack(">H", len(sig)) + sig + onnx
    )


def decode_frame(frame: bytes) -> tuple[dict[str, object], bytes, bytes, bytes | None]:
    """``(model.json, its bytes, model.onnx bytes, signature or None)``; ModelRejected if
    the frame is malformed."""
    if len(frame) > MAX_FRAME_BYTES or len(frame) < 8 or frame[:4] not in (MAGIC, MAGIC_SIGNED):
        raise ModelRejected("model record is not a Statecast model frame (bad magic or size)")
    (n,) = struct.unpack(">I", frame[4:8])
    raw, pos = frame[8 : 8 + n], 8 + n
    if len(raw) != n:
        raise ModelRejected("model record is truncated")
    sig = None
    if frame[:4] == MAGIC_SIGNED:
        if len(frame) < pos + 2:
            raise ModelRejected("signed model record is truncated")
        (m,) = struct.unpack(">H", frame[pos : pos + 2])
        sig, pos = frame[pos + 2 : pos + 2 + m], pos + 2 + m
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelRejected(f"model record has unreadable model.json: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelRejected("model record's model.json is not an object")
    return doc, raw, frame[pos:], sig


def generate_keypair(private: Path) -> Path:
    """Write a new Ed25519 key pair: ``private`` (PEM, mode 600) and ``<private>.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = private.with_name(private.name + ".pub")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


def _crypto() -> object:
    try:
        import cryptography
    except ImportError as exc:
        raise ModelRejected(
            "model signing needs the 'cryptography' package: pip install 'statecast[signing]'"
        ) from exc
    return cryptography


def _private_key(path: Path) -> Any:
    _crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ModelRejected(f"{path} is not an Ed25519 private key")
    return key


def _verify(public_key: Path, doc: bytes, sig: bytes | None) -> None:
    _crypto()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if sig is None:
        raise ModelRejected("the model is not signed, and a verification key is configured")
    key = serialization.load_pem_public_key(public_key.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ModelRejected(f"{public_key} is not an Ed25519 public key")
    try:
        key.verify(sig, doc)
    except InvalidSignature:
        raise ModelRejected("the model's signature does not match the verification key") from None


def publish_model(
    config: KafkaConfig, topic: str, meta: ModelMeta, sign_key: Path | None = None
) -> None:
    """Publish a promoted version (acknowledged before returning), signed with
    ``sign_key`` if given."""
    ensure_topic(
        config, topic, 1, {"cleanup.policy": "compact", "max.message.bytes": str(MAX_FRAME_BYTES)}
    )
    producer = open_producer(config, max_request_size=MAX_FRAME_BYTES)
    try:
        producer.send(topic, meta.name.encode(), encode_frame(meta, sign_key))
        producer.flush()
    finally:
        producer.close()


@dataclasses.dataclass
class InstallReport:
    """What one read of the model topic did."""

    installed: list[str] = dataclasses.field(default_factory=list)  # model/version
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (model, why)
    malformed: list[str] = dataclasses.field(default_factory=list)  # why, per skipped record


def install_latest(
    config: KafkaConfig,
    topic: str,
    registry: Registry,
    timeout_s: float = 10.0,
    verify_key: Path | None = None,
) -> InstallReport:
    """Copy every model's latest published version into ``registry`` and promote it there.

    Versions already present are skipped; records that are not model frames are reported
    as malformed, models that fail verification as refused; neither raises.
    """
    report = InstallReport()
    for name, frame in _latest_frames(config, topic, timeout_s, report).items():
        try:
            version = _install(registry, name, frame, verify_key)
        except (ModelRejected, RegistryError) as exc:
            report.refused.append((name, str(exc)))
            continue
        if version:
            report.installed.append(f"{name}/{version}")
    return report


def _latest_frames(
    config: KafkaConfig, topic: str, timeout_s: float, report: InstallReport
) -> dict[str, bytes]:
    import kafka
    from kafka.structs import TopicPartition as KTP

    from pipeline.kafka_io.kafkapython import client_settings

    latest: dict[str, bytes] = {}
    try:
        consumer = kafka.KafkaConsumer(
            enable_auto_commit=False,
            fetch_max_bytes=MAX_FRAME_BYTES,
            max_partition_fetch_bytes=MAX_FRAME_BYTES,
            **client_settings(config),
        )
    except kafka.errors.KafkaError as exc:
        raise KafkaError(f"cannot read the model topic {topic}: {exc}") from exc
    try:
        parts = [KTP(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return latest
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                for r in recs:
                    if r.value is None:
                        continue  # a tombstone: nothing to install
                    try:
                        name = (r.key or b"").decode()
                        check_name("model", name)
                    except (UnicodeDecodeError, RegistryError):
                        report.malformed.append(f"offset {r.offset}: key is not a model name")
                        continue
                    latest[name] = r.value
    except kafka.errors.KafkaError as exc:
        raise KafkaError(f"cannot read the model topic {topic}: {exc}") from exc
    finally:
        consumer.close()
    return latest


def _install(registry: Registry, name: str, frame: bytes, verify_key: Path | None) -> str | None:
    """Install and promote one frame's version; returns it, or None if already current."""
    doc, raw, onnx_bytes, sig = decode_frame(frame)
    if verify_key is not None:
        _verify(verify_key, raw, sig)
    version = str(doc.get("version"))
    if str(doc.get("model", name)) != name:
        raise ModelRejected(f"record key {name!r} names another model than its model.json")
    check_name("version", version)
    if registry.current(name) == version:
        return None
    if version not in registry.versions(name):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(onnx_bytes)
            if sha256_of(path) != doc.get("sha256"):
                raise ModelRejected(f"published model {name}/{version} fails its sha256 check")
            registry.write_version(name, version, path, doc)
    registry.promote(name, version)
    return version
