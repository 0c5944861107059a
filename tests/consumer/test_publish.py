"""The publishers: exactly-once never publishes for a partition it gave up, and a record the
broker will never accept fails at once instead of being retried forever."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from consumer.backends.base import RecordRejected
from consumer.backends.local import LocalSource
from consumer.messages import Message, Partition
from consumer.publish import Abandoned, AckedPublisher, Record, TransactionalPublisher
from tests.consumer.fakes import EVENTS, GROUP, KAFKA_MAX_REQUEST_BYTES, LimitedSink, broker_with

P0 = Partition(EVENTS, 0)


class _Producer:
    """Records what a transactional KafkaProducer was asked to do."""

    def __init__(self) -> None:
        self.config = {"max_request_size": KAFKA_MAX_REQUEST_BYTES}
        self.sent: list[bytes] = []
        self.offsets: list[dict[Any, Any]] = []

    def init_transactions(self) -> None: ...
    def begin_transaction(self) -> None: ...
    def commit_transaction(self) -> None: ...
    def abort_transaction(self) -> None: ...

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append(value)

    def send_offsets_to_transaction(self, offsets: dict[Any, Any], metadata: Any) -> None:
        self.offsets.append(offsets)


def _message(offset: int) -> Message:
    return Message(P0, offset, None, b"{}")


def _verdict(name: bytes) -> list[Record]:
    return [Record("verdicts", b"video", name)]


def test_work_abandoned_on_a_revoke_is_not_published_when_the_partition_returns() -> None:
    """Offset 5 is revoked while its event runs; the partition comes back and a later
    transaction must not carry the stale verdict (the other member already published it)."""
    producer = _Producer()
    publisher = TransactionalPublisher(producer, lambda: None)
    stale_epoch = publisher.epoch(P0)  # taken at submit, before the revoke
    publisher.forget({P0})
    with pytest.raises(Abandoned):
        publisher.publish(_message(5), _verdict(b"stale"), stale_epoch)
    current = publisher.epoch(P0)  # the partition is back: offsets 7.. are ours
    publisher.publish(_message(7), _verdict(b"fresh"), current)
    publisher.commit({P0: 8})
    assert producer.sent == [b"fresh"]


def test_a_revoked_partition_that_never_returns_holds_nothing() -> None:
    publisher = TransactionalPublisher(_Producer(), lambda: None)
    epoch = publisher.epoch(P0)
    publisher.forget({P0})
    for offset in range(100):
        with pytest.raises(Abandoned):
            publisher.publish(_message(offset), _verdict(b"late"), epoch)
    assert publisher._held == {}


def test_exactly_once_refuses_an_oversized_record_before_the_transaction() -> None:
    """kafka-python's `send` raises for it, which would abort every later transaction."""
    producer = _Producer()
    publisher = TransactionalPublisher(producer, lambda: None)
    with pytest.raises(RecordRejected, match="max_request_size"):
        publisher.publish(_message(0), _verdict(b"x" * KAFKA_MAX_REQUEST_BYTES), 0)
    publisher.publish(_message(1), _verdict(b"fits"), 0)
    publisher.commit({P0: 2})
    assert producer.sent == [b"fits"]


def test_at_least_once_fails_at_once_on_a_record_the_broker_refuses() -> None:
    broker = broker_with()
    source = LocalSource(broker, EVENTS, GROUP)
    publisher = AckedPublisher(LimitedSink(broker), source, lambda attempt: 0.01)
    with ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(
            publisher.publish, _message(0), _verdict(b"x" * KAFKA_MAX_REQUEST_BYTES), 0
        )
        try:
            with pytest.raises(RecordRejected):
                attempt.result(timeout=5)
        finally:
            publisher.abandon()  # before the fix: retried until shutdown
