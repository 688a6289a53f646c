"""Scale-out on one machine: one scorer against two in one consumer group, side by side.

    python benchmarks/scale_out.py --bootstrap 127.0.0.1:9092 [--events 300000] \\
        [--streams 10000] [--backend confluent-kafka]

Fills one input topic, then measures a scorer alone and two scorers in one group over it
(each run with its own group and output topic; the two members load their models, then
join together). Prints one JSON line: events/s and events processed of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench import BenchOptions, _fill, _run_group, _run_worker  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import delete_topics, ensure_topic  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    a = ap.parse_args()
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend=a.backend)
    opts = BenchOptions(kafka=kafka, registry=a.registry, model=a.model, streams=a.streams)
    inp = f"scale-out-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka, inp, a.partitions)
    _fill(opts, inp, a.events)
    base = {
        "bootstrap": a.bootstrap,
        "registry": str(a.registry),
        "model": a.model,
        "streams": a.streams,
        "backend": a.backend,
        "input": inp,
        "events": a.events,
    }
    one = _run_worker("statecast", {**base, "output": f"{inp}-one", "group": f"{inp}-one"})
    two = _run_group("statecast", {**base, "output": f"{inp}-two", "group": f"{inp}-two"}, 2)
    print(
        json.dumps(
            {
                "backend": a.backend,
                "streams": a.streams,
                "one": {"events_per_s": one["events_per_s"], "events": one["events"]},
                "two": {"events_per_s": two["events_per_s"], "events": two["events"]},
            }
        )
    )
    delete_topics(kafka, [inp, f"{inp}-one", f"{inp}-two"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
