"""Kafka transport on kafka-python 3.x.

The consumer never auto-commits: the run loop commits the highest contiguous finished offset
after the verdict or dead letter is acknowledged. The producer is idempotent with acks=all, so a
retried send cannot duplicate or reorder a record. kafka-python runs heartbeats and rebalance
callbacks on one IO loop: callbacks here only record what happened and return.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import Future
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    AuthorizationError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from kafka.structs import OffsetAndMetadata

from consumer.backends.base import AssignmentCallback, RecordRejected, Sink, Source
from consumer.messages import Message, Partition
from consumer.settings import Settings

log = logging.getLogger(__name__)

# Errors no retry of the same record can fix (kafka-python raises the size one from `send`).
NEVER_ACCEPTED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    AuthorizationError,
)


def _to_partitions(tps: Any) -> set[Partition]:
    return {Partition(tp.topic, tp.partition) for tp in tps}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._on_assign(_to_partitions(assigned))

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._on_revoke(_to_partitions(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        self._on_lost(_to_partitions(lost))


class KafkaSource(Source):
    """A consumer-group member on `settings.events_topic`."""

    def __init__(self, settings: Settings, client_id: str = "fame-consumer") -> None:
        self._topic = settings.events_topic
        self._consumer = KafkaConsumer(
            group_id=settings.group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 5),
            **settings.kafka_client_options(),
        )

    def subscribe(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        self._consumer.subscribe([self._topic], listener=_Listener(on_assign, on_revoke, on_lost))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        batches = self._consumer.poll(
            timeout_ms=int(timeout_s * 1000), max_records=max_records, update_offsets=True
        )
        messages: list[Message] = []
        for tp, records in batches.items():
            partition = Partition(tp.topic, tp.partition)
            messages.extend(
                Message(partition, r.offset, r.key, r.value or b"", r.timestamp) for r in records
            )
        return messages

    def pause(self, partitions: set[Partition]) -> None:
        if partitions:
            self._consumer.pause(*(TopicPartition(p.topic, p.index) for p in partitions))

    def resume(self, partitions: set[Partition]) -> None:
        if partitions:
            self._consumer.resume(*(TopicPartition(p.topic, p.index) for p in partitions))

    def assignment(self) -> set[Partition]:
        return _to_partitions(self._consumer.assignment())

    def lag(self) -> dict[Partition, int]:
        lags: dict[Partition, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)  # from the last fetch: no request
            if highwater is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is None:
                continue
            lags[Partition(tp.topic, tp.partition)] = max(0, highwater - position)
        return lags

    def commit(self, offsets: dict[Partition, int]) -> None:
        if offsets:
            self._consumer.commit(
                {
                    TopicPartition(p.topic, p.index): OffsetAndMetadata(offset, "", -1)
                    for p, offset in offsets.items()
                }
            )

    def commit_async(self, offsets: dict[Partition, int]) -> None:
        """Non-blocking commit, safe inside rebalance callbacks (they run on the IO loop)."""
        if offsets:
            self._consumer.commit_async(
                {
                    TopicPartition(p.topic, p.index): OffsetAndMetadata(offset, "", -1)
                    for p, offset in offsets.items()
                }
            )

    def group_metadata(self) -> Any:
        """For `send_offsets_to_transaction` (fences zombie members, KIP-447)."""
        return self._consumer.group_metadata()

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaSink(Sink):
    """Idempotent producer (acks=all): a future resolves only after the broker has the record."""

    def __init__(self, settings: Settings, client_id: str = "fame-consumer") -> None:
        self._producer = KafkaProducer(
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            retries=2**31 - 1,
            delivery_timeout_ms=120_000,
            **settings.kafka_client_options(),
        )

    def produce(self, topic: str, key: bytes | None, value: bytes) -> Future[None]:
        result: Future[None] = Future()
        try:
            sent = self._producer.send(topic, key=key, value=value)
        except Exception as error:  # surfaced through the future like an async failure
            result.set_exception(_typed(error, topic))
            return result
        sent.add_callback(lambda _metadata: result.set_result(None))
        sent.add_errback(lambda error: result.set_exception(_typed(error, topic)))
        return result

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close()


def _typed(error: BaseException, topic: str) -> BaseException:
    """`RecordRejected` for what the broker will never accept; other errors stay retryable."""
    if not isinstance(error, NEVER_ACCEPTED):
        return error
    rejected = RecordRejected(f"{topic} will not accept the record: {error}")
    rejected.__cause__ = error
    return rejected


def transactional_producer(settings: Settings) -> KafkaProducer:
    """The exactly-once mode's producer: one stable transactional id per replica, so a restarted
    replica fences its predecessor's open transaction."""
    transactional_id = settings.transactional_id or f"{settings.group_id}-{socket.gethostname()}"
    return KafkaProducer(
        client_id="fame-consumer",
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        **settings.kafka_client_options(),
    )
