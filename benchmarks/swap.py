"""How long a live model swap holds the poll loop, per stream and at scale.

    .venv/bin/python benchmarks/swap.py [--streams 20000] [--rounds 3]
        [--registry exported_models] [--model default] [--versions A,B]

A promotion makes every scorer (:meth:`pipeline.engine.serving.ServedModel.maybe_swap`)
rebuild each live stream's LSTM state in the new version by replaying its recent inputs
(``replay_steps``, 64), and pin the previous version beside it as the rollback watch
(:meth:`ServedModel.pinned`: the state the streams had in it, taken over). Until
2026-12-06 the swap rebuilt every stream at once, in the poll loop: no event is scored
meanwhile, and a consumer that does not poll within ``max.poll.interval.ms`` (300 s) is
dropped from its group. Now each stream is rebuilt when it is next used (a batch, a
frame, a snapshot's copy) and ``REBUILD_PER_TURN`` more every loop turn.

This drives the scorer's own code: ``--streams`` streams with full rings and known event
times, served by version A, promoted to B in a registry of its own. Each round measures,
side by side on fresh copies, the swap at once (``maybe_swap`` then every stream rebuilt:
what the loop was held before) and the swap as it is (``maybe_swap``; then the rollback
watch's pin; a batch's rebuild of 2,000 stale streams; the loop turns' rebuilds until
none is stale, the longest of them; a shadow pinned later, which rebuilds its streams as
they are used too). Prints the seconds of each, µs per stream, and what a promotion holds
at 100k and 1M streams either way.
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

from pipeline.engine.registry import Registry  # noqa: E402
from pipeline.engine.serving import REBUILD_PER_TURN, ServedModel  # noqa: E402

POLL_INTERVAL_S = 300.0
BATCH = 2000  # streams in a full poll batch (max_poll_records)
_ROWS = {
    "at_once_s": "swap at once (before): swap and every stream rebuilt, s",
    "swap_s": "swap now (streams marked stale), s",
    "pin_s": "previous version pinned beside it (rollback watch), s",
    "batch_rebuild_s": f"a batch's rebuild of {BATCH:,} stale streams, s",
    "catch_up_s": f"loop turns' rebuilds ({REBUILD_PER_TURN} a turn), all of them, s",
    "longest_turn_s": "... the longest turn, s",
    "turns": "... turns",
    "shadow_pin_s": "a version pinned later (a shadow, rebuilt as used), s",
}


def _served(registry: Registry, model: str, version: str, streams: int) -> ServedModel:
    """A model serving ``streams`` streams whose rings are full of a minute-spaced history."""
    served = ServedModel(model, registry, capacity=streams, version=version)
    store = served.store
    slots = store.slots_for([f"sensor-{i}" for i in range(streams)], now=0.0)
    rng = np.random.default_rng(0)
    R = store.ring
    t0 = 1_796_000_000.0 + 60.0 * np.arange(R)
    inputs = 50.0 + rng.normal(0, 5, (streams, R, store.features))
    store.fill_rings(slots, inputs, np.broadcast_to(t0, (streams, R)))
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
    rows: dict[str, list[float]] = {k: [] for k in _ROWS}
    n = a.streams
    with tempfile.TemporaryDirectory() as tmp:
        # A registry of its own, whose promotions the scorer's code follows.
        for v in (old, new):
            shutil.copytree(a.registry / a.model / v, Path(tmp) / a.model / v)
        registry = Registry(Path(tmp))
        for _ in range(a.rounds):
            # The swap at once, as before: every stream rebuilt before the loop goes on.
            registry.promote(a.model, old)
            served = _served(registry, a.model, old, n)
            registry.promote(a.model, new)
            t = time.perf_counter()
            assert served.maybe_swap() == new
            served.materialize_all()
            rows["at_once_s"].append(time.perf_counter() - t)
            del served
            # The swap as it is: marked stale, rebuilt as used and a few per turn.
            registry.promote(a.model, old)
            served = _served(registry, a.model, old, n)
            registry.promote(a.model, new)
            t = time.perf_counter()
            assert served.maybe_swap() == new
            rows["swap_s"].append(time.perf_counter() - t)
            t = time.perf_counter()
            served.pinned(old)  # the rollback watch, right after the swap
            rows["pin_s"].append(time.perf_counter() - t)
            batch = served.store.live_slots()[: min(BATCH, n)]
            t = time.perf_counter()
            served.materialize(batch)  # a batch of streams not used since the swap
            rows["batch_rebuild_s"].append(time.perf_counter() - t)
            turns, longest, started = 0, 0.0, time.perf_counter()
            while True:
                t = time.perf_counter()
                left = served.catch_up(REBUILD_PER_TURN)
                longest = max(longest, time.perf_counter() - t)
                turns += 1
                if not left:
                    break
            rows["catch_up_s"].append(time.perf_counter() - started)
            rows["longest_turn_s"].append(longest)
            rows["turns"].append(float(turns))
            t = time.perf_counter()
            shadow = served.pinned(old)  # a version pinned later (a shadow)
            rows["shadow_pin_s"].append(time.perf_counter() - t)
            assert shadow.store.stale_slots().size == n
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"model {a.model}: {old} -> {new}, {n:,} streams, {a.rounds} rounds (median)")
    for key, label in _ROWS.items():
        v = med[key]
        per_n = {"batch_rebuild_s": min(BATCH, n), "longest_turn_s": REBUILD_PER_TURN}.get(key, n)
        per = "" if key == "turns" else f"  {v / per_n * 1e6:7.1f} µs/stream"
        print(f"  {label:<58} {v:9.3f}{per}")
    for scale in (100_000, 1_000_000):
        before = med["at_once_s"] / n * scale
        now = (med["swap_s"] + med["pin_s"]) / n * scale
        print(
            f"  a promotion at {scale:>9,} streams holds the poll loop {before:7.1f} s at once "
            f"({before / POLL_INTERVAL_S:.2f} x max.poll.interval.ms), {now:6.2f} s now"
        )
    if a.json:
        report = {"model": a.model, "from": old, "to": new, "streams": n}
        report |= {"rebuild_per_turn": REBUILD_PER_TURN, "batch": BATCH, **rows}
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
