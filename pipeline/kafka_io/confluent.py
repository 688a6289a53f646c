"""The confluent-kafka (librdkafka) backend of :mod:`pipeline.kafka_io.interface`.

An optional extra (``pip install 'statecast[confluent]'``), selected with
``--backend confluent-kafka`` / ``STATECAST_BACKEND``. librdkafka does the network
I/O, batching and retries on its own threads, so a produce costs ~1 µs of the calling
thread instead of kafka-python's ~23 µs. confluent-kafka errors are translated here into
:class:`pipeline.errors.KafkaError`.

Settings chosen so the two backends behave alike: key partitioning uses
``murmur2_random`` (the Java client's and kafka-python's partitioner, so a stream lands
on the same partition whichever backend produced it); delivery reports are requested
for failed sends only (a Python callback per successful send would cost more than the
send); and ``fetch.queue.backoff.ms`` is lowered from librdkafka's 1 s, which otherwise
stalls a consumer whose local queue ran full.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import confluent_kafka as ck

from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError
from pipeline.kafka_io.interface import (
    COMMIT_DEADLINE_S,
    TRANSACTION_TIMEOUT_MS,
    AssignmentCallback,
    Header,
    Record,
    TopicPartition,
    topic_partitions,
    warn_open_transaction,
)

__all__ = ["ConfluentConsumer", "ConfluentProducer", "client_settings"]

log = logging.getLogger(__name__)
# Producers abandoned while a librdkafka call blocked inside them (see ConfluentProducer.commit):
# kept referenced so they are never destroyed under that call.
_WEDGED: list[Any] = []
POLL_EVERY = 10_000  # sends between producer polls that serve (error-only) delivery reports


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings shared by every librdkafka client."""
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap,
        "security.protocol": config.security_protocol,
        "socket.timeout.ms": int(config.request_timeout_s * 1000),
        "reconnect.backoff.max.ms": 5000,
        "logger": logging.getLogger("librdkafka"),
    }
    if config.sasl_mechanism:
        settings.update(
            {
                "sasl.mechanism": config.sasl_mechanism,
                "sasl.username": config.sasl_username,
                "sasl.password": config.sasl_password,
            }
        )
    for ours, theirs in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        if getattr(config, ours):
            settings[theirs] = getattr(config, ours)
    return settings


def _describe(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, ck.KafkaError) else str(exc)


