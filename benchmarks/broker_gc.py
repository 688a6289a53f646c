"""The latency under load with the local broker's collector at a few pause-time goals,
side by side (G1's default 200 ms against 20 ms, Kafka's own start script's).

    .venv/bin/python benchmarks/broker_gc.py [--targets 200,20] [--rate 30000] \\
        [--streams 10000] [--seconds 20] [--warmup-seconds 8] [--rounds 3] [--port 19492]

Each round starts, per pause-time goal, a fresh broker (a data folder of its own, client
port ``--port``), runs `statecast bench`'s latency run against it once to warm its JIT
(not counted), then once measured (one scorer process, confluent-kafka, JSON events paced
at ``--rate`` over ``--streams``), reads the broker's gc.log for the pauses since the
warm-up ended (the measured run and its read-back), and stops the broker. Prints a line
per run and the median of each figure per goal.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import BenchOptions, _measure_latency  # noqa: E402
from pipeline.config import KafkaConfig, LocalKafkaConfig  # noqa: E402
from pipeline.localkafka import LocalBroker  # noqa: E402

_PAUSE = re.compile(r"\bPause\b.* ([0-9.]+)ms$")
FIGURES = ("p50", "p99", "steady_p99", "largest_input_gap_ms", "gc_pauses", "gc_max_ms")


def pauses(log: Path, skip: int) -> list[float]:
    """The pause times (ms) in ``log`` after its first ``skip`` lines."""
    lines = log.read_text().splitlines()[skip:] if log.exists() else []
    return [float(m.group(1)) for m in map(_PAUSE.search, lines) if m]


def one_run(a: argparse.Namespace, target: int, data: Path) -> dict[str, float]:
    broker = LocalBroker(
        LocalKafkaConfig(
            home=REPO / ".statecast",
            port=a.port,
            controller_port=a.port + 1,
            data_dir=data,
            gc_pause_target_ms=target,
        )
    )
    broker.up()
    try:
        kafka = KafkaConfig(bootstrap=broker.config.bootstrap, backend="confluent-kafka")
        run = uuid.uuid4().hex[:8]
        warm = BenchOptions(kafka=kafka, streams=a.streams, latency_seconds=a.warmup_seconds)
        _measure_latency(warm, a.rate, run, kafka.backend, "-warmup")
        skip = len(broker.gc_log_path.read_text().splitlines())
        opts = BenchOptions(kafka=kafka, streams=a.streams, latency_seconds=a.seconds)
        got = _measure_latency(opts, a.rate, run, kafka.backend)
        ms = pauses(broker.gc_log_path, skip)
        return {**got, "gc_pauses": len(ms), "gc_max_ms": max(ms, default=0.0)}
    finally:
        broker.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="200,20")
    ap.add_argument("--rate", type=float, default=30_000)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup-seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=19492)
    a = ap.parse_args()
    targets = [int(t) for t in a.targets.split(",")]
    got: dict[int, list[dict[str, float]]] = {t: [] for t in targets}
    for r in range(a.rounds):
        for t in targets:
            with tempfile.TemporaryDirectory(prefix="broker-gc-") as data:
                res = one_run(a, t, Path(data))
            got[t].append(res)
            print(
                f"round {r + 1} pause goal {t:>3} ms: "
                + " ".join(f"{k} {res[k]:.0f}" for k in FIGURES)
                + f" machine_busy {res.get('machine_busy', float('nan')):.2f}",
                flush=True,
            )
    for t, runs in got.items():
        med = {k: statistics.median(x[k] for x in runs) for k in FIGURES}
        print(f"pause goal {t:>3} ms, median: " + " ".join(f"{k} {v:.0f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
