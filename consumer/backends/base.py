"""The two transport interfaces the run loop depends on.

Threading contract: a `Source` is used from the run loop's thread only (kafka-python's consumer is
not thread-safe). A `Sink` is thread-safe: pipeline workers produce concurrently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future

from consumer.messages import Message, Partition
from fame.errors import PoisonError

AssignmentCallback = Callable[[set[Partition]], None]


class RecordRejected(PoisonError):
    """The broker will never take this record (too large, invalid topic, not authorised):
    retrying cannot help, so the event's outcome becomes a dead letter instead."""


class Source(ABC):
    """Where events come from (a consumer-group member)."""

    @abstractmethod
    def subscribe(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        """Join the group. Callbacks run inside `poll` and must not block: `on_revoke` may still
        commit (partitions handed over cleanly), `on_lost` must not (membership already gone)."""

    @abstractmethod
    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """Records from the non-paused assigned partitions, in offset order per partition.

        Must be called at least every ``max_poll_interval_ms`` even while everything is paused:
        that is how the member stays in the group under backpressure."""

    @abstractmethod
    def pause(self, partitions: set[Partition]) -> None:
        """Stop returning records of these partitions from `poll` (their position is kept)."""

    @abstractmethod
    def resume(self, partitions: set[Partition]) -> None:
        """Undo `pause`."""

    @abstractmethod
    def assignment(self) -> set[Partition]:
        """Partitions currently owned."""

    @abstractmethod
    def commit(self, offsets: dict[Partition, int]) -> None:
        """Commit synchronously: each value is the next offset to read. Raises on failure."""

    def lag(self) -> dict[Partition, int]:
        """Records behind the end of each assigned partition, as far as known without blocking."""
        return {}

    def exhausted(self) -> bool:
        """True when a finite source has handed out everything (Kafka never is)."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Leave the group; do not commit (the run loop commits before closing)."""


class Sink(ABC):
    """Where verdicts and dead letters go."""

    @abstractmethod
    def produce(self, topic: str, key: bytes | None, value: bytes) -> Future[None]:
        """Send one record; the future resolves once the broker has durably acknowledged it
        (acks=all) and fails with the broker's error otherwise: `RecordRejected` when no retry
        can ever succeed, anything else may be retried."""

    @abstractmethod
    def flush(self, timeout_s: float) -> None:
        """Wait for outstanding records."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release."""
