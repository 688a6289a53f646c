"""The pipelined at-least-once checkpoint: offsets are committed only once every send
before them is acknowledged, never while one is in flight, and never for a revoked
partition. (The same protocol against the real broker, with crashes and rebalances:
test_durability.py and test_chaos.py.)"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.engine.events import DecodedBatch
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.kafka_io import Record, TopicPartition
from pipeline.kafka_io.changelog import encode_snapshots
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.checkpoint import Checkpointer
from tests.memory_producer import MemoryProducer


class _Acks(MemoryProducer):
    """Sends stay unacknowledged until ``ack()``; ``unacked=None`` mimics kafka-python."""

    def __init__(self, tells: bool = True) -> None:
        super().__init__()
        self.tells, self.in_flight, self.flushes = tells, 0, 0

    def send(self, *args: object, **kwargs: object) -> None:
        super().send(*args, **kwargs)  # type: ignore[arg-type]
        self.in_flight += 1

    def ack(self) -> None:
        self.in_flight = 0

    def unacked(self) -> int | None:
        return self.in_flight if self.tells else None

    def flush(self) -> None:
        self.flushes += 1
        self.in_flight = 0


class _Commits:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def _batch(cp: Checkpointer, producer: _Acks, partition: int, offset: int) -> None:
    producer.send("out", b"k", b"v")
    rec = Record("in", partition, offset, b"k", b"v", 0, [])
    cp.add_batch([rec], {"m": np.empty(0, np.int64)})


def _checkpointer() -> Checkpointer:
    return Checkpointer({}, ScorerMetrics(), changelog=None, exactly_once=False, interval_s=1.0)


def test_offsets_wait_for_every_send_before_them_and_the_loop_does_not() -> None:
    cp, producer, consumer = _checkpointer(), _Acks(), _Commits()
    _batch(cp, producer, 0, 10)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [] and producer.flushes == 0  # in flight: nothing yet
    _batch(cp, producer, 0, 11)  # the loop goes on meanwhile
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == []
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 11}]
    assert cp.pending  # offset 11's batch is not checkpointed yet
    cp.checkpoint(producer, consumer, final=True)  # type: ignore[arg-type]
    assert consumer.commits[-1] == {TopicPartition("in", 0): 12} and producer.flushes == 1
    assert not cp.pending


def test_a_revoked_partition_is_never_committed_and_a_failure_drops_the_wait() -> None:
    cp, producer, consumer = _checkpointer(), _Acks(), _Commits()
    _batch(cp, producer, 0, 5)
    _batch(cp, producer, 1, 7)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    cp.forget_partitions({TopicPartition("in", 1)})
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 6}]
    _batch(cp, producer, 0, 6)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    cp.abandon(producer)  # a Kafka failure: redo from the last commit
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 6}] and not cp.pending


def test_a_client_that_cannot_tell_flushes_at_the_checkpoint() -> None:
    cp, producer, consumer = _checkpointer(), _Acks(tells=False), _Commits()
    _batch(cp, producer, 2, 3)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    assert producer.flushes == 1 and consumer.commits == [{TopicPartition("in", 2): 4}]


def _events(
    served: ServedModel, ids: list[str], step: int, offset: int
) -> tuple[list[Record], dict[str, np.ndarray]]:
    """One event per stream id, scored; the records and the slots they touched."""
    n = len(ids)
    batch = DecodedBatch(
        index=np.arange(n, dtype=np.int64),
        stream_ids=ids,
        ts=np.full(n, 1_764_000_000.0 + 60.0 * step),
        values=np.full((n, 1), 20.0 + step),
        ts_raw=[step] * n,
        rejections=[],
    )
    offsets = np.arange(offset, offset + n, dtype=np.int64)
    scored = served.score(
        batch, np.arange(n, dtype=np.int64), now=1_764_100_000.0,
        partitions=np.zeros(n, np.int64), offsets=offsets,
    )  # fmt: skip
    records = [
        Record("in", 0, int(o), i.encode(), b"", 0, []) for i, o in zip(ids, offsets, strict=True)
    ]
    return records, {"tiny": scored.touched}


def _deferring(tiny_registry: Path) -> tuple[ServedModel, Checkpointer]:
    """The tiny model served beside an at-least-once checkpointer that writes 100 frames
    a turn, hooked in as the scorer hooks it (before_update)."""
    served = ServedModel("tiny", Registry(tiny_registry))
    cp = Checkpointer(
        {"tiny": served},
        ScorerMetrics(),
        changelog="cl",
        exactly_once=False,
        interval_s=1.0,
        frames_per_turn=100,
    )
    served.before_update = functools.partial(cp.before_update, "tiny")
    return served, cp


def _frames_now(
    served: ServedModel, ids: list[str]
) -> tuple[npt.NDArray[np.int64], dict[str, bytes]]:
    """The streams' slots, and the frames a checkpoint written at once would hold."""
    slots = np.asarray([served.store.slot_of(i) for i in ids], np.int64)
    served.materialize(slots)  # streams a swap left stale, as they are persisted
    frames = encode_snapshots(served.store, slots, "tiny", served.version)
    return slots, dict(zip(ids, frames, strict=True))


def _checkpointed(
    registry: Path, n: int
) -> tuple[ServedModel, Checkpointer, _Acks, _Commits, list[str], dict[str, bytes]]:
    """``n`` streams through three steps, then a checkpoint of them, whose first chunk of
    frames is written in this turn (4b): ``(served, checkpointer, producer, consumer,
    stream ids, the frames written at once would hold)``."""
    served, cp = _deferring(registry)
    producer, consumer = _Acks(), _Commits()
    ids = [f"s{i:03d}" for i in range(n)]
    for step in range(3):
        cp.add_batch(*_events(served, ids, step, n * step))
    _, expected = _frames_now(served, ids)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    assert len(producer.to("cl")) == 100  # 4b: one chunk in this turn
    return served, cp, producer, consumer, ids, expected


