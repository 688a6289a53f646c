"""What the scorer's lag gauge costs the poll loop, per backend, side by side in one run.

    .venv/bin/python benchmarks/lag_cost.py --bootstrap 127.0.0.1:9092 [--partitions 4]

The housekeeping turn (every ``model_check_s``, on the poll loop) reads each assigned
partition's lag. For a consumer part-way through a topic, prints the median and largest
time of ``Consumer.lag()`` over ``--calls`` calls, and beside it the same numbers for
asking the broker for every partition's end offset, which is what the confluent-kafka
backend did before it read the end each fetch response carries (kafka-python's
``end_offsets`` still asks the broker, in one request for all partitions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import KafkaConfig  # noqa: E402
from pipeline.kafka_io import Consumer, ensure_topic, open_consumer, open_producer  # noqa: E402


def _timed(call: Callable[[], Any], consumer: Consumer, calls: int) -> tuple[float, float]:
    """Median and largest ms of ``call``, a short poll between calls (as in the scorer)."""
    took = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        took.append(1000.0 * (time.perf_counter() - t0))
        consumer.poll(20, 10)
    return statistics.median(took), max(took)


def _broker_query(backend: str, consumer: Any, timeout_s: float) -> Callable[[], Any]:
    """Every assigned partition's end offset asked of the broker."""
    raw = consumer._consumer  # the client under the backend
    if backend == "confluent-kafka":
        return lambda: [
            raw.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            for tp in raw.assignment()
        ]
    return lambda: raw.end_offsets(list(raw.assignment()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--calls", type=int, default=20)
    a = ap.parse_args()
    print(f"{'backend':<16} {'partitions':>10} {'lag() median/max ms':>22} {'broker query':>16}")
    for backend in ("confluent-kafka", "kafka-python"):
        config = KafkaConfig(bootstrap=a.bootstrap, backend=backend)
        topic = f"lag-cost-{uuid.uuid4().hex[:8]}"
        ensure_topic(config, topic, a.partitions)
        producer = open_producer(config)
        for i in range(1000 * a.partitions):
            producer.send(topic, f"k{i}".encode(), b"v", partition=i % a.partitions)
        producer.flush()
        producer.close()
        consumer = open_consumer(config, [topic], f"{topic}-g")
        try:
            got, deadline = 0, time.monotonic() + 30.0
            while got < 200 * a.partitions and time.monotonic() < deadline:
                got += len(consumer.poll(200, 50))
            ours = _timed(consumer.lag, consumer, a.calls)
            theirs = _timed(
                _broker_query(backend, consumer, config.request_timeout_s), consumer, a.calls
            )
        finally:
            consumer.close()
        print(
            f"{backend:<16} {a.partitions:>10} {ours[0]:>10.2f} / {ours[1]:>8.2f} "
            f"{theirs[0]:>7.2f} / {theirs[1]:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
