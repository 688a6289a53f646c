"""Standby snapshots against the real broker: each refresh's snapshot holds what the
changelog's restore rule gives at the committed offset it read, covers the changelog up
to the first frame of an input not committed yet, and a later restore through it (the
restore's own read and layering) installs what a restore from the whole changelog would."""

from __future__ import annotations

import collections
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import KafkaConfig
from pipeline.kafka_io import (
    Consumer,
    TopicPartition,
    open_consumer,
    open_producer,
    read_to_end,
)
from pipeline.kafka_io.changelog import (
    changelog_topic,
    encode_snapshots,
    read_partitions,
    source_offset_of,
)
from pipeline.scorer.local_delta import DeltaLog
from pipeline.scorer.local_state import LocalState, Seed
from pipeline.scorer.restore import layered
from pipeline.scorer.standby import Standby
from tests.kafka_helpers import produce, read_all, spawn_scorer, wait_committed, wait_until
from tests.pipeline.scorer.test_durability import (  # noqa: F401 - fixtures
    _SPAWNED,
    _assert_same,
    _events,
    _kill,
    _no_leftover_scorers,
    _scores,
    _spawn,
    reference,
)
from tests.pipeline.scorer.test_local_state import _store

pytestmark = pytest.mark.integration

Record = tuple[str, bytes | None]  # (stream, frame or tombstone), in log order


@pytest.fixture
def kafka_config(backend_config: KafkaConfig) -> KafkaConfig:
    return backend_config


class _Log:
    """A changelog partition written record by record, and the list of what it holds."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.config, self.topic = config, topic
        self.records: list[Record] = []
        self.sent = 0
        self.store = _store(streams=8)

    def frame(self, stream: int, source: int) -> None:
        slot = np.asarray([stream], np.int64)
        self.store.src_offset[slot] = source
        self.store.mean[slot] += 1.0  # each frame of a stream differs from its others
        (frame,) = encode_snapshots(self.store, slot, "m", "v1")
        self.records.append((f"s{stream}", frame))

    def tombstone(self, stream: int) -> None:
        self.records.append((f"s{stream}", None))

    def flush(self) -> None:
        """Sends what is not sent yet, in order, to partition 0."""
        producer = open_producer(self.config)
        todo = self.records[self.sent :]
        producer.send_many(
            self.topic, [k.encode() for k, _ in todo], [v for _, v in todo], [0] * len(todo)
        )
        producer.flush()
        producer.close()
        self.sent = len(self.records)


def _rule(records: list[Record], committed: int) -> dict[str, bytes]:
    """The changelog's restore rule, written plainly: per stream, of the frames after its
    last tombstone, the one with the highest source offset below ``committed``."""
    out: dict[str, bytes | None] = {}
    for sid, frame in records:
        if frame is None:
            out[sid] = None
        elif (off := source_offset_of(frame)) < committed:
            old = out.get(sid)
            if old is None or off >= source_offset_of(old):
                out[sid] = frame
    return {sid: f for sid, f in out.items() if f is not None}


def _first_uncommitted(records: list[Record], committed: int) -> int:
    for i, (_, frame) in enumerate(records):
        if frame is not None and source_offset_of(frame) >= committed:
            return i
    return len(records)


def _restored(config: KafkaConfig, topic: str, seed: Seed, committed: int) -> dict[str, bytes]:
    """What a restore at ``committed`` installs from ``seed`` and the changelog after it:
    the restore's own read and layering (pipeline.scorer.restore)."""
    tail, _ = read_partitions(
        config, topic, {0: committed}, read_committed=False, start={0: seed.changelog_offset}
    )
    newer, _, stale = layered([seed], [], tail)
    out = {sid: f for sid, f in seed.frames.items() if sid not in newer}
    out.update({sid: f[0] for sid, f in tail.items() if f is not None and sid not in stale})
    return out


@dataclass
class _Setting:
    """A member of a group on a 2-partition input topic (to commit its offsets with), a
    2-partition changelog written record by record, and a snapshot directory."""

    kafka: KafkaConfig
    consumer: Consumer
    inp: str
    log: _Log
    local: LocalState

    def standby(self, deltas: DeltaLog | None = None) -> Standby:
        return Standby(self.kafka, self.inp, self.local, deltas, 60.0, read_committed=False)

    def commit(self, offset: int) -> None:
        self.consumer.commit({TopicPartition(self.inp, 0): offset})

    def refresh(self, standby: Standby) -> None:
        standby.refresh(self.consumer, self.log.topic, [0, 1], now=float("inf"))
        standby.wait()


