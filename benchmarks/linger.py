"""The scorer's maximum throughput with and without the poll loop's linger, side by side.

    .venv/bin/python benchmarks/linger.py --bootstrap 127.0.0.1:9092 [--lingers 0,10] \\
        [--events 60000] [--streams 2000] [--rounds 3] [--backend kafka-python]

One pre-filled topic; each round runs one scorer process per linger (alternating, each a
fresh consumer group reading the whole topic; ``--backend``, default confluent-kafka), as
`statecast bench`'s statecast row does; prints events/s per run and the median per
linger. Under a backlog a turn fills ``max_poll_records`` at once, so the linger should
cost nothing here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alternating import add_arguments, alternate_from, int_setting_variants  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--lingers", default="0,10")
    a = ap.parse_args()
    variants = int_setting_variants(a, "poll_linger_ms", a.lingers, "linger {:>3} ms")
    alternate_from(a, variants, prefix="linger")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
