"""One module per ``statecast`` subcommand, its parser and its handler together.

Each module has ``add_parser(subparsers)``, which registers the subcommand with
``func=run``. Handlers import heavy modules (torch, the scorer) only when they run, so
``statecast score`` never imports torch (a test checks it).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SUBCOMMANDS", "add_parsers"]

SUBCOMMANDS = (
    "kafka",
    "train",
    "models",
    "score",
    "generate",
    "replay",
    "detect",
    "backtest",
    "demo",
    "bench",
)


def add_parsers(sub: Any) -> None:
    """Register every subcommand's parser, in help order."""
    for name in SUBCOMMANDS:
        importlib.import_module(f"pipeline.commands.{name}").add_parser(sub)
