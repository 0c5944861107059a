"""How an event's outcome reaches the output topics, and how its input offset is committed.

Two policies, chosen by ``FAME_EXACTLY_ONCE``:

- `AckedPublisher` (default, at-least-once): each record is produced by the idempotent producer
  and waited for (acks=all) before the event counts as finished; offsets are committed to the
  group afterwards. A crash between the two re-delivers the event; its verdict is re-published
  (byte-identical, from the processed-event record in Redis).
- `TransactionalPublisher` (exactly-once): records are held until the run loop commits; the
  commit is one Kafka transaction holding the records of every finished event below the commit
  position plus the consumer offsets (`send_offsets_to_transaction`). Subscribers reading with
  ``isolation.level=read_committed`` see each verdict once. Costs a transaction round trip per
  commit interval and delays verdict visibility by up to ``FAME_COMMIT_INTERVAL_MS``.

A record the broker will never accept (too large, invalid topic, not authorised) raises
`RecordRejected` from `publish` in both policies, so the pipeline dead-letters the event instead
of retrying it forever.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumer.backends.base import RecordRejected, Sink, Source
from consumer.messages import Message, Partition

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """This member will not publish the event's outcome (its partition was revoked, or shutdown
    passed its grace period): the offset stays uncommitted and the next owner processes it."""


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes


class Publisher(ABC):
    """Thread-safe `publish` (event workers); `epoch`, `commit` and `forget` from the run loop
    only."""

    commit_on_revoke: bool = True

    def epoch(self, partition: Partition) -> int:
        """The partition's ownership epoch: taken when an event is submitted and handed back to
        `publish`, so that work abandoned on a revoke cannot publish for a later owner."""
        return 0

    @abstractmethod
    def publish(self, message: Message, records: list[Record], epoch: int) -> None:
        """Make the event's outcome durable under this policy; returns when the event may count
        as finished. May block (broker backpressure); never drops a record silently: raises
        `RecordRejected` for a record the broker will never take, `Abandoned` when `epoch` is
        no longer the partition's."""

    @abstractmethod
    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit input positions (next offset to read) for events already published."""

    @abstractmethod
    def forget(self, partitions: set[Partition]) -> None:
        """Partitions were revoked or lost: drop anything held for them."""

    @abstractmethod
    def abandon(self) -> None:
        """Shutdown past its grace period: blocked `publish` calls may give up (and raise)."""

    @abstractmethod
    def close(self) -> None:
        """Release the producer."""


class AckedPublisher(Publisher):
    def __init__(self, sink: Sink, source: Source, backoff_s: Callable[[int], float]) -> None:
        self._sink, self._source, self._backoff_s = sink, source, backoff_s
        self._stopping = threading.Event()

    def publish(self, message: Message, records: list[Record], epoch: int) -> None:
        """Records of a revoked partition are still produced: harmless duplicates (same ids)."""
        for record in records:
            attempt = 1
            while True:
                try:
                    self._sink.produce(record.topic, record.key, record.value).result(timeout=120)
                    break
                except RecordRejected:
                    raise
                except Exception as error:  # retried until acknowledged: nothing is lost
                    if self._stopping.is_set():
                        raise
                    log.warning(
                        "produce to %s failed (attempt %d): %s", record.topic, attempt, error
                    )
                    self._stopping.wait(self._backoff_s(min(attempt, 8)))
                    attempt += 1

    def commit(self, offsets: dict[Partition, int]) -> None:
        self._source.commit(offsets)

    def forget(self, partitions: set[Partition]) -> None:
        """Nothing is held: records are produced before the event finishes."""

    def abandon(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._sink.close()


class TransactionalPublisher(Publisher):
    """Needs the Kafka transport: a transactional producer and the consumer's group metadata."""

    commit_on_revoke = False  # a transaction cannot run inside the rebalance callback

    def __init__(self, producer: Any, group_metadata: Callable[[], Any]) -> None:
        from kafka import TopicPartition
        from kafka.record.default_records import DefaultRecordBatchBuilder
        from kafka.structs import OffsetAndMetadata

        self._tp, self._offset_meta = TopicPartition, OffsetAndMetadata
        self._record_bytes = DefaultRecordBatchBuilder.estimate_size_in_bytes
        self._max_request_bytes = int(producer.config["max_request_size"])
        self._producer = producer
        self._group_metadata = group_metadata
        self._lock = threading.Lock()
        self._held: dict[Partition, dict[int, list[Record]]] = {}
        self._epochs: dict[Partition, int] = {}
        producer.init_transactions()

    def epoch(self, partition: Partition) -> int:
        with self._lock:
            return self._epochs.get(partition, 0)

    def publish(self, message: Message, records: list[Record], epoch: int) -> None:
        """Checks sizes now: a record `send` refuses would abort every later transaction."""
        for record in records:
            size = self._record_bytes(record.key, record.value, [])
            if size > self._max_request_bytes:
                raise RecordRejected(
                    f"{record.topic} will not accept a record of {size} bytes "
                    f"(max_request_size {self._max_request_bytes})"
                )
        with self._lock:
            if epoch != self._epochs.get(message.partition, 0):
                raise Abandoned(f"{message.partition} was revoked while the event ran")
            self._held.setdefault(message.partition, {})[message.offset] = records

    def commit(self, offsets: dict[Partition, int]) -> None:
        with self._lock:
            batch = {
                (partition, offset): records
                for partition, position in offsets.items()
                for offset, records in self._held.get(partition, {}).items()
                if offset < position
            }
        self._producer.begin_transaction()
        try:
            for records in batch.values():
                for record in records:
                    self._producer.send(record.topic, key=record.key, value=record.value)
            self._producer.send_offsets_to_transaction(
                {
                    self._tp(p.topic, p.index): self._offset_meta(offset, "", -1)
                    for p, offset in offsets.items()
                },
                self._group_metadata(),
            )
            self._producer.commit_transaction()
        except Exception:
            self._producer.abort_transaction()
            raise
        with self._lock:
            for partition, offset in batch:
                self._held.get(partition, {}).pop(offset, None)

    def forget(self, partitions: set[Partition]) -> None:
        """A new epoch: work still running for these partitions can no longer hold records."""
        with self._lock:
            for partition in partitions:
                self._held.pop(partition, None)
                self._epochs[partition] = self._epochs.get(partition, 0) + 1

    def abandon(self) -> None:
        """Nothing blocks: held records of unfinished transactions are simply not committed."""

    def close(self) -> None:
        self._producer.close()
