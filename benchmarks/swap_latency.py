"""End-to-end latency across a live model swap, for side-by-side comparisons.

    .venv/bin/python benchmarks/swap_latency.py --bootstrap 127.0.0.1:9092 \\
        [--streams 20000] [--rate 5000] [--seconds 40] [--swap-at 15] \\
        [--versions A,B] [--backend confluent-kafka]

A scorer process (this checkout's: run the script from another checkout, e.g. a ``git
worktree`` of an older commit, with the same interpreter, to compare two builds) serves
version A from a registry of its own. First a backlog fills every stream's replay ring
(``ring`` events per stream, older times); then a paced load (``--rate`` events/s over
all streams, 1-ms ticks, encoded before it starts) runs for ``--seconds``, and version B
is promoted ``--swap-at`` seconds into it (the scorer looks every second). Latency is
each paced input's broker append to its output's (both ``LogAppendTime``). Prints one
JSON line: p50/p99/max over the paced load, the same in the 10 s from the promotion, the
largest latency of each second, and the longest gap between two outputs' appends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import LOG_APPEND, read_records  # noqa: E402
from pipeline.commands.score import score_argv  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.kafka_io import ensure_topic, open_producer  # noqa: E402
from pipeline.kafka_io.codec import encode_event  # noqa: E402

PARTITIONS = 4


def _lag(kafka: KafkaConfig, topic: str, group: str) -> int:
    """How many records of ``topic`` the group has not committed."""
    import kafka as kp

    from pipeline.kafka_io.kafkapython import client_settings

    consumer = kp.KafkaConsumer(group_id=group, enable_auto_commit=False, **client_settings(kafka))
    parts = [kp.TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = consumer.end_offsets(parts)
    left = sum(ends[tp] - (consumer.committed(tp) or 0) for tp in parts)
    consumer.close()
    return int(left)


def run(a: argparse.Namespace) -> dict[str, Any]:
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend=a.backend)
    tag = uuid.uuid4().hex[:8]
    inp, out, group = f"swaplat-{tag}-in", f"swaplat-{tag}-out", f"swaplat-{tag}"
    ensure_topic(kafka, inp, PARTITIONS, LOG_APPEND)
    ensure_topic(kafka, out, PARTITIONS, LOG_APPEND)
    old, new = a.versions.split(",")
    ring = 64
    with tempfile.TemporaryDirectory() as tmp:
        for v in (old, new):
            shutil.copytree(a.registry / a.model / v, Path(tmp) / a.model / v)
        registry = Registry(Path(tmp))
        registry.promote(a.model, old)
        rng = np.random.default_rng(1)
        ids = [f"sensor-{i:06d}" for i in range(a.streams)]
        t0 = 1_764_000_000
        producer = open_producer(kafka, linger_ms=5)
        # The backlog: a full ring for every stream, a minute apart.
        for step in range(ring):
            for sid, v in zip(ids, rng.normal(50, 5, a.streams).tolist(), strict=True):
                producer.send(inp, sid.encode(), encode_event(sid, t0 + 60 * step, v))
        producer.flush()
        env = {**os.environ, "STATECAST_MODEL_CHECK_S": "1"}
        scorer = subprocess.Popen(
            score_argv(
                a.bootstrap,
                inp,
                out,
                group,
                "--registry",
                tmp,
                "--model",
                a.model,
                "--until-idle",
                "8",
                backend=a.backend,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
        while _lag(kafka, inp, group) > 0 or scorer.poll() is not None:
            if scorer.poll() is not None:
                raise RuntimeError("the scorer stopped during the backlog")
            time.sleep(0.5)
        total = int(a.rate * a.seconds)
        keys, values = [], []
        for i, v in enumerate(rng.normal(50, 5, total).tolist()):
            sid = ids[i % a.streams]
            keys.append(sid.encode())
            values.append(encode_event(sid, t0 + 60 * (ring + i // a.streams), v))
        paced_ms = time.time() * 1000.0
        producer.send(inp, keys[0], values[0])
        producer.flush()
        started, sent, promoted_at = time.monotonic(), 1, None
        while sent < total:
            elapsed = time.monotonic() - started
            if promoted_at is None and elapsed >= a.swap_at:
                registry.promote(a.model, new)
                promoted_at = time.time() * 1000.0
            due = min(total, int(elapsed * a.rate) + 1)
            for i in range(sent, due):
                producer.send(inp, keys[i], values[i])
            sent = due
            time.sleep(0.001)
        producer.flush()
        producer.close()
        scorer.wait(300)
    assert promoted_at is not None
    appended = {(r.partition, r.offset): r.timestamp for r in read_records(kafka, inp, PARTITIONS)}
    lat, t_in, t_out, swapped_at = [], [], [], float("inf")
    for r in read_records(kafka, out, PARTITIONS):
        d = json.loads(r.value)
        if d["model_version"] == new:
            swapped_at = min(swapped_at, float(r.timestamp))
        t = appended.get((d["partition"], d["offset"]))
        if t is not None:
            lat.append(r.timestamp - t)
            t_in.append(t)
            t_out.append(r.timestamp)
    arr, tin = np.asarray(lat, float), np.asarray(t_in, float)
    paced = tin >= paced_ms - 1.0  # the backlog's were appended before it began
    window = paced & (tin >= promoted_at) & (tin < promoted_at + 10_000.0)
    seconds = np.floor((tin[paced] - promoted_at) / 1000.0).astype(int)
    worst = {
        int(s): float(arr[paced][seconds == s].max())
        for s in range(int(seconds.min()), int(seconds.max()) + 1)
        if (seconds == s).any()
    }
    outs = np.sort(np.asarray(t_out, float)[paced])
    return {
        "streams": a.streams,
        "rate": a.rate,
        "paced_outputs": int(paced.sum()),
        "first_output_of_the_new_version_ms_after_promotion": swapped_at - promoted_at,
        "p50": float(np.percentile(arr[paced], 50)),
        "p99": float(np.percentile(arr[paced], 99)),
        "max": float(arr[paced].max()),
        "after_swap_p99": float(np.percentile(arr[window], 99)) if window.any() else None,
        "after_swap_max": float(arr[window].max()) if window.any() else None,
        "largest_output_gap_ms": float(np.diff(outs).max()) if len(outs) > 1 else None,
        "worst_by_second_from_promotion": worst,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--versions", default="v20261206T072932Z,v20261206T105311Z")
    ap.add_argument("--streams", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=5_000.0)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--swap-at", type=float, default=15.0)
    a = ap.parse_args()
    print(json.dumps({"tree": str(REPO), **run(a)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
