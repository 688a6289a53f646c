"""``statecast models``: list, show, promote, shadow or roll back registered models,
record drift references for a version trained without them, and derive a version with
other anomaly parameters (``derive --set threshold=0.65``) without retraining."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.commands.flags import add_model_flags, models_config

__all__ = ["add_parser", "run"]


def run(ns: argparse.Namespace) -> int:
    from pipeline.engine.registry import Registry

    where = models_config(ns)
    reg = Registry(where.registry)
    if ns.action == "list":
        for model in reg.models():
            current, shadow = reg.current(model), reg.shadow(model)
            for v in reg.versions(model):
                mark = "*" if v == current else "~" if v == shadow else " "
                try:
                    meta = reg.meta(model, v, verify=False)
                    mae = meta.raw.get("validation", {}).get("mean_mae", float("nan"))
                    print(
                        f"{mark} {model}/{v}  features={','.join(meta.features)} "
                        f"L={meta.layers} H={meta.hidden} horizon={meta.horizon} mean_mae={mae:.4f}"
                    )
                except Exception as exc:  # a broken version is listed, not fatal
                    print(f"{mark} {model}/{v}  (unreadable: {exc})")
        return 0
    if ns.action == "show":
        meta = reg.meta(where.model, ns.version)
        doc = dict(meta.raw)
        doc.get("fit", {}).pop("history", None)
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    if ns.action == "keygen":
        from pipeline.kafka_io.model_topic import generate_keypair

        private = Path(ns.version or "statecast-signing.key")
        public = generate_keypair(private)
        print(f"wrote {private} (train --sign-key) and {public} (score --model-verify-key)")
        return 0
    if ns.action == "promote":
        if not ns.version:
            print("statecast: error: promote needs a VERSION", file=sys.stderr)
            return 2
        reg.promote(where.model, ns.version)
        print(f"{where.model} now serves {ns.version}")
        return 0
    if ns.action == "shadow":
        if not ns.version:
            print("statecast: error: shadow needs a VERSION", file=sys.stderr)
            return 2
        reg.set_shadow(where.model, ns.version)
        print(f"{where.model}: scorers shadow {ns.version} beside {reg.current(where.model)}")
        return 0
    if ns.action == "unshadow":
        reg.set_shadow(where.model, None)
        print(f"{where.model}: no shadow")
        return 0
    if ns.action == "reference":
        if not ns.data:
            print("statecast: error: reference needs --data (the training data)", file=sys.stderr)
            return 2
        from training.references import backfill

        refs = backfill(reg, where.model, ns.version, ns.data)
        print(
            f"{where.model}/{ns.version or reg.current(where.model)}: drift references "
            f"recorded (live_mae {refs['live_mae']:.4f}, input_hist over "
            f"{len(refs['input_hist'])} bins)"
        )
        return 0
    if ns.action == "derive":
        new = reg.derive(where.model, ns.version, _changes(ns.set or []))
        if ns.promote:
            reg.promote(where.model, new)
        source = ns.version or "the promoted version"
        print(
            f"{where.model}/{new}: {source}'s network with {' '.join(ns.set or [])}"
            + (" (promoted)" if ns.promote else f" (promote: statecast models promote {new})")
        )
        return 0
    target = reg.rollback(where.model)
    print(f"{where.model} rolled back to {target}")
    return 0


def _changes(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` arguments, each value read as JSON (``0.65``, ``true``, ``50``)."""
    from pipeline.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        try:
            if not sep:
                raise ValueError("no '='")
            out[key.strip()] = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"--set {pair!r}: give KEY=VALUE with a JSON value (0.65, true, 50)"
            ) from exc
    if not out:
        raise ConfigError("derive needs at least one --set KEY=VALUE")
    return out


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list, show, promote, shadow or roll back registered models")
    p.add_argument(
        "action",
        choices=[
            "list", "show", "promote", "shadow", "unshadow", "rollback", "keygen", "reference",
            "derive",
        ],
    )  # fmt: skip
    p.add_argument(
        "version",
        nargs="?",
        help="the version (promote, shadow, show, reference, derive); keygen: key file",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="derive: an anomaly parameter of the new version (repeatable); derive writes "
        "a new version with the same network and these parameters",
    )
    p.add_argument("--promote", action="store_true", help="derive: promote the new version")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        help="reference: the CSV files or folders the version was trained on, to record "
        "its drift references (live_mae, input_hist) if it was trained without them",
    )
    add_model_flags(p)
    p.set_defaults(func=run)
