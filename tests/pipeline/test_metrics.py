"""The bulk histogram is exposed exactly as prometheus-client's own Histogram."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.metrics import BulkHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)


def test_bulk_histogram_matches_prometheus_histogram() -> None:
    values = np.concatenate(
        [np.random.default_rng(0).exponential(0.5, 1000), np.asarray(BUCKETS), [0.0, 99.0]]
    )
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("lat_seconds", "latency", BUCKETS, ours)
    reference = Histogram("lat_seconds", "latency", buckets=BUCKETS, registry=theirs)
    bulk.observe_many(values[:500])
    bulk.observe_many(values[500:])
    bulk.observe_many(np.empty(0))
    for v in values:
        reference.observe(float(v))

    def lines(registry: CollectorRegistry) -> dict[str, float]:
        out = {}
        for line in generate_latest(registry).decode().splitlines():
            if line.startswith("lat_seconds_") and "_created" not in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    got, want = lines(ours), lines(theirs)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert abs(got[name] - value) <= 1e-9 * max(1.0, abs(value)), name
