"""What every subcommand shares: the flags-to-config mapping and the Kafka flags."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from pipeline.config import BACKENDS, KafkaConfig, ModelsConfig, explicit_bootstrap, load

__all__ = ["add_kafka_flags", "add_model_flags", "flags", "kafka_for", "models_config"]


def flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k not in ("func", "command", "action", "verbose")}


@contextlib.contextmanager
def kafka_for(ns: argparse.Namespace) -> Iterator[KafkaConfig]:
    """The broker named by ``--bootstrap``, else the managed local one, which is stopped
    again afterwards if this command started it."""
    from pipeline.config import LocalKafkaConfig
    from pipeline.localkafka import LocalBroker

    given = flags(ns)
    if explicit_bootstrap(given):
        yield load(KafkaConfig, given)
        return
    broker = LocalBroker(load(LocalKafkaConfig, {}))
    started = not broker.status().running
    given["bootstrap"] = broker.up().bootstrap
    try:
        yield load(KafkaConfig, given)
    finally:
        if started:
            broker.down()


def add_kafka_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="HOST:PORT of the broker (env STATECAST_BOOTSTRAP)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Kafka client library (default kafka-python; env STATECAST_BACKEND)",
    )
    p.add_argument("--security-protocol", dest="security_protocol")
    p.add_argument("--sasl-mechanism", dest="sasl_mechanism")
    p.add_argument("--sasl-username", dest="sasl_username")
    p.add_argument("--ssl-cafile", dest="ssl_cafile")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="model registry folder (env STATECAST_REGISTRY)")
    p.add_argument("--model", help="model name (env STATECAST_MODEL; default: default)")


def models_config(ns: argparse.Namespace) -> ModelsConfig:
    return load(ModelsConfig, flags(ns))
