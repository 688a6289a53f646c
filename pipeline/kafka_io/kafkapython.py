"""The kafka-python backend of :mod:`pipeline.kafka_io.interface`.

kafka-python errors are translated here into :class:`pipeline.errors.KafkaError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import kafka
import kafka.errors
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

from pipeline.config import KafkaConfig
from pipeline.errors import KafkaError
from pipeline.kafka_io import join
from pipeline.kafka_io.cooperative import OwnedCooperativeSticky
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

__all__ = ["KafkaPythonConsumer", "KafkaPythonProducer", "await_partitions", "client_settings"]

log = logging.getLogger(__name__)
PRUNE_EVERY = 20_000
TOPIC_METADATA_WAIT_S = 15.0  # how long a consumer waits for its topics before joining
ADMIN_RETRY_S = 60.0  # how long topic administration waits out a restarting or stalled broker
ADMIN_RETRY_PAUSE_S = 1.0
T = TypeVar("T")


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings shared by every kafka-python client."""
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap.split(","),
        "security_protocol": config.security_protocol,
        "request_timeout_ms": int(config.request_timeout_s * 1000),
        # How long a client waits for its first metadata: the request timeout, not the
        # library's own 30 s, so an unreachable broker fails as soon as the operator asked.
        "bootstrap_timeout_ms": int(config.request_timeout_s * 1000),
        "reconnect_backoff_max_ms": 5000,
    }
    if config.sasl_mechanism:
        settings.update(
            sasl_mechanism=config.sasl_mechanism,
            sasl_plain_username=config.sasl_username,
            sasl_plain_password=config.sasl_password,
        )
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(config, name):
            settings[name] = getattr(config, name)
    return settings


