"""The scorer's maximum throughput writing JSON and binary score records, side by side.

    .venv/bin/python benchmarks/output_format.py --bootstrap 127.0.0.1:9092 \\
        [--events 60000] [--streams 2000] [--rounds 3] [--backend confluent-kafka]

One pre-filled topic; each round runs one scorer process per output format (alternating,
each a fresh consumer group reading the whole topic), as `statecast bench`'s statecast
row does; prints events/s per run and the median per format. The binary layout:
pipeline/kafka_io/binary_scores.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alternating import alternate  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--streams", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--backend", default="confluent-kafka")
    a = ap.parse_args()
    variants = {
        fmt: {"registry": str(a.registry), "model": "default", "output_format": fmt}
        for fmt in ("json", "binary")
    }
    alternate(
        KafkaConfig(bootstrap=a.bootstrap, backend=a.backend),
        variants,
        events=a.events,
        streams=a.streams,
        rounds=a.rounds,
        prefix="outfmt",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
