"""An in-process broker with the same `Source`/`Sink` semantics as Kafka.

Used by the embedded default (`fame-consumer run --embedded`: events from a JSONL file, a folder
of videos or standard input as it comes; verdicts go to a `LineSink`, stdout or a JSONL file) and
by the contract tests. One consumer, all partitions assigned to it; commits are kept per group
like Kafka's, so a restarted source over the same broker resumes after the committed offset.
A record is kept until every group that committed on its partition has committed past it: a live
feed on standard input runs for as long as the uploads come, and its memory must not grow with
every event ever read.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO

from consumer.backends.base import AssignmentCallback, Sink, Source
from consumer.messages import Message, Partition


@dataclass
class LocalBroker:
    """Topics as append-only logs per partition, and committed offsets per group.

    A partition's log holds its records from offset ``_starts[partition]`` on; offsets stay
    absolute, as Kafka's do after retention deletes a segment."""

    partitions_per_topic: int = 1
    _logs: dict[Partition, list[Message]] = field(default_factory=dict)
    _starts: dict[Partition, int] = field(default_factory=dict)
    _commits: dict[tuple[str, Partition], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _committed: threading.Condition = field(init=False)
    _input_ended: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._committed = threading.Condition(self._lock)  # notified when records are dropped
        self._input_ended.set()  # a finite input is all appended before the service starts

    def expect_more(self) -> None:
        """Records will keep arriving (a live feed) until `end_of_input`."""
        self._input_ended.clear()

    def end_of_input(self) -> None:
        self._input_ended.set()

    @property
    def input_ended(self) -> bool:
        return self._input_ended.is_set()

    def append(self, topic: str, key: bytes | None, value: bytes) -> Message:
        index = zlib.crc32(key) % self.partitions_per_topic if key is not None else 0
        partition = Partition(topic, index)
        with self._lock:
            log = self._logs.setdefault(partition, [])
            message = Message(partition, self._starts.get(partition, 0) + len(log), key, value)
            log.append(message)
        return message

    def read(self, partition: Partition, offset: int, limit: int) -> list[Message]:
        """Up to `limit` records from `offset` on (from the first kept one, if it is later)."""
        with self._lock:
            first = max(0, offset - self._starts.get(partition, 0))
            return list(self._logs.get(partition, [])[first : first + limit])

    def partitions(self, topic: str) -> set[Partition]:
        return {Partition(topic, index) for index in range(self.partitions_per_topic)}

    def messages(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for p, log in sorted(self._logs.items()) if p.topic == topic for m in log]

    def commit(self, group: str, offsets: dict[Partition, int]) -> None:
        """Record the group's offsets, then drop the records every group has committed past."""
        with self._lock:
            for partition, offset in offsets.items():
                self._commits[(group, partition)] = offset
                kept_from = min(o for (_, p), o in self._commits.items() if p == partition)
                start = self._starts.get(partition, 0)
                if kept_from > start:
                    del self._logs.get(partition, [])[: kept_from - start]
                    self._starts[partition] = kept_from
                    self._committed.notify_all()

    def wait_for_room(self, topic: str, limit: int) -> None:
        """Block while the topic keeps `limit` or more records (not yet committed past): a live
        feed's backpressure."""
        with self._committed:
            while sum(len(log) for p, log in self._logs.items() if p.topic == topic) >= limit:
                self._committed.wait(timeout=1.0)

    def committed(self, group: str, partition: Partition) -> int:
        with self._lock:
            return self._commits.get((group, partition), 0)


class LocalSource(Source):
    """Reads one topic of a `LocalBroker` as the only member of `group`."""

    def __init__(self, broker: LocalBroker, topic: str, group: str) -> None:
        self._broker = broker
        self._topic = topic
        self._group = group
        self._positions: dict[Partition, int] = {}
        self._paused: set[Partition] = set()
        self._closed = False

    def subscribe(
        self,
        on_assign: AssignmentCallback,
        on_revoke: AssignmentCallback,
        on_lost: AssignmentCallback,
    ) -> None:
        assigned = self._broker.partitions(self._topic)
        self._positions = {p: self._broker.committed(self._group, p) for p in assigned}
        on_assign(set(assigned))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        records: list[Message] = []
        for partition in sorted(self._positions):
            if partition in self._paused or len(records) >= max_records:
                continue
            batch = self._broker.read(
                partition, self._positions[partition], max_records - len(records)
            )
            if batch:
                self._positions[partition] = batch[-1].offset + 1
                records.extend(batch)
        if not records and timeout_s > 0:
            threading.Event().wait(min(timeout_s, 0.05))
        return records

    def pause(self, partitions: set[Partition]) -> None:
        self._paused |= partitions & set(self._positions)

    def resume(self, partitions: set[Partition]) -> None:
        self._paused -= partitions

    def assignment(self) -> set[Partition]:
        return set(self._positions)

    def commit(self, offsets: dict[Partition, int]) -> None:
        if self._closed:
            raise RuntimeError("commit on a closed LocalSource")
        self._broker.commit(self._group, offsets)

    def lag(self) -> dict[Partition, int]:
        return {
            partition: len(self._broker.read(partition, position, 1 << 30))
            for partition, position in self._positions.items()
        }

    def exhausted(self) -> bool:
        return self._broker.input_ended and all(
            not self._broker.read(partition, position, 1)
            for partition, position in self._positions.items()
        )

    def close(self) -> None:
        self._closed = True


class LocalSink(Sink):
    """Appends to a `LocalBroker` (the contract tests read the topics back)."""

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker

    def produce(self, topic: str, key: bytes | None, value: bytes) -> Future[None]:
        return _done(lambda: self._broker.append(topic, key, value))

    def flush(self, timeout_s: float) -> None:
        """Appends are done when `produce` returns."""

    def close(self) -> None:
        """Nothing to release."""


class LineSink(Sink):
    """Writes each record's value as one line to a text stream, flushed before its future
    resolves: the embedded CLI's output (verdicts and dead letters, one JSON object a line).
    It keeps nothing, so a long-running embedded service does not grow with its output."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def produce(self, topic: str, key: bytes | None, value: bytes) -> Future[None]:
        return _done(lambda: self._write(value))

    def _write(self, value: bytes) -> None:
        with self._lock:
            self._stream.write(value.decode("utf-8", errors="replace") + "\n")
            self._stream.flush()

    def flush(self, timeout_s: float) -> None:
        with self._lock:
            self._stream.flush()

    def close(self) -> None:
        self.flush(0)


def _done(write: Callable[[], object]) -> Future[None]:
    """A future already resolved by `write`: its error is delivered through it, like Kafka's."""
    future: Future[None] = Future()
    try:
        write()
    except Exception as error:
        future.set_exception(error)
    else:
        future.set_result(None)
    return future
