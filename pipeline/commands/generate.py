"""``statecast generate``: synthetic sensor CSVs with injected anomalies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def run(ns: argparse.Namespace) -> int:
    from training.synthetic import generate, write_csv

    if ns.corpus:
        from training.corpus import corpus

        varied = corpus(streams=ns.streams, length=ns.length, seed=ns.seed, prefix=ns.prefix)
        paths = write_csv(varied, Path(ns.out))
        print(f"wrote a pretraining corpus of {len(paths)} varied streams to {ns.out}")
        return 0
    streams = generate(
        streams=ns.streams,
        length=ns.length,
        seed=ns.seed,
        step_s=ns.step_s,
        anomalies_per_stream=ns.anomalies,
        prefix=ns.prefix,
    )
    paths = write_csv(streams, Path(ns.out))
    labels = {s.name: [[a.kind, a.start, a.end] for a in s.anomalies] for s in streams}
    (Path(ns.out) / "labels.json").write_text(json.dumps(labels, indent=1))
    print(
        f"wrote {len(paths)} streams x {ns.length} points to {ns.out} (labels.json lists the injected anomalies)"
    )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("generate", help="write synthetic sensor CSVs with injected anomalies")
    p.add_argument("--out", required=True)
    p.add_argument("--streams", type=int, default=24)
    p.add_argument("--length", type=int, default=4000)
    p.add_argument("--step-s", dest="step_s", type=float, default=300.0)
    p.add_argument("--anomalies", type=int, default=2, help="anomalies per stream")
    p.add_argument("--prefix", default="sensor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--corpus",
        action="store_true",
        help="a broad pretraining corpus instead (varied periods, seasons, noise, counts, "
        "quantised and bursty series; no anomalies; --step-s and --anomalies do not apply)",
    )
    p.set_defaults(func=run)
