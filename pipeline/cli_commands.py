"""Subcommands beyond ``kafka``: each registers its argparse parser in :data:`PARSERS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["PARSERS"]

PARSERS: list[Callable[[Any], None]] = []
