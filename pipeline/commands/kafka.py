"""``statecast kafka``: run a local single-node KRaft broker (no Docker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.commands.flags import flags

__all__ = ["add_parser", "run"]


def run(ns: argparse.Namespace) -> int:
    from pipeline.config import LocalKafkaConfig, load
    from pipeline.localkafka import LocalBroker

    broker = LocalBroker(load(LocalKafkaConfig, flags(ns)))
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


def add_parser(sub: Any) -> None:
    p = sub.add_parser("kafka", help="run a local single-node KRaft broker (no Docker)")
    p.add_argument("action", choices=["up", "down", "status", "wipe", "fetch"])
    p.add_argument("--port", type=int, help="client port (default 9092)")
    p.add_argument("--controller-port", dest="controller_port", type=int, help="default 9093")
    p.add_argument("--data-dir", dest="data_dir", help="default .statecast/kafka-<port>")
    p.add_argument("--home", help="cache folder for jars and data (default .statecast)")
    p.add_argument("--heap-mb", dest="heap_mb", type=int)
    p.add_argument(
        "--gc-pause-ms",
        dest="gc_pause_target_ms",
        type=int,
        help="G1's pause-time goal in ms (default 200, G1's own; Kafka's start script: 20)",
    )
    p.set_defaults(func=run)