class _Errors:
    """Errors librdkafka reports from its own threads: fatal ones surface at the next
    call; the rest (a broker restarting, say) are retried by librdkafka and only logged."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.fatal: ck.KafkaError | None = None

    def __call__(self, err: ck.KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("%s: fatal Kafka error: %s", self.what, err.str())
        else:
            log.warning("%s: %s", self.what, err.str())

    def check(self) -> None:
        if self.fatal is not None:
            raise KafkaError(f"{self.what}: fatal Kafka error: {self.fatal.str()}")


class ConfluentConsumer:
    """A group consumer with manual commits and cooperative-sticky assignment."""

    def __init__(
        self,
        config: KafkaConfig,
        topics: list[str],
        group: str,
        *,
        on_assign: AssignmentCallback | None = None,
        on_revoke: AssignmentCallback | None = None,
        on_lost: AssignmentCallback | None = None,
        max_poll_records: int = 2000,
        isolation_level: str = "read_uncommitted",
        auto_offset_reset: str = "earliest",
        max_partition_fetch_bytes: int = 1 << 20,
    ) -> None:
        del max_poll_records  # the batch size is chosen per poll
        self._errors = _Errors("consumer")
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost or on_revoke
        self._timeout_s = config.request_timeout_s
        try:
            self._consumer = ck.Consumer(
                {
                    **client_settings(config),
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": auto_offset_reset,
                    "isolation.level": isolation_level,
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": 10000,
                    "heartbeat.interval.ms": 2000,
                    "max.poll.interval.ms": 300000,
                    # See the kafka-python backend: heal an empty first assignment quickly.
                    "topic.metadata.refresh.interval.ms": 5000,
                    "fetch.wait.max.ms": 100,
                    "max.partition.fetch.bytes": max_partition_fetch_bytes,
                    # Read-ahead per partition: enough to keep a busy loop fed, small
                    # enough to keep memory flat (librdkafka's default is 64 MiB).
                    "queued.max.messages.kbytes": 8192,
                    "fetch.queue.backoff.ms": 5,
                    "error_cb": self._errors,
                }
            )
            self._consumer.subscribe(
                topics,
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._lost,
            )
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise KafkaError(f"cannot connect consumer to {config.bootstrap}: {exc}") from exc

    # librdkafka calls these from inside poll, on the caller's thread; when they return
    # without assigning, confluent-kafka applies the (incremental) assignment itself.
    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._on_assign and partitions:
            self._on_assign(topic_partitions(partitions))

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._on_revoke and partitions:
            self._on_revoke(topic_partitions(partitions))

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._on_lost and partitions:
            self._on_lost(topic_partitions(partitions))

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        self._errors.check()
        try:
            # consume(n, timeout) waits for n messages or the timeout; the interface
            # returns what is there as soon as anything is (kafka-python's semantics), so
            # take what is queued, else wait for one message and add what came with it.
            messages = self._consumer.consume(max_records, 0)
            if not messages:
                first = self._consumer.poll(timeout_ms / 1000.0)
                if first is None:
                    return []
                messages = [first, *self._consumer.consume(max_records - 1, 0)]
        except (ck.KafkaException, RuntimeError) as exc:
            raise KafkaError(f"poll failed: {_describe(exc)}") from exc
        out: list[Record] = []
        append = out.append
        new = tuple.__new__
        # Typed as Any: a message from consume() always has topic, partition and offset
        # (the stubs allow None for messages the producer has not sent yet).
        m: Any
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaError(f"poll failed: {err.str()}")
                log.warning("consumer: %s", err.str())
                continue
            # tuple.__new__ skips the NamedTuple's Python-level __new__ (half the cost).
            append(
                new(
                    Record,
                    (
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        m.timestamp()[1],
                        m.headers() or (),
                    ),
                )
            )
        return out

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            result = self._consumer.commit(
                offsets=[ck.TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()],
                asynchronous=False,
            )
        except ck.KafkaException as exc:
            raise KafkaError(f"offset commit failed: {_describe(exc)}") from exc
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            raise KafkaError(f"offset commit failed for {failed[0]}: {failed[0].error}")

    def assignment(self) -> set[TopicPartition]:
        try:
            return topic_partitions(self._consumer.assignment())
        except (ck.KafkaException, RuntimeError) as exc:
            raise KafkaError(f"cannot read the assignment: {_describe(exc)}") from exc

    def lag(self) -> dict[TopicPartition, int]:
        # The high watermark each fetch response carries (librdkafka caches it per
        # partition): asking the broker instead waited behind the long-poll fetch, up to
        # fetch.wait.max.ms per partition, on the poll loop, every housekeeping turn
        # (docs/benchmarks.md, "The lag gauge").
        try:
            parts = self._consumer.assignment()
            positions = self._consumer.position(parts) if parts else []
            out: dict[TopicPartition, int] = {}
            for tp in positions:
                if tp.offset < 0:  # nothing fetched yet: position unknown
                    continue
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:  # no fetch response for it yet
                    continue
                out[TopicPartition(tp.topic, tp.partition)] = max(0, high - tp.offset)
            return out
        except (ck.KafkaException, RuntimeError) as exc:
            log.warning("could not read consumer lag: %s", _describe(exc))
            return {}

    def committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        if not partitions:
            return {}
        try:
            result = self._consumer.committed(
                [ck.TopicPartition(tp.topic, tp.partition) for tp in partitions],
                timeout=self._timeout_s,
            )
        except ck.KafkaException as exc:
            raise KafkaError(f"cannot read committed offsets: {_describe(exc)}") from exc
        return {
            TopicPartition(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
            for tp in result
        }

    def group_metadata(self) -> object:
        return self._consumer.consumer_group_metadata()

    def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        # One ListOffsets request for every partition (timestamp -1: the latest offset;
        # get_watermark_offsets asks once per partition, ~100 ms each on a busy broker).
        try:
            got = self._consumer.offsets_for_times(
                [ck.TopicPartition(topic, p, -1) for p in partitions], timeout=self._timeout_s
            )
            out = {tp.partition: int(tp.offset) for tp in got}
            if any(off < 0 or tp.error for off, tp in zip(out.values(), got, strict=True)):
                raise KafkaError(f"cannot read the end offsets of {topic}: {got}")
            return out
        except (ck.KafkaException, RuntimeError, TypeError) as exc:
            raise KafkaError(f"cannot read the end offsets of {topic}: {_describe(exc)}") from exc

    def close(self) -> None:
        try:
            self._consumer.close()
        except (ck.KafkaException, RuntimeError) as exc:  # never raise during shutdown
            log.warning("consumer close: %s", _describe(exc))


class ConfluentProducer:
    """Idempotent, acks=all producer; failures surface at :meth:`flush`."""

    def __init__(
        self,
        config: KafkaConfig,
        *,
        linger_ms: int = 5,
        max_request_size: int = 1 << 20,
        transactional_id: str | None = None,
    ):
        self._errors = _Errors("producer")
        self._failed: list[str] = []
        self._timeout_s = config.request_timeout_s
        settings: dict[str, Any] = {
            **client_settings(config),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "message.max.bytes": max_request_size,
            "partitioner": "murmur2_random",
            "delivery.report.only.error": True,
            "on_delivery": self._delivered,
            "error_cb": self._errors,
            # Bounded retries so flush() reports a broker that stays away, instead of
            # retrying for librdkafka's default five minutes.
            "message.timeout.ms": int(max(config.request_timeout_s, 1.0) * 2000),
        }
        if transactional_id:
            settings["transactional.id"] = transactional_id
            settings["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
            # librdkafka refuses socket and message timeouts longer than the transaction's.
            for name in ("socket.timeout.ms", "message.timeout.ms"):
                settings[name] = min(settings[name], TRANSACTION_TIMEOUT_MS)
        try:
            self._producer = ck.Producer(settings)
            if transactional_id:
                self._producer.init_transactions(self._timeout_s)
        except (ck.KafkaException, ValueError, TypeError) as exc:
            raise KafkaError(
                f"cannot connect producer to {config.bootstrap}: {_describe(exc)}"
            ) from exc
        self._since_poll = 0
        self._wedged = False

    def _delivered(self, err: ck.KafkaError | None, msg: Any) -> None:
        if err is not None:
            if len(self._failed) < 100:
                self._failed.append(f"{msg.topic()}: {err.str()}")
            else:
                self._failed[-1] = f"{msg.topic()}: {err.str()} (and more)"

    def _check(self) -> None:
        self._errors.check()
        failed, self._failed = self._failed, []
        if failed:
            raise KafkaError(f"{len(failed)} sends were not acknowledged, first: {failed[0]}")

    def begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except ck.KafkaException as exc:
            raise KafkaError(f"cannot begin transaction: {_describe(exc)}") from exc

    def commit(self, offsets: dict[TopicPartition, int], group_metadata: object) -> None:
        """Offsets into the transaction, then commit it.

        librdkafka's send_offsets_to_transaction can block past its timeout, for good, when
        the group coordinator goes away meanwhile (librdkafka issues 5456 and 5511, open;
        seen here in the chaos test across a broker restart). So the calls run on a helper
        thread with a deadline: past it, this producer is abandoned (kept referenced, never
        destroyed under the blocked call) and KafkaError sends the scorer into its recover
        path, whose new producer with the same transactional id fences this one.
        """
        outcome: list[BaseException | None] = []
        # Past the transaction timeout the coordinator aborts what it has not committed:
        # neither call can decide anything by waiting longer (COMMIT_DEADLINE_S).
        call_s = min(self._timeout_s, TRANSACTION_TIMEOUT_MS / 1000)
        deadline_s = min(self._timeout_s * 3, COMMIT_DEADLINE_S)

        def run() -> None:
            try:
                if offsets:
                    self._producer.send_offsets_to_transaction(
                        [ck.TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()],
                        group_metadata,
                        call_s,
                    )
                self._producer.commit_transaction(call_s)
                outcome.append(None)
            except BaseException as exc:  # handed to the caller's thread below
                outcome.append(exc)

        worker = threading.Thread(target=run, name="txn-commit", daemon=True)
        worker.start()
        worker.join(deadline_s)
        if worker.is_alive():
            self._wedged = True
            _WEDGED.append(self._producer)
            raise KafkaError(
                f"transaction commit did not return within {deadline_s:.0f}s "
                "(librdkafka send_offsets_to_transaction hang); abandoning this producer"
            )
        exc = outcome[0]
        if isinstance(exc, ck.KafkaException):
            raise KafkaError(f"transaction commit failed: {_describe(exc)}") from exc
        if exc is not None:
            raise exc
        self._check()

    def abort(self) -> None:
        self._failed = []
        if self._wedged:
            return  # a call still blocks inside it; the next producer fences it instead
        try:
            self._producer.abort_transaction(self._timeout_s)
        except ck.KafkaException as exc:
            log.warning("transaction abort: %s", _describe(exc))

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[Header] | None = None,
        partition: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        try:
            self._producer.produce(topic, value, key, **kwargs)
        except BufferError:
            # The local queue is full: let librdkafka drain it, then retry once.
            self._producer.flush(self._timeout_s)
            try:
                self._producer.produce(topic, value, key, **kwargs)
            except (BufferError, ck.KafkaException) as exc:
                raise KafkaError(f"send to {topic} failed: {exc}") from exc
        except ck.KafkaException as exc:
            raise KafkaError(f"send to {topic} failed: {_describe(exc)}") from exc
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self._producer.poll(0)

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        partitions: Sequence[int] | None = None,
    ) -> None:
        produce = self._producer.produce
        try:
            if partitions is None:
                for key, value in zip(keys, values, strict=True):
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        self.send(topic, key, value)  # drains the queue, then retries once
            else:
                for key, value, part in zip(keys, values, partitions, strict=True):
                    try:
                        produce(topic, value, key, part)
                    except BufferError:
                        self.send(topic, key, value, partition=part)
        except ck.KafkaException as exc:
            raise KafkaError(f"send to {topic} failed: {_describe(exc)}") from exc
        self._since_poll += len(values)
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self._producer.poll(0)

    def unacked(self) -> int:
        try:
            self._producer.poll(0)  # serves the delivery reports that arrived
        except ck.KafkaException as exc:
            raise KafkaError(f"producer poll failed: {_describe(exc)}") from exc
        left = len(self._producer)
        if not left:
            self._check()  # every send reported: any failure among them surfaces now
        return left

    def flush(self) -> None:
        try:
            left = self._producer.flush(self._timeout_s * 2)
        except ck.KafkaException as exc:
            raise KafkaError(f"flush failed: {_describe(exc)}") from exc
        if left:
            raise KafkaError(f"flush failed: {left} sends still unacknowledged; is the broker up?")
        self._check()

    def close(self) -> None:
        if self._wedged:
            return  # see commit(): destroying it under the blocked call would crash
        try:
            self._producer.flush(10)
            self._producer.close()
        except (ck.KafkaException, RuntimeError) as exc:
            log.warning("producer close: %s", _describe(exc))


def _stable_end(
    consumer: ck.Consumer, topic: str, part: int, at: int, highs: dict[int, int]
) -> bool:
    """Whether a read_committed reader's partition-EOF at ``at`` is its end: the first EOF
    at or past the high watermark that the first EOF saw (:func:`warn_open_transaction`
    says why; librdkafka caches the fetch response's high watermark, and a later EOF
    follows a commit or an abort)."""
    if part not in highs:
        _, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, part), cached=True)
        highs[part] = int(high)
        if at < high:
            warn_open_transaction(log, topic, part, high, at)
    return at >= highs[part]


def read_to_end(
    config: KafkaConfig,
    topic: str,
    partitions: Iterable[int],
    *,
    read_committed: bool,
    max_message_bytes: int,
    timeout_s: float,
    start: Mapping[int, int] | None = None,
) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """``(partition, offset, key, value)`` of every record from the start of the given partitions
    (or from ``start[p]``) to their end (librdkafka's partition-EOF event).

    ``read_committed``: to the last stable offset, and not before it has reached the high
    watermark seen at the first end (:func:`_stable_end`)."""
    pending = set(partitions)
    if not pending:
        return
    errors = _Errors("reader")
    highs: dict[int, int] = {}  # read_committed: the high watermark each partition waits for
    try:
        consumer = ck.Consumer(
            {
                **client_settings(config),
                # Required by librdkafka; nothing joins or commits: partitions are assigned.
                "group.id": f"statecast-reader-{topic}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                # The end is known as soon as a fetch comes back empty: do not let the
                # broker hold it (500 ms by default), a restore waits for it.
                "fetch.wait.max.ms": 10,
                # Prefetch deep: a restore reads hundreds of MB, and librdkafka's default
                # queue (64 MB, 100k messages) halves the read rate (measured: 13-15 vs
                # 5 us per 3 KB frame). The queue is freed when the reader closes.
                "queued.max.messages.kbytes": 256 * 1024,
                "queued.min.messages": 1_000_000,
                # A start offset the log no longer has: read from its beginning (more, never
                # less).
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                "max.partition.fetch.bytes": max_message_bytes,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "error_cb": errors,
            }
        )
        begin = start or {}
        consumer.assign(
            [
                ck.TopicPartition(topic, p, begin.get(p, ck.OFFSET_BEGINNING))
                for p in sorted(pending)
            ]
        )
        deadline = time.monotonic() + timeout_s
        m: Any
        while pending:
            errors.check()
            if time.monotonic() > deadline:
                raise KafkaError(f"reading {topic} to its end took longer than {timeout_s:.0f}s")
            # consume() waits for the whole batch or the timeout; a short one ends the
            # read soon after the last partition-EOF event.
            for m in consumer.consume(10_000, 0.05):
                err = m.error()
                if err is None:
                    yield m.partition(), m.offset(), m.key(), m.value()
                elif err.code() == ck.KafkaError._PARTITION_EOF:
                    if not read_committed or _stable_end(
                        consumer, topic, m.partition(), m.offset(), highs
                    ):
                        pending.discard(m.partition())
                elif err.fatal():
                    raise KafkaError(f"cannot read {topic}: {err.str()}")
                else:
                    log.warning("reader: %s", err.str())
        consumer.close()
    except (ck.KafkaException, RuntimeError) as exc:
        raise KafkaError(f"cannot read {topic}: {_describe(exc)}") from exc
