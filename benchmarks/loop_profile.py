"""Where the scorer's loop spends its time: one scorer run under py-spy, summarised.

    .venv/bin/python benchmarks/loop_profile.py --bootstrap 127.0.0.1:9092 \\
        [--events 600000] [--streams 10000] [--format binary|json] [--rate 200] \\
        [--folded out.folded]

Fills a topic with ``--events`` events over ``--streams`` streams (binary events and
binary score records with ``--format binary``, the default; JSON both ways with
``json``), runs one scorer worker over it as `statecast bench`'s statecast row does
(confluent-kafka, at-least-once, durable state) under ``py-spy record`` (sampling every
thread at ``--rate`` Hz), and prints the events/s of the run and, for the loop
(``Scorer.run``) and the parts below it, each child's share of its parent's samples.
Start-up (imports, model load) is outside ``Scorer.run`` and not counted. Needs py-spy
(a dev dependency). ``--folded`` keeps the raw stacks (flamegraph's folded format).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alternating import fill_topic, worker_args  # noqa: E402
from pipeline.config import KafkaConfig  # noqa: E402

# The parents whose children are printed, outermost first.
PARENTS = (
    "Scorer.run",
    "Scorer.process",
    "BatchScorer._score_model",
    "ServedModel.score",
    "ServedModel._step",
    "advance",
)


def _frame(f: str) -> str:
    """``name (path:line)`` → ``name (path)``: one entry per function, not per line."""
    return re.sub(r" \((.*?):\d+\)$", r" (\1)", f)


def children(folded: Path, parent: str) -> tuple[int, collections.Counter[str]]:
    """Samples under the outermost frame named ``parent``, and how they split among the
    frames directly below it (``(self)``: in ``parent`` itself)."""
    split: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = [_frame(f) for f in stack.split(";")]
        at = next((i for i, f in enumerate(frames) if f.startswith(parent + " ")), None)
        if at is None:
            continue
        total += int(n)
        split[frames[at + 1] if at + 1 < len(frames) else "(self)"] += int(n)
    return total, split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--format", choices=("binary", "json"), default="binary")
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--registry", type=Path, default=REPO / "exported_models")
    ap.add_argument("--folded", type=Path, help="keep the raw stacks here")
    a = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: `make setup` installs it (a dev dependency)", file=sys.stderr)
        return 2
    kafka = KafkaConfig(bootstrap=a.bootstrap, backend="confluent-kafka")
    run, topic = fill_topic(
        kafka, events=a.events, streams=a.streams, prefix="loopprof", binary=a.format == "binary"
    )
    args = {
        **worker_args(kafka, topic, f"loopprof-{run}", events=a.events, streams=a.streams),
        "registry": str(a.registry),
        "model": "default",
        "output_format": a.format,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folded = a.folded or Path(tmp) / "loop.folded"
        record = [spy, "record", "--rate", str(a.rate), "--format", "raw", "-o", str(folded)]
        worker = [sys.executable, "-m", "pipeline.commands.bench", "worker", "statecast"]
        done = subprocess.run(
            [*record, "--", *worker, json.dumps(args)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not folded.exists():
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        # py-spy writes its own lines after the worker's result.
        result = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])
        print(
            f"{a.events:,} {a.format} events over {a.streams:,} streams: "
            f"{result['events'] / result['seconds']:,.0f} events/s under py-spy ({a.rate} Hz)"
        )
        for parent in PARENTS:
            total, split = children(folded, parent)
            print(f"{parent}: {total} samples")
            for name, n in split.most_common(12):
                print(f"  {100 * n / max(total, 1):5.1f}%  {name[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
