"""Restore time of many streams: from the whole changelog (cold: a new machine) and from a
local snapshot plus the changelog's tail (warm: the same machine, restarted).

    python benchmarks/restore.py --bootstrap 127.0.0.1:9092 [--streams 100000] \\
        [--touched 15000] [--checkpoints 120] [--snapshot-interval 10] [--json out.json]

What it simulates, through the scorer's own classes (Checkpointer, SnapshotTaker,
Restorer, ServedModel) against a real broker: ``--streams`` streams of the served model
(default model, its real frame size) over the input topic's partitions, then
``--checkpoints`` checkpoints 1 s of event time apart, each touching ``--touched`` random
streams (15k: 15k events/s spread over 100k streams) and writing their changelog frames
and committing their offsets exactly as the scorer does, with a local snapshot every
``--snapshot-interval`` checkpoints. The process then "stops" in one of two ways:

* ``clean``: a final checkpoint with its snapshot (SIGTERM);
* ``kill``: right before the next snapshot is due, the worst moment for a kill -9 (the
  tail since the last snapshot is longest).

and each restore runs in a fresh set of served models, timed from the committed offsets
to every stream installed (``Restorer.restore``). The cold restore reads every record the
changelog holds; here that is ``streams + checkpoints x touched`` because nothing has
been compacted yet (min.compaction.lag.ms keeps an hour of frames by default).
Prints one JSON object per restore and writes ``{"restore": [...]}`` with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.commands.bench_restore import RestoreScenario, measure_restores  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402


def main() -> int:
    d = RestoreScenario()  # the defaults
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--backend", default="confluent-kafka")
    ap.add_argument("--streams", type=int, default=d.streams)
    ap.add_argument("--partitions", type=int, default=d.partitions)
    ap.add_argument("--touched", type=int, default=d.touched, help="streams per checkpoint")
    ap.add_argument("--checkpoints", type=int, default=d.checkpoints)
    ap.add_argument(
        "--snapshot-interval", type=int, default=d.snapshot_interval, help="checkpoints"
    )
    ap.add_argument(
        "--pace",
        type=float,
        default=d.pace,
        help="seconds of wall time per checkpoint (1: as the scorer checkpoints, so the "
        "broker's log cleaner compacts as it would; 0: as fast as possible)",
    )
    ap.add_argument("--lag-ms", type=int, default=d.lag_ms, help="min.compaction.lag.ms")
    ap.add_argument("--stops", default="clean,kill")
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    scenario = RestoreScenario(
        streams=a.streams,
        partitions=a.partitions,
        touched=a.touched,
        checkpoints=a.checkpoints,
        snapshot_interval=a.snapshot_interval,
        pace=a.pace,
        lag_ms=a.lag_ms,
    )
    results = measure_restores(
        KafkaConfig(bootstrap=a.bootstrap, backend=a.backend),
        a.registry,
        a.model,
        scenario,
        tuple(a.stops.split(",")),
    )
    for r in results:
        print(json.dumps(r), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"restore": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
