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
import statistics
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import BenchOptions, _fill, _run_worker  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import ensure_topic  # noqa: E402


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
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend=a.backend)
    opts = BenchOptions(kafka=kafka, registry=a.registry, streams=a.streams)
    run = uuid.uuid4().hex[:8]
    topic = f"linger-{run}-in"
    ensure_topic(kafka, topic, opts.partitions)
    _fill(opts, topic, a.events)
    got: dict[int, list[float]] = {int(v): [] for v in a.lingers.split(",")}
    for r in range(a.rounds):
        for linger in got:
            tag = f"{run}-{linger}-{r}"
            res = _run_worker(
                "statecast",
                {
                    "bootstrap": a.bootstrap,
                    "registry": str(a.registry),
                    "model": "default",
                    "streams": a.streams,
                    "backend": a.backend,
                    "input": topic,
                    "output": f"linger-{tag}-out",
                    "group": f"linger-{tag}",
                    "events": a.events,
                    "poll_linger_ms": linger,
                },
            )
            got[linger].append(res["events_per_s"])
            print(f"round {r + 1} linger {linger:>3} ms: {res['events_per_s']:>9.0f} events/s")
    for linger, rates in got.items():
        print(f"linger {linger:>3} ms: median {statistics.median(rates):>9.0f} events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
