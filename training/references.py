"""Drift references for a model trained before training recorded them.

The scorer judges drift against two figures in a version's model.json ``validation``:
``live_mae`` (its live error measure on its validation data) and ``input_hist`` (where
its normalised inputs fell there, :mod:`pipeline.engine.drift`). Every training run
records both. For a version trained earlier, :func:`backfill` computes them the same way
from the data it was trained on:

1. load the data, keep the streams training would keep (at least ``MIN_POINTS``) and cut
   the held-out gate window off each, as training did (none for versions that had none);
2. replay the exported model over them exactly as the scorer steps it;
3. measure both references over each stream's last ``val_fraction`` (from the version's
   ``training_config``) and write them into its ``validation``, with a note of where
   they came from. The ONNX file, and so the sha256, is untouched.

Given other data than the training data, the references describe that data instead:
the note records the paths so that a reader can tell.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.engine.registry import Registry
from pipeline.errors import DataError
from training.config import TrainConfig
from training.data import MIN_POINTS, load_paths, without_tail
from training.evaluate import drift_references, replay

__all__ = ["backfill"]


def backfill(
    registry: Registry, model: str, version: str | None, data: Sequence[Path], threads: int = 1
) -> dict[str, Any]:
    """Compute and record a version's drift references (see the module); returns them."""
    meta = registry.meta(model, version)
    trained = meta.raw.get("training_config") or {}
    val_fraction = float(trained.get("val_fraction", TrainConfig().val_fraction))
    gate_fraction = float(trained.get("gate_fraction", 0.0))
    # 1. The streams training kept, without their gate windows.
    streams = [without_tail(s, gate_fraction) for s in load_paths(data) if len(s.ts) >= MIN_POINTS]
    if not streams:
        raise DataError(f"no stream in {', '.join(map(str, data))} has {MIN_POINTS} points")
    if streams[0].features != meta.features:
        raise DataError(
            f"the data has features {streams[0].features}, {model}/{meta.version} takes "
            f"{meta.features}: give it the data it was trained on"
        )
    # 2. Replayed as the scorer steps it.
    replayed = replay(meta, streams, threads=threads)
    # 3. Both references over the validation part, recorded with where they came from.
    refs = drift_references(replayed, val_fraction)
    validation = {
        **meta.raw.get("validation", {}),
        **refs,
        "references_backfilled": {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": [str(p) for p in data],
            "streams": len(streams),
            "val_fraction": val_fraction,
            "gate_fraction": gate_fraction,
        },
    }
    registry.annotate(model, meta.version, "validation", validation)
    return refs
