"""The scorer's maximum throughput reading JSON and binary events, side by side.

    .venv/bin/python benchmarks/input_format.py --bootstrap 127.0.0.1:9092 \\
        [--events 60000] [--streams 2000] [--rounds 3] [--backend confluent-kafka]
    .venv/bin/python benchmarks/input_format.py --decode-only

Two pre-filled topics holding the same events, one as JSON and one in the binary event
layout (pipeline/kafka_io/binary_events.py); each round runs one scorer process per
variant (alternating, each a fresh consumer group reading a whole topic), as `statecast
bench`'s statecast row does: JSON events (with JSON and with binary score records), binary
events, and binary events with binary score records (the whole binary path). Prints events/s per run and the median per variant.
``--decode-only``: no broker; the decoder alone on batches of 2,000 records of each format,
alternating, µs per event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alternating import add_arguments, alternate_from  # noqa: E402
from pipeline.commands.bench import BenchOptions, _fill  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import ensure_topic  # noqa: E402


def decode_only(rounds: int, batch: int = 2000) -> None:
    """The decoder alone: µs per event for a batch of JSON and of binary events."""
    import numpy as np

    from pipeline.kafka_io.binary_events import encode_event_binary
    from pipeline.kafka_io.codec import decode_batch, encode_event

    rng = np.random.default_rng(0)
    events = [
        (f"sensor-{i:06d}", float(1_764_000_000 + 60 * i), round(float(rng.normal(50, 5)), 4))
        for i in range(batch)
    ]
    feeds = {
        "json": [(sid.encode(), encode_event(sid, ts, v)) for sid, ts, v in events],
        "binary": [encode_event_binary(sid, ts, [v]) for sid, ts, v in events],
    }
    got: dict[str, list[float]] = {name: [] for name in feeds}
    for _ in range(rounds):
        for name, records in feeds.items():
            started, n = time.perf_counter(), 0
            while time.perf_counter() - started < 1.0:
                decode_batch(records, ("value",), 65536)
                n += 1
            got[name].append((time.perf_counter() - started) / (n * batch) * 1e6)
    for name, us in got.items():
        print(f"{name}: median {statistics.median(us):.3f} µs/event ({len(us)} rounds of ~1 s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--decode-only", action="store_true")
    a = ap.parse_args()
    if a.decode_only:
        decode_only(a.rounds)
        return 0
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend=a.backend)
    opts = BenchOptions(kafka=kafka, streams=a.streams)
    binary = f"infmt-{uuid.uuid4().hex[:8]}-binary-in"
    ensure_topic(kafka, binary, opts.partitions)
    _fill(opts, binary, a.events, binary=True)
    model = {"registry": str(a.registry), "model": "default"}
    variants = {
        "json events": model,
        "json events, binary scores": {**model, "output_format": "binary"},
        "binary events": {**model, "input": binary},
        "binary events and scores": {**model, "input": binary, "output_format": "binary"},
    }
    alternate_from(a, variants, prefix="infmt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
