"""librdkafka's send_offsets_to_transaction can block for good when the group coordinator
goes away (librdkafka issues 5456, 5511; seen in the chaos test across a broker restart).
The confluent-kafka backend bounds the transaction commit with a watchdog: fault injection
replaces the client with one whose call never returns."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError
from pipeline.kafka_io import TopicPartition
from pipeline.kafka_io.confluent import ConfluentProducer


class _Hangs:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = False

    def send_offsets_to_transaction(self, *args: object) -> None:
        self.release.wait()  # the librdkafka hang: past any timeout

    def commit_transaction(self, *args: object) -> None:
        pass

    def flush(self, *args: object) -> int:
        self.closed = True
        return 0

    def close(self) -> None:
        self.closed = True

    def abort_transaction(self, *args: object) -> None:
        self.closed = True


def test_a_hung_transaction_commit_becomes_a_kafka_error_and_the_producer_is_abandoned() -> None:
    producer = ConfluentProducer(KafkaConfig(bootstrap="127.0.0.1:1", backend="confluent-kafka"))
    real = producer._producer
    hang = _Hangs()
    producer._producer = hang  # type: ignore[assignment]
    producer._timeout_s = 0.2
    started = time.monotonic()
    try:
        with pytest.raises(KafkaError, match="did not return"):
            producer.commit({TopicPartition("t", 0): 5}, object())
        assert time.monotonic() - started < 5
        producer.abort()  # must not touch the wedged client...
        producer.close()  # ...nor destroy it under the blocked call
        assert not hang.closed
    finally:
        hang.release.set()
        real.flush(0)
