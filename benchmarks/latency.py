"""End-to-end latency of the scorer at fixed offered loads, for side-by-side comparisons.

    python benchmarks/latency.py --bootstrap 127.0.0.1:9092 --rates 10000,20000 \\
        [--streams 10000] [--seconds 30] [--backend confluent-kafka]

The scorer under test is this checkout's (run the script from another checkout, e.g. a
``git worktree`` of an older commit, with the same interpreter to compare two versions on
one machine). Each rate is one run of ``statecast bench``'s latency measurement: a
scorer process, a paced producer, latency from each input's broker append to its
output's; prints one JSON line per rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import BenchOptions, _measure_latency  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--rates", default="10000,20000", help="offered events/s, comma-separated")
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    a = ap.parse_args()
    opts = BenchOptions(
        kafka=KafkaConfig(bootstrap=a.bootstrap),
        registry=a.registry,
        streams=a.streams,
        latency_seconds=a.seconds,
    )
    for rate in (float(r) for r in a.rates.split(",")):
        got = _measure_latency(opts, rate, uuid.uuid4().hex[:8], a.backend)
        print(json.dumps({"checkout": str(REPO), "backend": a.backend, **got}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
