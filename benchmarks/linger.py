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

from benchmarks.alternating import alternate  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--lingers", default="0,10")
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--streams", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--backend", default="confluent-kafka")
    a = ap.parse_args()
    variants = {
        f"linger {int(v):>3} ms": {
            "registry": str(a.registry),
            "model": "default",
            "poll_linger_ms": int(v),
        }
        for v in a.lingers.split(",")
    }
    alternate(
        KafkaConfig(bootstrap=a.bootstrap, backend=a.backend),
        variants,
        events=a.events,
        streams=a.streams,
        rounds=a.rounds,
        prefix="linger",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
