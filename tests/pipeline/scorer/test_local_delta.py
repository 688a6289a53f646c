"""Local deltas: the file, its markers and checksums, and the restore rule over it, against
a plain list of the records sent. The restore through them runs against the real broker
in tests/pipeline/scorer/test_durability.py (crash and resume) and benchmarks/restore.py
(which checks every restored stream it samples)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.engine.state import StateStore
from pipeline.kafka_io.changelog import encode_snapshots, source_offset_of
from pipeline.scorer.local_delta import REMOVED, DeltaLog
from tests.pipeline.scorer.test_local_state import _store

Sent = list[tuple[str, bytes | None, int]]  # (stream, frame or tombstone, partition)


def _send(deltas: DeltaLog, store: StateStore, slots: list[int], sent: Sent) -> None:
    """What the checkpointer does for these slots: frames, block by block, to the deltas
    (and, in the scorer, the same records to the changelog: here to ``sent``)."""
    sl = np.asarray(slots, np.int64)
    keys = [str(store.id_of(s)).encode() for s in slots]
    parts = store.part[sl]
    frames = encode_snapshots(store, sl, "m", "v1", functools.partial(deltas.frames, parts, keys))
    sent += [(k.decode(), f, int(p)) for k, f, p in zip(keys, frames, parts.tolist(), strict=True)]


def _expected(sent: Sent, partition: int, committed: int) -> dict[str, bytes | None]:
    """The changelog's restore rule over the records sent: per stream, of the frames after
    its last tombstone, the one with the highest source offset below the committed offset
    (of equal offsets the newest); a tombstone removes."""
    out: dict[str, bytes | None] = {}
    for sid, frame, part in sent:
        if part != partition:
            continue
        if frame is None:
            out[sid] = None
            continue
        offset = source_offset_of(frame)
        old = out.get(sid)
        if offset < committed and (old is None or offset >= source_offset_of(old)):
            out[sid] = frame
    return out


def _got(deltas: DeltaLog, partition: int, committed: int) -> tuple[int, dict[str, bytes | None]]:
    d = deltas.read(partition, 100, 7, committed)
    out: dict[str, bytes | None] = {}
    for sid, ref in d.winners.items():
        if ref == REMOVED:
            out[sid] = None
        else:
            block, size = d.blocks[ref >> 32]
            row = ref & 0xFFFFFFFF
            out[sid] = bytes(block[row * size : (row + 1) * size])
    return d.records, out


def _count(sent: Sent, partition: int) -> int:
    return sum(1 for _, _, p in sent if p == partition)


def test_a_delta_holds_the_records_sent_up_to_its_last_good_marker(tmp_path: Path) -> None:
    store = _store(12)  # partitions 0, 1, 2; source offsets 0, 10, ..., 110
    deltas = DeltaLog(tmp_path, "t")
    for p in (0, 1):
        deltas.open(p, 100, 7)  # snapshot taken at input position 100, changelog offset 7
    sent: Sent = []
    _send(deltas, store, list(range(12)), sent)
    deltas.mark({0: 120, 1: 120})
    first = sent[:]
    # The streams move on; one is evicted (its frame first, then its tombstone).
    store.src_offset[: len(store)] += 200
    store.h[...] += 1.0
    _send(deltas, store, [0, 3, 6, 1], sent)
    deltas.tombstones([b"s3"], [0])
    sent.append(("s3", None, 0))
    deltas.mark({0: 130})
    second = sent[:]
    _send(deltas, store, [9], sent)  # after the last marker: a kill before the next commit
    deltas.publish(0, 100)
    deltas.publish(1, 100)

    records, got = _got(deltas, 0, committed=1000)
    assert records == _count(second, 0)
    assert got == _expected(second, 0, 1000) and got["s3"] is None
    # Frames at or after the committed offset never win; an older frame stands.
    records, got = _got(deltas, 0, committed=235)
    assert got == _expected(second, 0, 235)
    assert got["s0"] is not None and source_offset_of(got["s0"]) == 200
    assert got["s6"] is not None and source_offset_of(got["s6"]) == 60
    # A marker beyond the committed offset (the group's offsets went back): the one
    # before it is used.
    records, got = _got(deltas, 0, committed=125)
    assert records == _count(first, 0) and got == _expected(first, 0, 125)
    # Every open delta gets the marker of a commit (every send so far is acknowledged),
    # whether or not its partition was in it.
    records, got = _got(deltas, 1, committed=1000)
    assert records == _count(second, 1) > _count(first, 1)
    assert got == _expected(second, 1, 1000)
    # No delta for partition 2 (it was not opened), none for another snapshot.
    assert deltas.read(2, 100, 7, 1000).records == 0
    assert deltas.read(0, 101, 7, 1000).records == 0
    assert deltas.read(0, 100, 8, 1000).records == 0
    deltas.stop()


def test_a_tombstone_removes_and_a_frame_after_it_re_creates(tmp_path: Path) -> None:
    """The delta says which streams it removed: a frame after a stream's tombstone replaces
    whatever older state a restore holds for it (the snapshot's), at any source offset."""
    store = _store(6)  # partitions 0, 1, 2; source offsets 0, 10, ..., 50
    deltas = DeltaLog(tmp_path, "t")
    deltas.open(0, 100, 7)
    sent: Sent = []
    _send(deltas, store, [0, 3], sent)
    deltas.tombstones([b"s0", b"s3"], [0, 0])
    sent += [("s0", None, 0), ("s3", None, 0)]
    store.src_offset[: len(store)] += 5
    _send(deltas, store, [3], sent)
    deltas.mark({0: 1000})
    deltas.publish(0, 100)
    deltas.stop()
    records, got = _got(deltas, 0, committed=1000)
    assert records == 5 and got == _expected(sent, 0, 1000)
    d = deltas.read(0, 100, 7, 1000)
    assert d.removed == {"s0", "s3"} and got["s0"] is None
    assert got["s3"] is not None and d.offsets["s3"] == source_offset_of(got["s3"]) == 35


def test_a_delta_published_before_any_record_holds_its_head(tmp_path: Path) -> None:
    """An idle partition's delta is published with its snapshot before any marker: a kill
    -9 then (the open file never flushed again) must leave a delta file, not an empty one
    (the long chaos run logged such files as "not a Statecast local state file")."""
    deltas = DeltaLog(tmp_path, "t")
    deltas.open(0, 100, 7)
    deltas.publish(0, 100)
    assert deltas.path(0).read_bytes().startswith(b"SCLD")  # before any close
    d = deltas.read(0, 100, 7, 1000)
    assert d.records == 0 and not d.winners
    deltas.stop()


def test_a_damaged_segment_falls_back_to_the_marker_before_it(tmp_path: Path) -> None:
    store = _store(6)
    deltas = DeltaLog(tmp_path, "t")
    deltas.open(0, 100, 7)
    sent: Sent = []
    _send(deltas, store, [0, 3], sent)
    deltas.mark({0: 120})
    first = sent[:]
    store.src_offset[: len(store)] += 5
    _send(deltas, store, [0, 3], sent)
    deltas.mark({0: 130})
    deltas.publish(0, 100)
    deltas.stop()
    assert _got(deltas, 0, 1000) == (4, _expected(sent, 0, 1000))
    path = deltas.path(0)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # a byte of the second segment's last frame
    path.write_bytes(bytes(data))
    assert _got(deltas, 0, 1000) == (2, _expected(first, 0, 1000))
    path.write_bytes(bytes(data[:-7]))  # and a torn write of its marker
    assert _got(deltas, 0, 1000) == (2, _expected(first, 0, 1000))
    path.write_bytes(b"not a delta")
    assert _got(deltas, 0, 1000) == (0, {})


def test_a_record_of_an_unknown_partition_stops_every_delta(tmp_path: Path) -> None:
    store = _store(6)
    deltas = DeltaLog(tmp_path, "t")
    deltas.open(0, 100, 7)
    sent: Sent = []
    _send(deltas, store, [0], sent)
    # The client picks its partition by key: it may land below offsets a delta would skip.
    deltas.tombstones([b"x"], [-1])
    _send(deltas, store, [3], sent)
    deltas.mark({0: 120})
    deltas.publish(0, 100)
    assert deltas.appended == 1
    assert _got(deltas, 0, 1000) == (0, {})  # no marker after the stop: nothing usable
    deltas.stop()


def test_a_delta_is_published_and_dropped_with_its_snapshot(
    tmp_path: Path, tiny_registry: Path
) -> None:
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.scorer.local_state import LocalState, SnapshotTaker
    from tests.pipeline.scorer.test_local_state import _Ends

    served = ServedModel("tiny", Registry(tiny_registry))
    served.store.part[served.store.slots_for(["a", "b"], now=0.0)] = [0, 1]
    deltas = DeltaLog(tmp_path, "t")
    taker = SnapshotTaker(LocalState(tmp_path, "t"), "t", interval_s=60.0, deltas=deltas)
    ends, models = _Ends(), {"tiny": served}
    root = tmp_path / "t"

    taker.take(ends, models, {0: 10, 1: 10}, now=0.0, wait=True)  # type: ignore[arg-type]
    assert len(list(root.glob("*.delta.*.tmp"))) == 2 and not list(root.glob("*.delta"))
    taker.forget({1})  # revoked before its checkpoint committed: its delta goes too
    assert len(list(root.glob("*.delta.*.tmp"))) == 1
    taker.mark({0: 10})
    assert [p.name for p in root.glob("*.delta")] == ["0.delta"]
    assert not list(root.glob("*.tmp"))
    first = (root / "0.delta").stat().st_ino

    ends.end = 9
    taker.take(ends, models, {0: 20}, now=60.0, wait=True)  # type: ignore[arg-type]
    assert (root / "0.delta").stat().st_ino == first  # stands until the next one publishes
    taker.mark({0: 20})
    assert (root / "0.delta").stat().st_ino != first and not list(root.glob("*.tmp"))
    taker.close()
