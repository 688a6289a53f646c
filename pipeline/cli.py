"""The ``statecast`` command: a thin argparse layer that builds one config and hands it
to an entry object. No logic lives here beyond parsing and exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.errors import StatecastError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k not in ("func", "command", "action")}


# -- kafka -----------------------------------------------------------------------------


def _cmd_kafka(ns: argparse.Namespace) -> int:
    from pipeline.config import LocalKafkaConfig, load
    from pipeline.localkafka import LocalBroker

    broker = LocalBroker(load(LocalKafkaConfig, _flags(ns)))
    if ns.action == "up":
        status = broker.up()
        print(f"bootstrap={status.bootstrap}")
        print(f"log={status.log_path}", file=sys.stderr)
    elif ns.action == "down":
        stopped = broker.down()
        print("kafka stopped" if stopped else "kafka was not running")
    elif ns.action == "wipe":
        broker.wipe()
        print(f"kafka stopped and {broker.data_dir} deleted")
    elif ns.action == "fetch":
        from pipeline.localkafka import fetch_jars

        print(fetch_jars(broker.config.home.resolve(), broker.config.kafka_version))
    else:
        status = broker.status()
        print(status.describe())
        return 0 if status.running else 3
    return 0


def _kafka_parser(sub: Any) -> None:
    p = sub.add_parser("kafka", help="run a local single-node KRaft broker (no Docker)")
    p.add_argument("action", choices=["up", "down", "status", "wipe", "fetch"])
    p.add_argument("--port", type=int, help="client port (default 9092)")
    p.add_argument("--controller-port", dest="controller_port", type=int, help="default 9093")
    p.add_argument("--data-dir", dest="data_dir", help="default .statecast/kafka-<port>")
    p.add_argument("--home", help="cache folder for jars and data (default .statecast)")
    p.add_argument("--heap-mb", dest="heap_mb", type=int)
    p.set_defaults(func=_cmd_kafka)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statecast",
        description="Stateful streaming inference for sensor data (LSTM on Kafka).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _kafka_parser(sub)
    if not _EXTRA_PARSERS:
        _load_extra_parsers()
    for register in _EXTRA_PARSERS:
        register(sub)
    return parser


# Subcommands defined in other modules register themselves here (kept import-light:
# the training subcommands import torch only when run).
_EXTRA_PARSERS: list[Callable[[Any], None]] = []


def _load_extra_parsers() -> None:
    from pipeline import cli_commands

    _EXTRA_PARSERS.extend(cli_commands.PARSERS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``statecast`` console script."""
    ns = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not ns.verbose else logging.INFO)
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