@pytest.fixture
def setting(
    kafka_config: KafkaConfig,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    tmp_path: Path,
) -> Iterator[_Setting]:
    inp = topic_factory("in", partitions=2)
    changelog = topic_factory("changelog", partitions=2)
    consumer = open_consumer(kafka_config, [inp], group_factory())
    wait_until(lambda: bool(consumer.poll(100, 1) or consumer.assignment()), "an assignment")
    yield _Setting(
        kafka_config, consumer, inp, _Log(kafka_config, changelog), LocalState(tmp_path, changelog)
    )
    consumer.close()


@pytest.mark.slow_with("kafka-python")  # suite time; kafka-python's offsets: test_read_to_end
def test_each_refresh_covers_the_committed_records_and_a_later_restore_equals_the_whole_log(
    kafka_config: KafkaConfig, setting: _Setting, tmp_path: Path
) -> None:
    local, log, changelog, commit = setting.local, setting.log, setting.log.topic, setting.commit
    deltas = DeltaLog(tmp_path, changelog)
    standby = setting.standby(deltas)

    # Checkpoint 1 (committed 100): frames, an eviction and its stream re-created, then the
    # next checkpoint's first frame (120) and a late frame of this one after it.
    for s, src in [(0, 10), (1, 20), (2, 30), (3, 40), (4, 50), (5, 60)]:
        log.frame(s, src)
    log.tombstone(2)
    log.frame(2, 70)
    log.frame(3, 120)
    log.frame(4, 80)
    log.flush()
    commit(100)
    # A delta of an older snapshot of partition 0 (this member owned it once): replaced.
    deltas.path(0).parent.mkdir(parents=True, exist_ok=True)
    deltas.path(0).write_bytes(b"an older snapshot's delta")
    setting.refresh(standby)
    s1 = local.read(0)
    assert s1 is not None and s1.position == 100
    assert s1.changelog_offset == _first_uncommitted(log.records, 100) == 8  # the frame at 120
    assert s1.frames == _rule(log.records[:8], 100)
    assert not deltas.path(0).exists()
    assert local.read(1) is None  # nothing committed on partition 1: nothing to stand by

    # Checkpoint 2 (committed 200) over the first snapshot: a zombie's old frame, an
    # eviction, new streams, the next checkpoint's frame.
    log.frame(0, 150)
    log.frame(5, 30)  # older than what stands: ignored
    log.tombstone(1)
    log.frame(6, 190)
    log.frame(7, 250)
    log.frame(3, 180)
    log.flush()
    commit(200)
    setting.refresh(standby)
    s2 = local.read(0)
    assert s2 is not None and s2.position == 200
    assert s2.changelog_offset == _first_uncommitted(log.records, 200) == 14  # the one at 250
    assert s2.frames == _rule(log.records[:14], 200)
    prev = local.read(0, previous=True)
    assert prev is not None and prev.position == 100  # the first became the previous one

    # Nothing written since: a refresh rewrites nothing.
    published = standby.published
    setting.refresh(standby)
    assert standby.published == published

    # Checkpoint 3 (committed 300): the streams re-created and evicted again.
    log.frame(1, 260)
    log.tombstone(6)
    log.frame(7, 280)
    log.flush()
    commit(300)
    # A restore at 300 through either snapshot installs what the whole changelog gives.
    whole = _rule(log.records, 300)
    assert set(whole) == {"s0", "s1", "s2", "s3", "s4", "s5", "s7"}
    for seed in (s1, s2):
        assert _restored(kafka_config, changelog, seed, 300) == whole
    setting.refresh(standby)
    s3 = local.read(0)
    assert s3 is not None and s3.changelog_offset == len(log.records)
    assert s3.frames == whole
    # Each refresh read from its snapshot's offset on: 0-9, 8-15, 14-15, 14-18.
    assert standby.records == 10 + 8 + 2 + 5


