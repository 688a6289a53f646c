"""What standby snapshots cost the member that keeps them: its own partitions' latency and
its CPU, with ``--standby`` and without, side by side.

    python benchmarks/standby_cost.py --bootstrap 127.0.0.1:9092 [--streams 20000] \\
        [--rate 4000] [--seconds 60] [--interval 10] [--rounds 2]

Each round runs both variants, alternating: two scorer processes of this checkout in one
group over a fresh 4-partition topic (both topics ``LogAppendTime``). A starts alone and
takes every partition; B joins and takes two of them, with ``--standby
--standby-interval-s INTERVAL`` ("on") or without ("off"), so that with it B keeps
snapshots of A's two partitions current while both score a paced load (``--rate`` events/s
over ``--streams`` streams for ``--seconds``). Printed per run, for the outputs of B's
own partitions: p50 / p99 / max latency from the input's append to the output's, B's
CPU (cores), and B's standby refreshes (how many, their seconds). One JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import re
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

from pipeline.commands.bench import (  # noqa: E402
    LOG_APPEND,
    _cpu_share,
    _cpu_ticks,
    paced_load,
    read_records,
    send_paced,
)
from pipeline.commands.score import score_argv  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import delete_topics, ensure_topic, open_producer  # noqa: E402

PARTITIONS = 4


def _spawn(kafka: KafkaConfig, inp: str, out: str, group: str, log: Path, *extra: str) -> Any:
    argv = score_argv(
        kafka.bootstrap, inp, out, group, "--until-idle", "20", *extra, backend=kafka.backend
    )
    with open(log, "wb") as sink:
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=sink)


def _wait_for(log: Path, text: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log.name}: no {text!r} within {timeout_s:.0f}s")
        time.sleep(0.2)


def run(kafka: KafkaConfig, a: argparse.Namespace, variant: str, root: Path) -> dict[str, Any]:
    tag = f"standby-cost-{uuid.uuid4().hex[:8]}"
    inp, out, group = f"{tag}-in", f"{tag}-out", tag
    ensure_topic(kafka, inp, PARTITIONS, LOG_APPEND)
    ensure_topic(kafka, out, PARTITIONS, LOG_APPEND)
    keys, values = paced_load(a.streams, int(a.rate * a.seconds))
    log_a, log_b = root / f"{tag}-a.log", root / f"{tag}-b.log"
    member_a = _spawn(kafka, inp, out, group, log_a, "--state-dir", str(root / f"{tag}-a"))
    _wait_for(log_a, "restored")
    standby = ["--standby", "--standby-interval-s", str(a.interval)] if variant == "on" else []
    member_b = _spawn(
        kafka, inp, out, group, log_b, "--state-dir", str(root / f"{tag}-b"), *standby
    )
    _wait_for(log_b, "restored")
    time.sleep(2.0)  # the rebalance settles
    producer = open_producer(kafka, linger_ms=1)
    before = _cpu_ticks(member_b.pid)
    send_paced(producer, inp, keys, values, a.rate)
    cpu = _cpu_share(before, _cpu_ticks(member_b.pid))
    producer.flush()
    producer.close()
    member_a.wait(180)
    member_b.wait(180)
    text = log_b.read_text(errors="replace")
    mine = {
        int(p)
        for parts in re.findall(r"records of partitions \[([\d, ]+)\]", text)
        for p in parts.split(",")
    }
    refreshes = [
        float(s) for s in re.findall(r"standby snapshots of partitions .* in ([\d.]+)s", text)
    ]
    appended = {(r.partition, r.offset): r.timestamp for r in read_records(kafka, inp, PARTITIONS)}
    lat = []
    for r in read_records(kafka, out, PARTITIONS):
        d = json.loads(r.value)
        if d["partition"] in mine and (t := appended.get((d["partition"], d["offset"]))):
            lat.append(r.timestamp - t)
    delete_topics(kafka, [inp, out])
    arr = np.asarray(lat, float)
    return {
        "variant": variant,
        "b_partitions": sorted(mine),
        "outputs": len(arr),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "max_ms": round(float(arr.max()), 1),
        "b_cores": round(cpu.get("scorer_cores", float("nan")), 3),
        "machine_busy": round(cpu.get("machine_busy", float("nan")), 3),
        "refreshes": len(refreshes),
        "refresh_s": [round(s, 2) for s in refreshes],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--streams", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=4000.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=10.0, help="--standby-interval-s")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend=a.backend)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for variant in ("off", "on") if r % 2 == 0 else ("on", "off"):
                got = run(kafka, a, variant, Path(tmp))
                print(json.dumps({"round": r + 1, **got}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
