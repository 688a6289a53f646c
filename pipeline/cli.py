"""The ``statecast`` command: parses the command line, dispatches to the subcommand's
handler (:mod:`pipeline.commands`) and turns errors into exit codes. Nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pipeline import stopping
from pipeline.commands import add_parsers
from pipeline.errors import StatecastError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statecast",
        description="Stateful streaming inference for sensor data (LSTM on Kafka).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``statecast`` console script."""
    # Before the parser (which imports the scorer: seconds): a SIGTERM from here on is
    # held until the command knows what to do with it (pipeline.stopping).
    stopping.hold()
    ns = build_parser().parse_args(argv)
    if not getattr(ns, "holds_stop", False):
        stopping.release()
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not ns.verbose else logging.INFO)
    # Group events (joins, assignments, lost membership) are rare and what an operator
    # needs to tell who owned a partition when.
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)
    handler: Handler = ns.func
    try:
        return handler(ns)
    except StatecastError as exc:
        print(f"statecast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
