"""Topic administration waits out a broker that is restarting, and fails fast on a request
the broker refuses: a scorer started during a broker restart creates its topics once the
broker is back instead of exiting (the chaos run found one that exited)."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError
from pipeline.kafka_io import ensure_topic, partitions_for
from pipeline.localkafka.broker import LocalBroker

pytestmark = pytest.mark.integration


def test_creating_a_topic_waits_out_a_stalled_broker(
    broker: LocalBroker, kafka_config: KafkaConfig, unique_name: Callable[[str], str]
) -> None:
    """The broker stops answering (as under a long GC pause or a restart) for longer than a
    request may take: the requests time out, and are retried until it answers again."""
    config = dataclasses.replace(kafka_config, request_timeout_s=2.0)
    name = unique_name("admin-stall")
    outcome: list[object] = []
    pid = broker.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        worker = threading.Thread(target=lambda: outcome.append(_attempt(config, name)))
        worker.start()
        time.sleep(6)  # three request timeouts
        assert worker.is_alive(), outcome  # still waiting, not failed
    finally:
        os.kill(pid, signal.SIGCONT)
    worker.join(60)
    assert outcome == [True]
    assert partitions_for(kafka_config, name) == 3


def _attempt(config: KafkaConfig, name: str) -> object:
    try:
        return ensure_topic(config, name, 3)
    except KafkaError as exc:
        return exc


def test_a_refused_request_fails_at_once(
    kafka_config: KafkaConfig, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("admin-refused")
    started = time.monotonic()
    with pytest.raises(KafkaError, match=f"cannot create topic {name}"):
        ensure_topic(kafka_config, name, 1, {"cleanup.policy": "no-such-policy"})
    assert time.monotonic() - started < 10, "a refused request is not retried"