def test_frames_written_after_the_checkpoint_still_describe_it(
    tiny_registry: Path,
) -> None:
    """At-least-once, a checkpoint's frames are written over the next loop turns (4b); a
    batch that changes a stream whose frame is not written yet writes it first (4c), so
    every frame is the one the checkpoint would have written at once, and the offsets are
    committed only after the last of them."""
    served, cp, producer, consumer, ids, expected = _checkpointed(tiny_registry, 350)
    # The last 150 streams change before their turn came: written first (4c).
    cp.add_batch(*_events(served, ids[200:], 3, 1050))
    assert len(producer.to("cl")) == 250
    while len(producer.to("cl")) < 350:
        producer.ack()
        cp.complete(producer, consumer)  # type: ignore[arg-type]
        assert consumer.commits == [] or len(producer.to("cl")) == 350
    written = {k.decode(): v for _, k, v, _, _ in producer.to("cl")}
    assert len(written) == 350 and written == expected
    producer.ack()
    cp.complete(producer, consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{TopicPartition("in", 0): 1050}]


def test_an_eviction_writes_the_frames_it_would_lose_before_its_tombstones(
    tiny_registry: Path,
) -> None:
    """Streams evicted while their checkpoint frames are still owed get them written first
    (4c), so each frame precedes its tombstone and equals the one written at once."""
    served, cp = _deferring(tiny_registry)
    producer, consumer = _Acks(), _Commits()
    ids = [f"s{i:03d}" for i in range(300)]
    cp.add_batch(*_events(served, ids, 0, 0))
    slots, expected = _frames_now(served, ids)
    cp.checkpoint(producer, consumer)  # type: ignore[arg-type]
    assert len(producer.to("cl")) == 100
    served.store.last_seen[slots[250:]] = -1e9  # the last 50 went idle
    gone = served.store.evict_idle(0.0, 1.0, served.before_update)
    assert sorted(sid for sid, _ in gone) == ids[250:]
    assert len(producer.to("cl")) == 150  # their frames, written before they are freed
    cp.drain()
    written = {k.decode(): v for _, k, v, _, _ in producer.to("cl")}
    assert len(producer.to("cl")) == 300 and written == expected


def test_a_model_swap_writes_the_frames_it_would_change_first(
    tiny_registry: Path, tmp_path: Path
) -> None:
    """A swap carries every stream over to the new version, changing all of them: frames a
    checkpoint still owes are written before it (4c), as the old version's state."""
    shutil.copytree(tiny_registry, tmp_path / "r")
    registry = Registry(tmp_path / "r")
    v1 = registry.current("tiny")
    assert v1 is not None
    served, _, producer, _, ids, expected = _checkpointed(tmp_path / "r", 300)
    doc = json.loads((tmp_path / "r" / "tiny" / v1 / "model.json").read_text())
    onnx = tmp_path / "r" / "tiny" / v1 / "model.onnx"
    registry.write_version("tiny", "v2", onnx, {**doc, "version": "v2"})
    registry.promote("tiny", "v2")
    assert served.maybe_swap() == "v2"
    assert len(producer.to("cl")) == 300  # all owed frames, written before the carry-over
    written = {k.decode(): v for _, k, v, _, _ in producer.to("cl")}
    assert written == expected
    _, after = _frames_now(served, ids)
    assert all(after[i] != expected[i] for i in ids)  # the swap did change every stream


def test_frames_and_snapshot_copies_of_streams_a_swap_left_stale_hold_them_rebuilt(
    tiny_registry: Path, tmp_path: Path
) -> None:
    """A swap leaves every stream stale, to be rebuilt when next used: a changelog frame
    or a local snapshot's copy of one written before that holds it rebuilt in the new
    version (as the swap at once would have), never its old state under the new label."""
    from pipeline.engine.row_copy import RowCopy

    shutil.copytree(tiny_registry, tmp_path / "r")
    registry = Registry(tmp_path / "r")
    v1 = registry.current("tiny")
    assert v1 is not None
    served, cp, producer, _, ids, _ = _checkpointed(tmp_path / "r", 300)
    cp.drain(producer)  # type: ignore[arg-type]
    doc = json.loads((tmp_path / "r" / "tiny" / v1 / "model.json").read_text())
    onnx = tmp_path / "r" / "tiny" / v1 / "model.onnx"
    registry.write_version("tiny", "v2", onnx, {**doc, "version": "v2"})
    registry.promote("tiny", "v2")
    assert served.maybe_swap() == "v2"
    slots = np.asarray([served.store.slot_of(i) for i in ids], np.int64)
    assert served.store.stale[slots].all()
    old_frames = encode_snapshots(served.store, slots, "tiny", "v2")  # not rebuilt
    copy = RowCopy(served.store, slots[:150], served.materialize)
    copy.finish()
    before = len(producer.to("cl"))
    cp._send_frames(producer, "tiny", slots)  # type: ignore[arg-type]
    assert not served.store.stale[slots].any()
    written = [v for _, _, v, _, _ in producer.to("cl")[before:]]
    rebuilt = encode_snapshots(served.store, slots, "tiny", "v2")
    assert written == rebuilt
    assert encode_snapshots(copy.copy, np.arange(150), "tiny", "v2") == rebuilt[:150]
    assert all(a != b for a, b in zip(rebuilt, old_frames, strict=True))
