"""The run loop: poll -> submit -> commit finished offsets, with backpressure and clean shutdown.

- Backpressure: at most `max_in_flight` events in the pipeline; when full, every assigned
  partition is paused and the loop keeps polling (so the member stays in the group and never
  exceeds ``max_poll_interval_ms``), resuming when there is room again.
- Commit after produce: an offset becomes committable only when its pipeline future succeeded
  (verdict or dead letter acknowledged); `OffsetTracker` commits the highest contiguous one.
- Rebalance: on revoke, what is finished is committed (without blocking the IO loop; not in the
  exactly-once mode, whose commits are transactions) and the partitions' in-flight work is
  abandoned (its outcome is recorded in Redis, so the new owner re-publishes instead of
  recomputing); on lost partitions nothing is committed.
- Shutdown (`stop()`, SIGTERM): no new records; in-flight work drains for up to
  `drain_timeout_s` (work abandoned on a revoke included), what finished is committed, what did
  not is abandoned without publishing anything, the source is closed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from concurrent.futures import Future

from consumer.backends.base import Source
from consumer.messages import Message, Partition
from consumer.metrics import Metrics
from consumer.offsets import OffsetTracker
from consumer.pipeline import Pipeline
from consumer.publish import Abandoned, Publisher

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.1
LAG_INTERVAL_S = 5.0


class Processor:
    def __init__(
        self,
        source: Source,
        pipeline: Pipeline,
        publisher: Publisher,
        metrics: Metrics,
        *,
        max_in_flight: int,
        commit_interval_ms: int,
        drain_timeout_s: float,
        exit_when_idle: bool = False,
    ) -> None:
        self._source, self._pipeline, self._metrics = source, pipeline, metrics
        self._publisher = publisher
        self._max_in_flight = max_in_flight
        self._commit_interval_s = commit_interval_ms / 1000.0
        self._drain_timeout_s = drain_timeout_s
        self._exit_when_idle = exit_when_idle
        self._offsets = OffsetTracker()
        self._paused: set[Partition] = set()
        self._stop = threading.Event()
        self._last_commit = 0.0
        self._last_lag = 0.0
        self.last_loop = time.monotonic()
        self.assigned: set[Partition] = set()

    # Control ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain and exit (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> None:
        self._source.subscribe(self._on_assign, self._on_revoke, self._on_lost)
        try:
            while not self._stop.is_set():
                self._step()
                if self._exit_when_idle and self._idle():
                    log.info("input exhausted and all events finished")
                    break
        finally:
            self._drain()

    # One iteration ---------------------------------------------------------------------------

    def _step(self) -> None:
        self.last_loop = time.monotonic()
        room = self._max_in_flight - self._offsets.in_flight()
        self._apply_backpressure(room)
        messages = self._source.poll(POLL_TIMEOUT_S, max(room, 1) if room > 0 else 1)
        for message in messages:
            self._submit(message)
        self._metrics.in_flight.set(self._offsets.in_flight())
        self._maybe_commit()
        self._maybe_report_lag()

    def _submit(self, message: Message) -> None:
        self._offsets.track(message.partition, message.offset)
        future = self._pipeline.submit(message)
        future.add_done_callback(functools.partial(self._finished, message))

    def _finished(self, message: Message, future: Future[None]) -> None:
        error = future.exception() if not future.cancelled() else None
        if future.cancelled() or error is not None:
            # Not acknowledged: leave the offset uncommitted so the event is redelivered.
            (log.info if isinstance(error, Abandoned) else log.error)(
                "event at %s@%d not finished: %s",
                message.partition,
                message.offset,
                error,
                extra={"partition": str(message.partition), "offset": message.offset},
            )
            return
        self._offsets.finish(message.partition, message.offset)

    def _apply_backpressure(self, room: int) -> None:
        assigned = self._source.assignment()
        if room <= 0:
            newly = assigned - self._paused
            if newly:
                self._source.pause(newly)
                self._paused |= newly
        elif self._paused:
            self._source.resume(self._paused & assigned)
            self._paused.clear()
        self._metrics.paused.set(len(self._paused))

    def _maybe_commit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self._commit_interval_s:
            return
        self._last_commit = now
        offsets = self._offsets.committable()
        if not offsets:
            return
        try:
            self._publisher.commit(offsets)
        except Exception as error:  # retried at the next interval; offsets stay uncommitted
            log.warning("offset commit failed: %s", error)
            return
        self._offsets.committed(offsets)
        self._metrics.commits.inc()

    def _maybe_report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_INTERVAL_S:
            return
        self._last_lag = now
        for partition, lag in self._source.lag().items():
            self._metrics.lag.labels(partition=str(partition)).set(lag)

    def _idle(self) -> bool:
        return self._offsets.in_flight() == 0 and self._source.exhausted()

    def _drain(self) -> None:
        deadline = time.monotonic() + self._drain_timeout_s
        self._source.pause(self._source.assignment())
        while self._offsets.in_flight() and time.monotonic() < deadline:
            self._source.poll(POLL_TIMEOUT_S, 1)  # keep the membership alive while draining
            self._maybe_commit()
        left = self._offsets.in_flight()
        if left:
            log.warning("drain timeout: abandoning %d in-flight event(s)", left)
        self._maybe_commit(force=True)
        self._pipeline.close(timeout_s=max(0.0, deadline - time.monotonic()))
        self._source.close()

    # Rebalance callbacks (run inside poll) ---------------------------------------------------

    def _on_assign(self, partitions: set[Partition]) -> None:
        log.info("assigned %s", sorted(str(p) for p in partitions))
        self.assigned |= partitions

    def _on_revoke(self, partitions: set[Partition]) -> None:
        log.info("revoked %s", sorted(str(p) for p in partitions))
        offsets = {p: o for p, o in self._offsets.committable().items() if p in partitions}
        if offsets and self._publisher.commit_on_revoke:
            commit_async = getattr(self._source, "commit_async", None)
            (commit_async or self._source.commit)(offsets)
        self._forget(partitions)

    def _on_lost(self, partitions: set[Partition]) -> None:
        log.warning("lost %s: nothing committed for them", sorted(str(p) for p in partitions))
        self._forget(partitions)

    def _forget(self, partitions: set[Partition]) -> None:
        self._offsets.forget(partitions)
        self._publisher.forget(partitions)
        self._paused -= partitions
        self.assigned -= partitions
        for partition in partitions:  # a lag series of a partition this member no longer reads
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(str(partition))
