"""End-to-end latency of the scorer at fixed offered loads, for side-by-side comparisons.

    python benchmarks/latency.py --bootstrap 127.0.0.1:9092 --rates 10000,20000 \\
        [--streams 10000] [--seconds 30] [--backend confluent-kafka]

The scorer under test is this checkout's (run the script from another checkout, e.g. a
``git worktree`` of an older commit, with the same interpreter to compare two versions on
one machine). Each rate is one run of ``statecast bench``'s latency measurement: a
scorer process, a paced producer, latency from each input's broker append to its
output's; prints one JSON line per rate.

``--pin SCORER:OTHERS`` (e.g. ``1:0``, CPU lists like ``0,1`` allowed): the scorer on the
CPUs before the colon, this load generator and every thread of the local broker (found
by its command line, ``kafka.Kafka``) on those after it, for the run (the broker's own
affinity is given back after it). What the tail is when the scorer has a core the load
and the broker do not take from it, against the same run unpinned.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import BenchOptions, _measure_latency  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402


def _cpus(text: str) -> frozenset[int]:
    return frozenset(int(c) for c in text.split(",") if c.strip())


def _broker_threads() -> list[int]:
    """Every thread of every local ``kafka.Kafka`` JVM."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"kafka.Kafka" not in (proc / "cmdline").read_bytes():
                continue
            out += [int(t.name) for t in (proc / "task").iterdir()]
        except OSError:
            continue
    return out


@contextlib.contextmanager
def _pinned(others: frozenset[int]) -> Iterator[int]:
    """This process and the local broker's threads on ``others`` (yields how many broker
    threads), the broker's affinity given back after."""
    before = {}
    for tid in _broker_threads():
        with contextlib.suppress(OSError):
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, others)
    if not before:
        raise SystemExit("--pin: no local kafka.Kafka process found to pin")
    os.sched_setaffinity(0, others)
    try:
        yield len(before)
    finally:
        for tid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--rates", default="10000,20000", help="offered events/s, comma-separated")
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--pin", help="SCORER_CPUS:OTHER_CPUS, e.g. 1:0 (see above)")
    a = ap.parse_args()
    opts = BenchOptions(
        kafka=KafkaConfig(bootstrap=a.bootstrap),
        registry=a.registry,
        streams=a.streams,
        latency_seconds=a.seconds,
    )
    scorer_cpus, others = (_cpus(c) for c in a.pin.split(":")) if a.pin else (None, None)
    for rate in (float(r) for r in a.rates.split(",")):
        with _pinned(others) if others else contextlib.nullcontext(0) as threads:
            got = _measure_latency(opts, rate, uuid.uuid4().hex[:8], a.backend, "", scorer_cpus)
        pin = {"pin": a.pin, "broker_threads_pinned": threads} if a.pin else {}
        print(json.dumps({"checkout": str(REPO), "backend": a.backend, **pin, **got}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
