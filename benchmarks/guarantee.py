"""What durability and exactly-once cost the scorer's maximum throughput, side by side.

    .venv/bin/python benchmarks/guarantee.py --bootstrap 127.0.0.1:9092 \\
        [--events 60000] [--streams 2000] [--rounds 3] [--backend confluent-kafka]

One pre-filled topic; each round runs one scorer process per variant (alternating, each a
fresh consumer group reading the whole topic), as `statecast bench`'s statecast row does:
at-least-once without a changelog (no durable state), at-least-once (the default), and
exactly-once (a transaction per checkpoint over its outputs, frames and offsets). Prints
events/s per run, the median per variant and each median against at-least-once's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alternating import add_arguments, alternate_from  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    a = ap.parse_args()
    base = {"registry": str(a.registry), "model": "default"}
    variants = {
        "no changelog": {**base, "changelog": False},
        "at-least-once": base,
        "exactly-once": {**base, "guarantee": "exactly-once"},
    }
    got = alternate_from(a, variants, prefix="guarantee")
    ref = statistics.median(got["at-least-once"])
    for label, rates in got.items():
        print(f"{label}: {statistics.median(rates) / ref:.3f} of at-least-once's median")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
