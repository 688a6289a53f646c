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

from benchmarks.alternating import add_arguments, alternate_from  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    a = ap.parse_args()
    variants = {
        fmt: {"registry": str(a.registry), "model": "default", "output_format": fmt}
        for fmt in ("json", "binary")
    }
    alternate_from(a, variants, prefix="outfmt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
