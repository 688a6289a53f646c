"""How long a live model swap holds the poll loop, per stream and at scale.

    .venv/bin/python benchmarks/swap.py [--streams 20000] [--rounds 3]
        [--registry exported_models] [--model default] [--versions A,B]

A promotion makes every scorer (:meth:`pipeline.engine.serving.ServedModel.maybe_swap`)
rebuild each live stream's LSTM state in the new version by replaying its recent inputs
(``replay_steps``, 64), and then pin the previous version beside it as a shadow, which
rebuilds every stream again (:meth:`ServedModel.pinned`). Both run in the poll loop:
no event is scored meanwhile, and a consumer that does not poll within
``max.poll.interval.ms`` (300 s) is dropped from its group. This drives the scorer's own
code: ``--streams`` streams with full rings and known event times, served by version A,
swapped to B, then B pinning A; prints the seconds of each step, µs per stream, and what
that is at 100k and 1M streams.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.covariates import WEEK  # noqa: E402
from pipeline.engine.inference import StepSession  # noqa: E402
from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.engine.serving import ServedModel  # noqa: E402

POLL_INTERVAL_S = 300.0


def _served(registry: Registry, model: str, version: str, streams: int) -> ServedModel:
    """A model serving ``streams`` streams whose rings are full of a minute-spaced history."""
    served = ServedModel(model, registry, capacity=streams, version=version)
    store = served.store
    slots = store.slots_for([f"sensor-{i}" for i in range(streams)], now=0.0)
    rng = np.random.default_rng(0)
    R = store.ring
    store.ring_buf[slots] = (50.0 + rng.normal(0, 5, (streams, R, store.features))).astype(
        np.float32
    )
    t0 = 1_796_000_000.0 + 60.0 * np.arange(R)
    store.ring_ts[slots] = np.mod(t0, WEEK).astype(np.float32)
    store.ring_len[slots] = R
    store.last_ts[slots] = t0[-1]
    store.n[slots] = 1000.0
    store.mean[slots] = 50.0
    store.var[slots] = 25.0
    return served


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--versions", help="A,B (default: the version before CURRENT, CURRENT)")
    ap.add_argument("--streams", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    registry = Registry(a.registry)
    if a.versions:
        old, new = a.versions.split(",")
    else:
        new = registry.current(a.model) or ""
        versions = sorted(registry.versions(a.model))
        old = versions[versions.index(new) - 1]
    swap_s, pin_s = [], []
    for _ in range(a.rounds):
        served = _served(registry, a.model, old, a.streams)
        meta = registry.meta(a.model, new)
        session = StepSession(meta)
        t = time.perf_counter()
        served._carry_over(meta, session)  # what maybe_swap does once the version loads
        swap_s.append(time.perf_counter() - t)
        served.meta, served.session = meta, session
        t = time.perf_counter()
        served.pinned(old)
        pin_s.append(time.perf_counter() - t)
    swap, pin = statistics.median(swap_s), statistics.median(pin_s)
    per = (swap + pin) / a.streams
    print(f"model {a.model}: {old} -> {new}, {a.streams:,} streams, {a.rounds} rounds (median)")
    print(
        f"  swap (rebuild every stream in {new}):   {swap:7.2f} s  {swap / a.streams * 1e6:6.0f} µs/stream"
    )
    print(
        f"  shadow (rebuild every stream in {old}): {pin:7.2f} s  {pin / a.streams * 1e6:6.0f} µs/stream"
    )
    for n in (100_000, 1_000_000):
        hold = per * n
        print(
            f"  at {n:>9,} streams the poll loop is held {hold:7.1f} s "
            f"({hold / POLL_INTERVAL_S:.2f} x max.poll.interval.ms)"
        )
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "model": a.model,
                    "from": old,
                    "to": new,
                    "streams": a.streams,
                    "swap_s": swap_s,
                    "pin_s": pin_s,
                    "us_per_stream": per * 1e6,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
