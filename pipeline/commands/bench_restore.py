"""The restore benchmark's scenario (``statecast bench`` and benchmarks/restore.py).

What it simulates, through the scorer's own classes (Checkpointer, SnapshotTaker,
Restorer, ServedModel) against a real broker: ``streams`` streams of the served model
(its real frame size) over the input topic's partitions, then ``checkpoints`` checkpoints,
each touching ``touched`` random streams (15k: 15k events/s spread over 100k streams) and
writing their changelog frames and committing their offsets exactly as the scorer does,
with a local snapshot every ``snapshot_interval`` checkpoints. ``pace`` seconds of wall
time per checkpoint let the broker's log cleaner compact as it would under a scorer. The
process then "stops" in one of two ways:

* ``clean``: a final checkpoint with its snapshot (SIGTERM);
* ``kill``: right before the next snapshot is due, the worst moment for a kill -9 (the
  tail since the last snapshot is longest);

and each restore runs in a fresh set of served models, timed from the committed offsets
to every stream installed (``Restorer.restore``): ``warm`` with the local snapshots and
their deltas (the same machine restarted), ``warm-no-delta`` with the snapshots alone
(the changelog read from the snapshot's offset, as before deltas), ``cold`` with neither
(a new machine: the changelog as the log cleaner has left it), and ``standby`` (another
member that kept standby snapshots of these partitions, refreshed in the background at
every local snapshot's checkpoint: a failover onto it, pipeline.scorer.standby). All of
them restore the same written state, side by side.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.config import KafkaConfig, ScorerConfig
from pipeline.engine import season
from pipeline.engine.registry import Registry
from pipeline.engine.serving import ServedModel
from pipeline.kafka_io import (
    Record,
    TopicPartition,
    delete_topics,
    ensure_topic,
    open_consumer,
    open_producer,
)
from pipeline.kafka_io.changelog import changelog_topic, topic_config
from pipeline.metrics import ScorerMetrics
from pipeline.scorer.checkpoint import Checkpointer
from pipeline.scorer.local_delta import DeltaLog
from pipeline.scorer.local_state import LocalState, SnapshotTaker
from pipeline.scorer.restore import Restorer
from pipeline.scorer.routing import Router
from pipeline.scorer.standby import Standby

__all__ = ["RestoreScenario", "measure_restores"]


@dataclasses.dataclass(frozen=True)
class RestoreScenario:
    streams: int = 100_000
    partitions: int = 4
    touched: int = 15_000  # streams per checkpoint
    checkpoints: int = 120
    snapshot_interval: int = 10  # checkpoints
    pace: float = 0.0  # seconds of wall time per checkpoint (0: as fast as possible)
    lag_ms: int = 60_000  # the changelog's min.compaction.lag.ms
    standby: bool = True  # another member keeps standby snapshots (the "standby" restore)


def measure_restores(
    kafka: KafkaConfig,
    registry: Path,
    model: str,
    scenario: RestoreScenario,
    stops: tuple[str, ...] = ("clean", "kill"),
) -> list[dict[str, Any]]:
    """One ``{mode, stop, streams, changelog_records, seconds, ...}`` per restore."""
    tag = uuid.uuid4().hex[:8]
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as state_dir:
        for stop in stops:
            name = f"restore-bench-{tag}-{stop}"
            out += _scenario(scenario, kafka, registry, model, name, stop, Path(state_dir))
    return out


def _served(cfg: ScorerConfig, capacity: int) -> dict[str, ServedModel]:
    return {cfg.model: ServedModel(cfg.model, Registry(cfg.registry), capacity=capacity)}


def _fill(served: ServedModel, streams: int, partitions: int, rng: np.random.Generator) -> Any:
    """Every stream's state with plausible, finite values (the restore cost does not
    depend on them; the frame size does, and it is the model's)."""
    store = served.store
    slots = store.slots_for([f"sensor-{i:06d}" for i in range(streams)], now=time.time())
    F = store.features
    store.part[slots] = np.arange(streams) % partitions
    store.h[:, slots] = rng.normal(0, 0.3, (store.layers, streams, store.hidden))
    store.c[:, slots] = rng.normal(0, 0.3, (store.layers, streams, store.hidden))
    store.n[slots] = 500.0
    store.mean[slots] = rng.uniform(10, 100, (streams, F))
    store.var[slots] = 4.0
    store.steps[slots] = 500
    store.has_fc[slots] = True
    store.last_x[slots] = store.mean[slots]
    store.lo[slots], store.hi[slots] = store.mean[slots] - 9, store.mean[slots] + 9
    store.sbin[slots] = store.season_bins
    prof = season.Profiles.pack(
        rng.normal(0, 1, store.sp[slots].shape).astype(np.float32), store.sbin[slots]
    )
    store.sp[slots], store.su[slots], store.sw[slots] = prof.sp, prof.su, prof.sw
    store.ss[slots] = prof.ss
    store.slev[slots] = store.mean[slots]
    store.sfc[slots] = store.mean[slots]
    store.mfc[slots] = store.mean[slots]
    store.fill_rings(slots, rng.normal(50, 5, (len(slots), store.ring, store.features)))
    store.last_ts[slots] = 1_764_000_000.0
    return slots


