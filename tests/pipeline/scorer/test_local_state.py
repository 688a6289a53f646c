"""Local state snapshots: the files, their validity rules and the compact copy they are
written from. The restore through them runs against the real broker in
tests/pipeline/scorer/test_durability.py (crash and resume)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.engine.state import StateStore
from pipeline.errors import KafkaError
from pipeline.kafka_io.changelog import (
    decode_block,
    decode_columns,
    encode_snapshots,
    frame_blocks,
)
from pipeline.scorer.local_state import LocalState


def _store(streams: int = 9) -> StateStore:
    rng = np.random.default_rng(3)
    store = StateStore(layers=2, hidden=3, features=1, horizon=2, capacity=4, ring=4)
    slots = store.slots_for([f"s{i}" for i in range(streams)], now=0.0)
    for i, slot in enumerate(slots.tolist()):
        for _ in range(i):  # ring lengths from empty to wrapped
            store.push_inputs(np.asarray([slot]), rng.normal(size=(1, 1)))
    for name in ("h", "c", "mean", "var", "fc", "sp", "sw", "bm", "emu"):
        arr = getattr(store, name)
        arr[...] = rng.normal(size=arr.shape)
    store.su[...] = 0.5  # the profile's unit (pipeline.engine.season.Profiles)
    store.part[slots] = np.arange(len(slots)) % 3
    store.src_offset[slots] = np.arange(len(slots)) * 10
    return store


def _write(local: LocalState, store: StateStore, part: int, position: int, offset: int) -> None:
    slots = np.nonzero(store.part[: len(store)] == part)[0].astype(np.int64)
    keys: list[bytes] = []
    blocks: list[tuple[int, bytes]] = []
    for pick, data, size in frame_blocks(store, slots, "m", "v1"):
        keys.extend(str(store.id_of(s)).encode() for s in slots[pick].tolist())
        blocks.append((size, data))
    local.write(part, position, offset, keys, blocks)


def test_a_compact_copy_encodes_the_same_frames() -> None:
    store = _store()
    slots = np.asarray([7, 2, 5], np.int64)
    copy = store.extract(slots)
    assert [copy.id_of(i) for i in range(3)] == ["s7", "s2", "s5"]
    assert encode_snapshots(copy, np.arange(3), "m", "v1") == encode_snapshots(
        store, slots, "m", "v1"
    )
    store.h[...] = 0.0  # the copy does not follow the store
    assert encode_snapshots(copy, np.arange(3), "m", "v1") != encode_snapshots(
        store, slots, "m", "v1"
    )


def test_a_snapshot_file_holds_every_frame_of_its_partition(tmp_path: Path) -> None:
    store = _store()
    local = LocalState(tmp_path, "g.state-changelog")
    _write(local, store, 1, position=100, offset=40)
    seed = local.read(1)
    assert seed is not None
    assert (seed.partition, seed.position, seed.changelog_offset) == (1, 100, 40)
    slots = np.asarray([1, 4, 7], np.int64)  # the streams of partition 1
    assert seed.frames == dict(
        zip(["s1", "s4", "s7"], encode_snapshots(store, slots, "m", "v1"), strict=True)
    )


def test_an_empty_partition_writes_an_empty_snapshot(tmp_path: Path) -> None:
    local = LocalState(tmp_path, "t")
    _write(local, _store(), 5, position=3, offset=0)
    seed = local.read(5)
    assert seed is not None and seed.frames == {}


def test_a_damaged_or_foreign_file_is_ignored(tmp_path: Path) -> None:
    store = _store()
    local = LocalState(tmp_path, "t")
    _write(local, store, 0, position=100, offset=40)
    data = bytearray(local.path(0).read_bytes())
    data[-5] ^= 0xFF
    local.path(0).write_bytes(bytes(data))
    assert local.read(0) is None  # checksum
    local.path(0).write_bytes(bytes(data[:30]))
    assert local.read(0) is None  # truncated
    _write(LocalState(tmp_path, "other"), store, 0, position=100, offset=40)
    (tmp_path / "other" / "0.snap").rename(local.path(0))
    assert local.read(0) is None  # another changelog's


def test_the_newest_committed_snapshot_is_used(tmp_path: Path) -> None:
    store = _store()
    local = LocalState(tmp_path, "t")
    _write(local, store, 2, position=100, offset=40)
    _write(local, store, 2, position=200, offset=90)  # the first becomes the previous
    seed = local.seed(2, committed=250, changelog_end=500)
    assert seed is not None and seed.position == 200
    # The newest checkpoint was not committed: the previous snapshot stands.
    seed = local.seed(2, committed=150, changelog_end=500)
    assert seed is not None and (seed.position, seed.changelog_offset) == (100, 40)
    # Neither was: none (the restore reads the whole changelog).
    assert local.seed(2, committed=99, changelog_end=500) is None
    # A changelog shorter than what the snapshot covers is another incarnation of it.
    assert local.seed(2, committed=250, changelog_end=50) is None
    assert local.seed(1, committed=250, changelog_end=500) is None  # no file
    # A damaged newest snapshot: the previous one stands.
    data = bytearray(local.path(2).read_bytes())
    data[-5] ^= 0xFF
    local.path(2).write_bytes(bytes(data))
    seed = local.seed(2, committed=250, changelog_end=500)
    assert seed is not None and (seed.position, seed.changelog_offset) == (100, 40)


def test_a_block_decodes_as_its_frames_do(tmp_path: Path) -> None:
    store = _store()
    local = LocalState(tmp_path, "t")
    _write(local, store, 1, position=100, offset=40)
    seed = local.read(1)
    assert seed is not None and len(seed.blocks) == 2  # two ring lengths
    row = 0
    for size, data in seed.blocks:
        got = decode_block(data, size)
        assert got is not None
        n = len(data) // size
        (want,), _ = decode_columns([seed.frames[sid] for sid in seed.ids[row : row + n]])
        for name, col in want.cols.items():
            other = got.cols[name]
            assert (col is None) == (other is None), name
            if col is not None and other is not None:
                np.testing.assert_array_equal(col, other, err_msg=name)
        row += n
    assert decode_block(seed.blocks[0][1], seed.blocks[0][0] + 1) is None  # wrong size


class _Ends:
    """The one Consumer call a snapshot makes (the changelog's end offsets)."""

    def __init__(self) -> None:
        self.end = 0

    def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return {p: self.end for p in partitions}


def test_a_snapshot_is_published_only_once_its_position_is_committed(
    tmp_path: Path, tiny_registry: Path
) -> None:
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.metrics import ScorerMetrics
    from pipeline.scorer.local_state import SnapshotTaker

    served = ServedModel("tiny", Registry(tiny_registry))
    slots = served.store.slots_for(["a", "b", "c"], now=0.0)
    served.store.part[slots] = [0, 0, 1]
    local = LocalState(tmp_path, "t")
    metrics = ScorerMetrics()
    taker = SnapshotTaker(local, "t", interval_s=60.0, metrics=metrics)
    ends = _Ends()
    models = {"tiny": served}

    ends.end = 7
    taker.take(ends, models, {0: 10, 1: 4}, now=0.0, wait=True)  # type: ignore[arg-type]
    assert local.read(0) is None and local.read(1) is None  # nothing committed yet
    published = metrics.snapshot_published
    assert published._value.get() == 0.0
    taker.confirm({0: 10})  # partition 0's checkpoint commits, 1's not yet
    assert published._value.get() > 0.0
    seed = local.read(0)
    assert seed is not None and (seed.position, seed.changelog_offset) == (10, 7)
    assert sorted(seed.frames) == ["a", "b"] and local.read(1) is None
    taker.confirm({1: 3})
    assert local.read(1) is None
    taker.confirm({1: 4})
    assert local.read(1) is not None

    ends.end = 9
    taker.take(ends, models, {0: 20, 1: 4}, now=60.0, wait=True)  # type: ignore[arg-type]
    current = local.read(1)  # already covered by the commit at 4: published at once
    assert current is not None and current.changelog_offset == 9
    taker.confirm({0: 15})  # a commit short of the snapshot: the old file stands
    seed = local.read(0)
    assert seed is not None and seed.position == 10
    taker.forget({0})  # revoked before its checkpoint committed: never published
    taker.confirm({0: 20})
    seed = local.read(0)
    assert seed is not None and seed.position == 10
    # Two snapshots at one position before it commits (a partition without input since):
    # the newer replaces the older, and the commit publishes it.
    taker.take(ends, models, {0: 30}, now=120.0, wait=True)  # type: ignore[arg-type]
    taker.take(ends, models, {0: 30}, now=180.0, wait=True)  # type: ignore[arg-type]
    taker.confirm({0: 30})
    seed = local.read(0)
    assert seed is not None and seed.position == 30
    taker.close()
    assert not list((tmp_path / "t").glob("*.tmp"))  # nothing left behind


class _NoEnds:
    """A broker that does not answer the end-offset request."""

    def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        raise KafkaError(f"cannot read the end offsets of {topic}: timed out")


def test_a_snapshot_without_end_offsets_is_skipped_not_raised(
    tmp_path: Path, tiny_registry: Path
) -> None:
    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.scorer.local_state import SnapshotTaker

    served = ServedModel("tiny", Registry(tiny_registry))
    served.store.part[served.store.slots_for(["a"], now=0.0)] = 0
    local = LocalState(tmp_path, "t")
    taker = SnapshotTaker(local, "t", interval_s=60.0)
    taker.take(_NoEnds(), {"tiny": served}, {0: 5}, now=0.0, wait=True)  # type: ignore[arg-type]
    assert (taker.skipped, taker.written) == (1, 0)
    taker.confirm({0: 5})
    assert local.read(0) is None
    ends = _Ends()  # the broker is back: the next one is taken
    taker.take(ends, {"tiny": served}, {0: 5}, now=60.0, wait=True)  # type: ignore[arg-type]
    taker.confirm({0: 5})
    assert taker.written == 1 and local.read(0) is not None
    taker.close()


def test_a_snapshot_waits_until_the_streams_a_swap_left_stale_are_rebuilt(
    tmp_path: Path, tiny_registry: Path
) -> None:
    """Taken while a model swap's streams are still being rebuilt, a snapshot would
    rebuild them as it copies them, thousands in a loop turn: it is skipped, and the next
    one, once they are rebuilt, holds them as the new version has them."""
    import json
    import shutil

    from pipeline.engine.registry import Registry
    from pipeline.engine.serving import ServedModel
    from pipeline.kafka_io.changelog import encode_snapshots
    from pipeline.scorer.local_state import SnapshotTaker

    shutil.copytree(tiny_registry, tmp_path / "r")
    registry = Registry(tmp_path / "r")
    v1 = registry.current("tiny")
    assert v1 is not None
    served = ServedModel("tiny", registry)
    ids = [f"s{i}" for i in range(300)]
    slots = served.store.slots_for(ids, now=0.0)
    served.store.part[slots] = 0
    for k in range(8):  # a history to replay
        served.store.push_inputs(slots, np.full((len(ids), 1), 20.0 + k), None)
    doc = json.loads((tmp_path / "r" / "tiny" / v1 / "model.json").read_text())
    registry.write_version("tiny", "v2", tmp_path / "r" / "tiny" / v1 / "model.onnx",
                           {**doc, "version": "v2"})  # fmt: skip
    registry.promote("tiny", "v2")
    assert served.maybe_swap() == "v2" and served.catching_up
    local = LocalState(tmp_path / "s", "t")
    taker = SnapshotTaker(local, "t", interval_s=60.0)
    taker.take(_Ends(), {"tiny": served}, {0: 5}, now=0.0)  # type: ignore[arg-type]
    assert (taker.skipped, taker.copying) == (1, False)
    assert served.store.stale[slots].all()  # nothing was rebuilt by it
    while served.catch_up(100):
        pass
    assert not served.catching_up
    taker.take(_Ends(), {"tiny": served}, {0: 5}, now=60.0, wait=True)  # type: ignore[arg-type]
    taker.confirm({0: 5})
    seed = local.read(0)
    assert seed is not None and len(seed.frames) == 300
    want = encode_snapshots(served.store, slots, "tiny", "v2")
    assert [seed.frames[i] for i in ids] == want
    taker.close()
