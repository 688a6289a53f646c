"""kafka-python 3.0 waits for a transaction's commit or abort without a bound; one abort
across a broker restart never returned in a chaos run, and the hung scorer held its
group's rebalance for five minutes. The kafka-python backend bounds those waits: a
coordinator that stops answering turns a commit into a KafkaError, and the next producer
with the same transactional id fences the abandoned one."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError
from pipeline.kafka_io import TopicPartition
from pipeline.kafka_io.kafkapython import KafkaPythonProducer
from pipeline.localkafka import LocalBroker
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.integration


def test_a_commit_the_coordinator_never_answers_fails_within_the_deadline(
    broker: LocalBroker,
    kafka_config: KafkaConfig,
    topic_factory: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topic = topic_factory("txn-deadline", partitions=1)
    txn_id = unique_name("txn-deadline")
    producer = KafkaPythonProducer(kafka_config, transactional_id=txn_id, txn_deadline_s=2.0)
    producer.begin()
    producer.send(topic, b"k", b"lost")
    producer.flush()
    outcome: list[BaseException | None] = []

    def commit() -> None:
        try:
            producer.commit({TopicPartition(topic, 0): 1}, "some-group")
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread below
            outcome.append(exc)

    pid = broker.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        worker = threading.Thread(target=commit, daemon=True)
        worker.start()
        worker.join(15.0)
        assert not worker.is_alive(), "the commit still waits for the stopped broker"
        assert isinstance(outcome[0], KafkaError), outcome
        assert "no answer" in str(outcome[0])
        assert time.monotonic() - started < 10.0
        producer.abort()  # returns at once: the abandoned producer is not waited on again
        assert time.monotonic() - started < 10.0
        producer.close()  # at once, by force: its pending sends cannot complete
        assert time.monotonic() - started < 10.0
    finally:
        os.kill(pid, signal.SIGCONT)
    # Its sender thread ends once the broker answers again.
    sender = producer._producer._sender
    sender.join(40.0)
    assert not sender.is_alive()
    # The next producer with the same id fences the abandoned one; what it sent never
    # reaches a read_committed reader.
    successor = KafkaPythonProducer(kafka_config, transactional_id=txn_id)
    successor.begin()
    successor.send(topic, b"k", b"kept")
    successor.commit({}, "some-group")
    successor.close()
    values = [r.value for r in read_all(kafka_config, topic, isolation_level="read_committed")]
    assert values == [b"kept"]