def await_partitions(consumer: kafka.KafkaConsumer, topic: str, wait_s: float) -> list[KTP]:
    """``topic``'s partitions, sorted, once ``consumer`` knows them; none if it still knows
    none after ``wait_s`` (a topic not created yet: kafka-python's ``seek_to_beginning()``
    of no partitions raises, and ``all()`` over none is true). One look for ``wait_s <= 0``."""
    deadline = time.monotonic() + wait_s
    while True:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        if parts or time.monotonic() >= deadline:
            return [KTP(topic, p) for p in parts]
        time.sleep(0.2)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Passes assignments, revocations and losses on, and keeps the assignor's claim to
    the partitions still owned (neither a revoked nor a lost partition is claimed)."""

    def __init__(
        self,
        assignor: OwnedCooperativeSticky,
        on_assign: AssignmentCallback | None,
        on_revoke: AssignmentCallback | None,
        on_lost: AssignmentCallback | None,
    ):
        self._assignor = assignor
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost or on_revoke

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._assignor.forget(revoked)
        if self._on_revoke and revoked:
            self._on_revoke(topic_partitions(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        self._assignor.forget(lost)
        if self._on_lost and lost:
            self._on_lost(topic_partitions(lost))

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self._on_assign and assigned:
            self._on_assign(topic_partitions(assigned))


class KafkaPythonConsumer:
    """A group consumer with manual commits and cooperative-sticky assignment, with two
    mends to kafka-python's group code (:mod:`pipeline.kafka_io.cooperative`,
    :mod:`pipeline.kafka_io.join`)."""

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
        assignor = OwnedCooperativeSticky()
        try:
            self._consumer = kafka.KafkaConsumer(
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset=auto_offset_reset,
                max_poll_records=max_poll_records,
                isolation_level=isolation_level,
                partition_assignment_strategy=[assignor],
                fetch_max_wait_ms=100,
                max_partition_fetch_bytes=max_partition_fetch_bytes,
                session_timeout_ms=10000,
                heartbeat_interval_ms=2000,
                max_poll_interval_ms=300000,
                # A member that joins before a new topic's metadata reached it is assigned
                # nothing until its metadata refreshes (5 minutes by default): refresh often.
                metadata_max_age_ms=5000,
                **client_settings(config),
            )
            join.mend(self._consumer)
            self._await_metadata(topics, TOPIC_METADATA_WAIT_S)
            self._consumer.subscribe(
                topics, listener=_Listener(assignor, on_assign, on_revoke, on_lost)
            )
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"cannot connect consumer to {config.bootstrap}: {exc}") from exc

    def _await_metadata(self, topics: list[str], wait_s: float) -> None:
        """Join only once the topics' partitions are known: a member that joins before a
        new topic's metadata reached it is assigned nothing, and kafka-python 3.0 does not
        always rejoin when the metadata arrives (seen in CI: the scorer sat idle with no
        partitions while its input topic filled). A topic still unknown after ``wait_s``
        (not created yet) is subscribed to anyway; the metadata refresh picks it up."""
        deadline = time.monotonic() + wait_s
        missing = [
            t
            for t in topics
            if not await_partitions(self._consumer, t, deadline - time.monotonic())
        ]
        if missing:
            log.warning(
                "topics %s have no partitions yet; subscribing anyway (create them, or the "
                "scorer idles until they exist)",
                missing,
            )

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"poll failed: {exc}") from exc
        out: list[Record] = []
        for records in batches.values():
            out.extend(
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, r.headers)
                for r in records
            )
        return out

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(
                {
                    KTP(tp.topic, tp.partition): OffsetAndMetadata(o, "", -1)
                    for tp, o in offsets.items()
                }
            )
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"offset commit failed: {exc}") from exc

    def assignment(self) -> set[TopicPartition]:
        return topic_partitions(self._consumer.assignment())

    def lag(self) -> dict[TopicPartition, int]:
        parts = list(self._consumer.assignment())
        if not parts:
            return {}
        try:
            ends = self._consumer.end_offsets(parts)
            return {
                TopicPartition(tp.topic, tp.partition): max(
                    0, ends[tp] - self._consumer.position(tp)
                )
                for tp in parts
            }
        except kafka.errors.KafkaError as exc:
            log.warning("could not read consumer lag: %s", exc)
            return {}

    def committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        out: dict[TopicPartition, int | None] = {}
        try:
            for tp in partitions:
                out[tp] = self._consumer.committed(KTP(tp.topic, tp.partition))
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"cannot read committed offsets: {exc}") from exc
        return out

    def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        try:
            ends = self._consumer.end_offsets([KTP(topic, p) for p in partitions])
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"cannot read the end offsets of {topic}: {exc}") from exc
        return {tp.partition: int(off) for tp, off in ends.items()}

    def group_metadata(self) -> object:
        return self._consumer.group_metadata()

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except kafka.errors.KafkaError as exc:  # closing must never raise during shutdown
            log.warning("consumer close: %s", exc)


class KafkaPythonProducer:
    """Idempotent, acks=all producer; failures surface at :meth:`flush`.

    A transaction's offsets, commit and abort wait at most ``txn_deadline_s`` for the
    coordinator's answer. kafka-python 3.0's own ``send_offsets_to_transaction``,
    ``commit_transaction`` and ``abort_transaction`` wait without a bound (only its
    ``init_transactions`` has one), and one abort across a broker restart never returned in
    a chaos run: the scorer hung, ignored SIGTERM, and its consumer, still heartbeating,
    held the group's rebalance for its 5-minute poll interval. Past the deadline this
    producer is given up (KafkaError sends the scorer into its recover path, whose new
    producer with the same transactional id fences this one), as the confluent backend
    does with librdkafka's hang.
    """

    def __init__(
        self,
        config: KafkaConfig,
        *,
        linger_ms: int = 5,
        max_request_size: int = 1 << 20,
        transactional_id: str | None = None,
        txn_deadline_s: float = COMMIT_DEADLINE_S,
    ):
        self._txn_deadline_s = txn_deadline_s
        self._wedged = False
        try:
            self._producer = kafka.KafkaProducer(
                linger_ms=linger_ms,
                batch_size=256 * 1024,
                max_request_size=max_request_size,
                transactional_id=transactional_id,
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                **client_settings(config),
            )
            if transactional_id:
                self._producer.init_transactions()
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"cannot connect producer to {config.bootstrap}: {exc}") from exc
        # Futures of sends not yet known to have succeeded; settled ones are pruned every
        # PRUNE_EVERY sends, so memory does not grow with the number of sends between
        # flushes (an errback per send costs more CPU than this sweep).
        self._pending: list[Any] = []

    def begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"cannot begin transaction: {exc}") from exc

    def commit(self, offsets: dict[TopicPartition, int], group_metadata: object) -> None:
        manager = self._producer._transaction_manager
        try:
            if offsets:  # as the confluent backend: a transaction may carry no offsets
                self._await(
                    manager.send_offsets_to_transaction(
                        {
                            KTP(tp.topic, tp.partition): OffsetAndMetadata(o, "", -1)
                            for tp, o in offsets.items()
                        },
                        group_metadata,
                    ),
                    "the transaction's offsets",
                )
            self._await(manager.begin_commit(), "the transaction commit")
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"transaction commit failed: {exc}") from exc
        self._check()

    def abort(self) -> None:
        self._pending = []
        if self._wedged:
            return  # its coordinator never answered; the next producer fences it instead
        try:
            self._await(self._producer._transaction_manager.begin_abort(), "the abort")
        except (kafka.errors.KafkaError, KafkaError) as exc:
            log.warning("transaction abort: %s", exc)

    def _await(self, result: Any, what: str) -> None:
        """What kafka-python's transactional calls do after enqueueing their request (wake
        the sender, wait for the answer), with a deadline; an error answer is raised."""
        self._producer._sender.wakeup()
        if not result.wait(timeout_ms=self._txn_deadline_s * 1000):
            self._wedged = True
            raise KafkaError(
                f"{what} got no answer from the transaction coordinator within "
                f"{self._txn_deadline_s:.0f}s; abandoning this producer"
            )

    def _check(self) -> None:
        pending, self._pending = self._pending, []
        failed = [f.exception for f in pending if f.failed()]
        if failed:
            raise KafkaError(f"{len(failed)} sends were not acknowledged, first: {failed[0]}")

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[Header] | None = None,
        partition: int | None = None,
    ) -> None:
        try:
            future = self._producer.send(
                topic,
                value=value,
                key=key,
                headers=list(headers) if headers else None,
                partition=partition,
            )
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"send to {topic} failed: {exc}") from exc
        self._pending.append(future)
        if len(self._pending) >= PRUNE_EVERY:
            self._pending = [f for f in self._pending if not f.succeeded()]

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        partitions: Sequence[int] | None = None,
    ) -> None:
        parts = partitions if partitions is not None else [None] * len(values)
        for key, value, part in zip(keys, values, parts, strict=True):
            self.send(topic, key, value, partition=part)

    def unacked(self) -> None:
        return None  # only flush() tells, and it blocks

    def flush(self) -> None:
        try:
            self._producer.flush()
        except kafka.errors.KafkaError as exc:
            raise KafkaError(f"flush failed: {exc}") from exc
        self._check()

    def close(self) -> None:
        """Flush for up to 10 s (not at all for a producer given up), then close; by force
        if that flush fails. kafka-python's ``close(timeout)`` raises when its flush times
        out, before its own force-close, and its ``__del__`` then tried again (a traceback
        on stderr, seen in chaos runs' logs)."""
        try:
            self._producer.close(timeout=0 if self._wedged else 10)
        except kafka.errors.KafkaError as exc:
            log.warning("producer close: %s; closing it by force", exc)
            self._producer._sender.force_close()  # drops what it has not sent
            self._producer._closed = True  # what its close sets once done; __del__ checks it


def admin(config: KafkaConfig) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(**client_settings(config))
    except kafka.errors.KafkaError as exc:
        raise KafkaError(
            f"cannot reach Kafka at {config.bootstrap}: {exc}; is the broker up "
            "(statecast kafka up)?"
        ) from exc


def _with_admin(config: KafkaConfig, what: str, call: Callable[[KafkaAdminClient], T]) -> T:
    """Run ``call`` on a fresh admin client, retrying transient errors.

    A scorer that starts while the broker restarts or is slow (a timed-out request, a lost
    connection, no broker yet) should wait for it as its clients do, not exit: errors that
    Kafka marks retriable are retried with a fresh client for ``ADMIN_RETRY_S``; any other
    error, or one that outlasts the window, is raised as :class:`KafkaError`.
    """
    deadline = time.monotonic() + ADMIN_RETRY_S
    while True:
        try:
            client = admin(config)
            try:
                return call(client)
            finally:
                client.close()
        except (KafkaError, kafka.errors.KafkaError) as exc:
            cause = exc.__cause__ if isinstance(exc, KafkaError) else exc
            retriable = isinstance(cause, kafka.errors.KafkaError) and (
                cause.retriable or isinstance(cause, kafka.errors.KafkaConnectionError)
            )
            if not retriable or time.monotonic() > deadline:
                if isinstance(exc, KafkaError):
                    raise
                raise KafkaError(f"cannot {what}: {exc}") from exc
            log.warning("cannot %s yet (%s); retrying", what, exc)
            time.sleep(ADMIN_RETRY_PAUSE_S)


def ensure_topic(
    config: KafkaConfig, name: str, partitions: int = 1, topic_config: dict[str, str] | None = None
) -> bool:
    """Create ``name`` if it does not exist, and return once the broker's metadata shows it
    (at most ``request_timeout_s``). Returns True if it was created.

    The controller accepts a new topic before the broker's metadata has it (~40 ms
    usually, 1.1 s for the first one after a start, measured): a client asking for it
    meanwhile is told it does not exist, and kafka-python logs an ERROR at every retry."""

    def create(client: KafkaAdminClient) -> bool:
        if name in client.list_topics():
            return False
        try:
            client.create_topics([NewTopic(name, partitions, 1, topic_configs=topic_config or {})])
            created = True
        except kafka.errors.TopicAlreadyExistsError:
            created = False  # created meanwhile, by another member or by a retried request
        deadline = time.monotonic() + config.request_timeout_s
        while name not in client.list_topics() and time.monotonic() < deadline:
            time.sleep(0.05)
        return created

    return _with_admin(config, f"create topic {name}", create)


def delete_topics(config: KafkaConfig, names: list[str]) -> None:
    """Delete topics (e.g. a benchmark's, to free the broker's disk); missing ones are fine."""

    def delete(client: KafkaAdminClient) -> None:
        existing = set(client.list_topics())
        if gone := [n for n in names if n in existing]:
            client.delete_topics(gone)

    _with_admin(config, f"delete topics {names}", delete)


def partitions_for(config: KafkaConfig, topic: str) -> int:
    """Number of partitions of an existing topic (0 if it does not exist)."""
    meta = _with_admin(config, f"describe topic {topic}", lambda c: c.describe_topics([topic]))
    if not meta or meta[0].get("error_code", 0) != 0:
        return 0
    return len(meta[0]["partitions"])


def _high_watermarks(
    config: KafkaConfig, parts: list[KTP], stable: dict[KTP, int], topic: str
) -> dict[KTP, int]:
    """The end offsets of ``parts`` as a read_uncommitted client sees them (a
    read_committed one is told the last stable offsets, ``stable``)."""
    probe = kafka.KafkaConsumer(enable_auto_commit=False, **client_settings(config))
    try:
        highs: dict[KTP, int] = probe.end_offsets(parts)
    finally:
        probe.close()
    for tp in parts:
        if highs[tp] > stable[tp]:
            warn_open_transaction(log, topic, tp.partition, highs[tp], stable[tp])
    return highs


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
    (or from ``start[p]``) to their end as of the call. ``read_committed``: to the high
    watermark, though only committed records are read: a transaction still open there, or
    committed with its markers not yet written, is waited for (``warn_open_transaction``
    says why). No partitions: nothing (kafka-python's seek_to_beginning of none raises)."""
    wanted = sorted(set(partitions))
    if not wanted:
        return
    try:
        consumer = kafka.KafkaConsumer(
            enable_auto_commit=False,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            max_partition_fetch_bytes=max_message_bytes,
            fetch_max_bytes=64 * 1024 * 1024,
            **client_settings(config),
        )
        parts = [KTP(topic, p) for p in wanted]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        begins = consumer.beginning_offsets(parts)
        for tp in parts:
            if start and tp.partition in start:
                # A start the log no longer has: from its beginning (more, never less).
                consumer.seek(tp, max(start[tp.partition], begins[tp]))
        ends = consumer.end_offsets(parts)
        if read_committed:
            ends = _high_watermarks(config, parts, ends, topic)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise KafkaError(f"reading {topic} to its end took longer than {timeout_s:.0f}s")
            for tp, recs in consumer.poll(timeout_ms=500, max_records=10000).items():
                for r in recs:
                    yield tp.partition, r.offset, r.key, r.value
        consumer.close()
    except kafka.errors.KafkaError as exc:
        raise KafkaError(f"cannot read {topic}: {exc}") from exc