@pytest.mark.slow_with("kafka-python")  # suite time
def test_an_owned_partition_is_left_to_its_owner_until_released_and_a_stopped_one_publishes_nothing(
    setting: _Setting,
) -> None:
    local, log = setting.local, setting.log
    standby = setting.standby()
    log.frame(0, 5)
    log.flush()
    setting.commit(10)
    assert not standby.due(time.monotonic())  # the first refresh waits an interval
    standby.claim([0])
    setting.refresh(standby)
    assert local.read(0) is None and standby.records == 0
    standby.release([0])
    setting.refresh(standby)
    seed = local.read(0)
    assert seed is not None and seed.frames == _rule(log.records, 10)
    # A member stopping publishes nothing more.
    log.frame(1, 8)
    log.flush()
    standby.close()
    setting.refresh(standby)
    again = local.read(0)
    assert again is not None and again.changelog_offset == seed.changelog_offset


def _stood_by(log: str) -> set[int]:
    """The partitions a scorer's log says it published standby snapshots of."""
    found = re.findall(r"standby snapshots of partitions \[([\d, ]+)\] published", log)
    return {int(p) for parts in found for p in parts.split(",")}


# Suite time (`make test` at 12.2-12.5 min with it on 2026-12-06): `make test-slow`. The
# short chaos run in `make test` runs every member with --standby, through kills and
# takeovers, against an uninterrupted run.
@pytest.mark.slow
def test_a_failover_onto_a_standby_restores_from_its_snapshots_as_the_owner_left_them(
    kafka_config: KafkaConfig,
    tiny_registry: Path,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    reference: Callable[..., dict[tuple[str, int], tuple[list[float], float]]],  # noqa: F811
    tmp_path: Path,
) -> None:
    inp = topic_factory("in", partitions=4)
    events = _events(100, 120, seed=5)
    first, middle, last = events[:4000], events[4000:8000], events[8000:]
    produce(kafka_config, inp, first)
    out = topic_factory("out", partitions=4)
    group = group_factory()
    # a alone first, so that b never owns a's partitions: b's only snapshots of them are
    # its standby's.
    a = _spawn(kafka_config, tiny_registry, inp, out, group, "--until-idle", "120")
    wait_committed(kafka_config, group, inp)
    b_log = tmp_path / "b.log"
    b = spawn_scorer(
        kafka_config, tiny_registry, inp, out, group, "--max-poll-records", "300",
        "--until-idle", "120", "--state-dir", str(tmp_path / "b"),
        "--standby", "--standby-interval-s", "0.5", log=b_log,
    )  # fmt: skip
    _SPAWNED.append(b)
    wait_until(lambda: "restored" in b_log.read_text(), "b's assignment")
    produce(kafka_config, inp, middle)  # both members score; b stands by for a
    wait_committed(kafka_config, group, inp)
    ends = collections.Counter(p for p, *_ in read_to_end(kafka_config, inp, range(4)))
    mine = {
        int(p)
        for p in re.findall(r"records of partitions \[([\d, ]+)\]", b_log.read_text())[0].split(",")
    }
    theirs = set(range(4)) - mine
    assert theirs, mine  # a kept partitions when b joined
    # b's standby snapshots of a's partitions catch up with all that a committed.
    local = LocalState(tmp_path / "b", changelog_topic(group))
    wait_until(
        lambda: all((s := local.read(p)) is not None and s.position == ends[p] for p in theirs),
        "b's standby snapshots of a's partitions at their committed offsets",
    )
    _kill(a)  # no goodbye: b takes a's partitions when a's session times out
    produce(kafka_config, inp, last)
    wait_committed(kafka_config, group, inp, timeout_s=120)  # all of it, a's share too
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0, b_log.read_text()[-2000:]
    log = b_log.read_text()
    taken = [
        (sorted(int(p) for p in parts.split(",")), int(seeds), int(records))
        for records, parts, seeds in re.findall(
            r"from (\d+) changelog records of partitions \[([\d, ]+)\] "
            r"\(local snapshots: (\d+) of them",
            log,
        )
    ]
    # The takeover of a's partitions: from the standby's snapshots of them and the
    # changelog written since.
    parts, seeds, records = taken[-1]
    assert set(parts) == theirs and seeds == len(parts), (taken, theirs)
    assert theirs <= _stood_by(log), (_stood_by(log), theirs)
    written = sum(1 for p, *_ in read_to_end(kafka_config, changelog_topic(group), parts))
    assert records < written, (records, written)
    # ... and each stream goes on as if nothing had happened.
    got = _scores(read_all(kafka_config, out, timeout_s=20))
    _assert_same(got, reference(inp, len(events)))
