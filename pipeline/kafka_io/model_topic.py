"""Promoted models on a compacted Kafka topic, so scorers on other machines need no shared disk.

Record key: the model name. Value (versioned binary frame, never pickle)::

    b"SCM1" | u32 big-endian length of model.json | model.json bytes | model.onnx bytes

The topic is compacted, so it keeps the latest promoted version of every model.
:func:`install_latest` reads it to the end and writes what it finds into a local
registry (verifying the sha256 before anything becomes visible).
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

from pipeline.config import KafkaConfig
from pipeline.engine.registry import ModelMeta, Registry, sha256_of
from pipeline.errors import ModelRejected
from pipeline.kafka_io import ensure_topic, open_producer

__all__ = ["DEFAULT_MODEL_TOPIC", "decode_frame", "encode_frame", "install_latest", "publish_model"]

DEFAULT_MODEL_TOPIC = "statecast-models"
MAGIC = b"SCM1"
MAX_FRAME_BYTES = 64 * 1024 * 1024


def encode_frame(meta: ModelMeta) -> bytes:
    doc = json.dumps(meta.raw, sort_keys=True).encode()
    return MAGIC + struct.pack(">I", len(doc)) + doc + meta.onnx_path.read_bytes()


def decode_frame(frame: bytes) -> tuple[dict[str, object], bytes]:
    if len(frame) > MAX_FRAME_BYTES or frame[:4] != MAGIC or len(frame) < 8:
        raise ModelRejected("model record is not a Statecast model frame (bad magic or size)")
    (n,) = struct.unpack(">I", frame[4:8])
    try:
        doc = json.loads(frame[8 : 8 + n])
    except json.JSONDecodeError as exc:
        raise ModelRejected(f"model record has unreadable model.json: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelRejected("model record's model.json is not an object")
    return doc, frame[8 + n :]


def publish_model(config: KafkaConfig, topic: str, meta: ModelMeta) -> None:
    """Publish a promoted version (acknowledged before returning)."""
    ensure_topic(
        config, topic, 1, {"cleanup.policy": "compact", "max.message.bytes": str(MAX_FRAME_BYTES)}
    )
    producer = open_producer(config, max_request_size=MAX_FRAME_BYTES)
    try:
        producer.send(topic, meta.name.encode(), encode_frame(meta))
        producer.flush()
    finally:
        producer.close()


def install_latest(
    config: KafkaConfig, topic: str, registry: Registry, timeout_s: float = 10.0
) -> list[str]:
    """Copy every model's latest published version into ``registry`` and promote it there.

    Returns ``model/version`` for each version installed (already present ones are skipped).
    """
    import kafka
    from kafka.structs import TopicPartition as KTP

    from pipeline.kafka_io.kafkapython import client_settings

    consumer = kafka.KafkaConsumer(
        enable_auto_commit=False,
        fetch_max_bytes=MAX_FRAME_BYTES,
        max_partition_fetch_bytes=MAX_FRAME_BYTES,
        **client_settings(config),
    )
    try:
        parts = [KTP(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        latest: dict[str, bytes] = {}
        import time

        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                for r in recs:
                    if r.key and r.value:
                        latest[r.key.decode()] = r.value
    finally:
        consumer.close()
    installed = []
    for name, frame in latest.items():
        doc, onnx_bytes = decode_frame(frame)
        version = str(doc.get("version"))
        if registry.current(name) == version:
            continue
        if version not in registry.versions(name):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(onnx_bytes)
                if sha256_of(path) != doc.get("sha256"):
                    raise ModelRejected(f"published model {name}/{version} fails its sha256 check")
                registry.write_version(name, version, path, doc)
        registry.promote(name, version)
        installed.append(f"{name}/{version}")
    return installed
