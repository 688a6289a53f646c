"""How long a live model swap holds the poll loop, per stream and at scale.

    .venv/bin/python benchmarks/swap.py [--streams 20000] [--rounds 3]
        [--registry exported_models] [--model default] [--versions A,B]

A promotion makes every scorer (:meth:`pipeline.engine.serving.ServedModel.maybe_swap`)
rebuild each live stream's LSTM state in the new version by replaying its recent inputs
(``replay_steps``, 64), and then pin the previous version beside it as the rollback
watch (:meth:`ServedModel.pinned`: the state the streams had in it, taken over; a version
pinned later, a shadow, rebuilds every stream by replay again). Both run in the poll loop:
no event is scored meanwhile, and a consumer that does not poll within
``max.poll.interval.ms`` (300 s) is dropped from its group. This drives the scorer's own
code: ``--streams`` streams with full rings and known event times, served by version A,
promoted to B in a registry of its own (``maybe_swap``), then A pinned beside it as the
rollback watch pins it, and once more as a shadow pinned later would be; prints the
seconds of each, µs per stream, and what a promotion holds at 100k and 1M streams.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.covariates import WEEK  # noqa: E402
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
    source = Registry(a.registry)
    if a.versions:
        old, new = a.versions.split(",")
    else:
        new = source.current(a.model) or ""
        versions = sorted(source.versions(a.model))
        old = versions[versions.index(new) - 1]
    swap_s, pin_s, replay_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        # A registry of its own, whose promotions the scorer's code follows.
        for v in (old, new):
            shutil.copytree(a.registry / a.model / v, Path(tmp) / a.model / v)
        registry = Registry(Path(tmp))
        for _ in range(a.rounds):
            registry.promote(a.model, old)
            served = _served(registry, a.model, old, a.streams)
            registry.promote(a.model, new)
            t = time.perf_counter()
            assert served.maybe_swap() == new
            swap_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            served.pinned(old)  # the rollback watch, right after the swap
            pin_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            served.pinned(old)  # any other pin (a shadow named later) replays
            replay_s.append(time.perf_counter() - t)
    swap, pin, replay = (statistics.median(x) for x in (swap_s, pin_s, replay_s))
    n = a.streams
    print(f"model {a.model}: {old} -> {new}, {n:,} streams, {a.rounds} rounds (median)")
    print(f"  swap to {new} (replay):             {swap:7.2f} s  {swap / n * 1e6:6.0f} µs/stream")
    print(f"  {old} pinned beside it (rollback):  {pin:7.2f} s  {pin / n * 1e6:6.0f} µs/stream")
    print(
        f"  {old} pinned later (replay):        {replay:7.2f} s  {replay / n * 1e6:6.0f} µs/stream"
    )
    per = (swap + pin) / n
    for scale in (100_000, 1_000_000):
        hold = per * scale
        print(
            f"  a promotion at {scale:>9,} streams holds the poll loop {hold:7.1f} s "
            f"({hold / POLL_INTERVAL_S:.2f} x max.poll.interval.ms)"
        )
    if a.json:
        report = {"model": a.model, "from": old, "to": new, "streams": n}
        report |= {"swap_s": swap_s, "pin_s": pin_s, "replay_pin_s": replay_s}
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
