"""The scorer's maximum throughput at a few batch size bounds (``max_poll_records``),
side by side.

    .venv/bin/python benchmarks/poll_batch.py --bootstrap 127.0.0.1:9092 \\
        [--bounds 2000,4000,8000] [--events 60000] [--streams 2000] [--rounds 3] \\
        [--backend kafka-python]

One pre-filled topic; each round runs one scorer process per bound (alternating, each a
fresh consumer group reading the whole topic; ``--backend``, default confluent-kafka), as
`statecast bench`'s statecast row does; prints events/s per run and the median per bound.
Under a backlog every turn fills the bound, so a larger one spreads a turn's fixed cost
over more events (and makes each turn, and the wait of the records behind it, longer).
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
    ap.add_argument("--bounds", default="2000,4000,8000")
    a = ap.parse_args()
    variants = int_setting_variants(a, "max_poll_records", a.bounds, "max_poll_records {:>6}")
    alternate_from(a, variants, prefix="pollbatch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