def _scenario(
    a: RestoreScenario,
    kafka: KafkaConfig,
    registry: Path,
    model: str,
    name: str,
    stop: str,
    root: Path,
) -> list[dict[str, Any]]:
    cfg = ScorerConfig(
        kafka=kafka,
        input_topic=name,
        output_topic=name + ".out",
        dlq_topic=name + ".dlq",
        group=name,
        registry=registry,
        model=model,
        state_dir=root,
    )
    changelog = changelog_topic(cfg.group)
    ensure_topic(kafka, cfg.input_topic, a.partitions)
    ensure_topic(kafka, changelog, a.partitions, topic_config(a.lag_ms))
    rng = np.random.default_rng(0)
    models = _served(cfg, a.streams)
    slots = _fill(models[cfg.model], a.streams, a.partitions, rng)
    store = models[cfg.model].store
    consumer = open_consumer(kafka, [cfg.input_topic], cfg.group)
    while len(consumer.assignment()) < a.partitions:
        consumer.poll(200, 1)
    producer = open_producer(kafka, linger_ms=20)
    local = LocalState(root, changelog)
    deltas = DeltaLog(root, changelog)
    # Due at every checkpoint; this script says at which ones it is taken.
    taker = SnapshotTaker(local, changelog, interval_s=1e-9, deltas=deltas)
    ckpt = Checkpointer(
        models,
        ScorerMetrics(),
        changelog=changelog,
        exactly_once=False,
        interval_s=0.0,
        snapshots=taker,
    )
    # Another member's standby (its own directory: another machine), refreshed with every
    # snapshot, in the background as the scorer's loop starts it.
    spare = LocalState(root / "standby", changelog) if a.standby else None
    standby = (
        Standby(kafka, cfg.input_topic, spare, None, 1e-9, read_committed=False)
        if spare is not None
        else None
    )
    pos = np.zeros(a.partitions, np.int64)
    written = 0
    copy_turn_max = 0.0  # the longest a loop turn spent copying a snapshot's rows (2b)
    started = time.monotonic()

    def checkpoint(touched: npt.NDArray[np.int64], snapshot: bool, final: bool = False) -> None:
        nonlocal written, copy_turn_max
        parts = store.part[touched]
        offsets = pos[parts] + np.arange(len(touched))
        store.src_offset[touched] = offsets
        store.h[:, touched] += np.float32(0.01)  # the state moves on
        records = [
            Record(cfg.input_topic, int(p), int(pos[p]) + len(touched) - 1, None, None, 0, ())
            for p in range(a.partitions)
        ]
        pos[:] += len(touched)
        ckpt.add_batch(records, {cfg.model: touched})
        ckpt.checkpoint(producer, consumer, final=final, snapshot=snapshot)
        written += len(touched)
        while taker.copying:  # a snapshot's copy, as the scorer's loop turns make it
            taker.advance()
        copy_turn_max = max(copy_turn_max, taker.copy_max_s)

    # The first checkpoint writes every stream (as a restore, or a first day, leaves them).
    ckpt.start_partitions({TopicPartition(cfg.input_topic, p): 0 for p in range(a.partitions)})
    checkpoint(slots, snapshot=True)
    tick = time.monotonic()
    for i in range(1, a.checkpoints + 1):
        tick += a.pace
        time.sleep(max(0.0, tick - time.monotonic()))
        consumer.poll(1, 1)  # a group member that polls (the input topic is empty)
        touched = rng.choice(slots, a.touched, replace=False)
        last = i == a.checkpoints
        due = i % a.snapshot_interval == 0
        if due or last:
            taker.wait()  # the interval's real time: the previous snapshot is written
        checkpoint(touched, snapshot=stop == "clean" if last else due, final=last)
        if standby is not None and due and not last:
            standby.refresh(consumer, changelog, range(a.partitions), time.monotonic())
    taker.close()
    if standby is not None:
        standby.wait()
    snapshot_cost = {
        "take_s": round(taker.take_s, 3),
        "copy_turn_max_s": round(copy_turn_max, 3),
        "write_s": round(taker.write_s, 3),
        "delta_records": deltas.appended,
        "delta_append_s": round(deltas.append_s, 3),
    }
    standby_cost = (
        {
            "refreshes": standby.refreshes,
            "published": standby.published,
            "changelog_records": standby.records,
            "last_refresh_s": round(standby.refresh_s, 3),
        }
        if standby is not None
        else None
    )
    print(
        f"{stop}: wrote {written:,} changelog frames in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )
    out = []
    # The unpaced scenario writes gigabytes in seconds: let the kernel write them back
    # first, so that the restores do not compete with it (a scorer writes steadily).
    os.sync()
    sources = {"warm": (local, deltas), "warm-no-delta": (local, None), "cold": (None, None)}
    if spare is not None:
        sources["standby"] = (spare, None)
    for mode, (snapshots, delta) in sources.items():
        # A restarted scorer's store starts at its configured capacity, as here.
        fresh = _served(cfg, cfg.state_capacity)
        restorer = Restorer(
            cfg, changelog, fresh, Router(cfg.model, {}), ScorerMetrics(), snapshots, delta
        )
        assigned = {TopicPartition(cfg.input_topic, p) for p in range(a.partitions)}
        t0, c0 = time.monotonic(), time.process_time()
        restorer.restore(consumer, assigned)
        # CPU seconds of every thread: less at the mercy of a noisy machine than seconds.
        seconds, cpu = time.monotonic() - t0, time.process_time() - c0
        got = fresh[cfg.model].store
        # The restored state is the state that was checkpointed last.
        check = rng.choice(slots, 200, replace=False)
        mine = np.asarray([got.slot_of(str(store.id_of(int(s)))) for s in check], np.int64)
        if len(got) != a.streams or not (
            np.array_equal(got.h[:, mine], store.h[:, check])
            and np.array_equal(got.src_offset[mine], store.src_offset[check])
        ):
            raise RuntimeError(f"{mode} restore after {stop}: not the checkpointed state")
        out.append(
            {
                "mode": mode,
                "stop": stop,
                "streams": a.streams,
                "changelog_records": restorer.changelog_records,
                "local_records": restorer.local_records,
                "changelog_written": written,
                "pace_s": a.pace,
                "snapshot": snapshot_cost,
                **({"standby": standby_cost} if mode == "standby" else {}),
                "min_compaction_lag_ms": a.lag_ms,
                "seconds": round(seconds, 3),
                "cpu_s": round(cpu, 3),
            }
        )
        del fresh, restorer
    consumer.close()
    producer.close()
    delete_topics(kafka, [cfg.input_topic, changelog])  # gigabytes of frames
    return out
