"""What happens to one event: parse -> dedupe -> front end -> windows + model -> verdict -> produce.

`Pipeline.submit` hands the event to a worker thread and returns a future that resolves only once
the event's outcome (verdict, or dead letter) is acknowledged by the broker: the run loop commits
the offset after that, never before. Failures follow the two exception families of `fame.errors`:
`TransientError` (and broker/Redis hiccups) are retried with capped exponential backoff, then
dead-lettered as ``retries_exhausted``; `PoisonError` is dead-lettered at once; anything else
that escapes is dead-lettered as ``internal_error`` (an event never stays in flight for good).
Once shutdown passes its grace period, failing events are abandoned instead: they publish nothing
(a `failed` verdict then would only say that this member stopped), and their offsets stay
uncommitted for the next owner. Segments of one video are processed in delivery order (each waits
for the previous one of the same video).
The worker threads mostly wait (front-end processes, the engine's model thread, the broker), so
the consumer's heartbeat thread is never starved of the GIL.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import pydantic

from consumer.backends.base import RecordRejected
from consumer.messages import Message
from consumer.metrics import Metrics
from consumer.publish import Abandoned, Publisher, Record
from consumer.store import SEGMENT_RECORD, WindowStore
from fame.attribution import ModelIdentity, build_verdict, fold_segment
from fame.errors import FameError
from fame.faces.frontend import FrontEndResult
from fame.inference import InferenceEngine
from schemas import AttributionVerdict, DeadLetter, DeadLetterSource, ErrorInfo, make_verdict_id
from schemas.dead_letter import Stage
from schemas.errors import ErrorCode
from schemas.event import VideoEvent
from schemas.verdict import REAL_LABEL

log = logging.getLogger(__name__)
T = TypeVar("T")

Analyze = Callable[[str, str | None], "Future[FrontEndResult]"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_ms: float = 200.0
    max_ms: float = 10_000.0

    def delay_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        return random.uniform(0, min(self.max_ms, self.base_ms * 2 ** (attempt - 1))) / 1000.0


@dataclass(frozen=True)
class Topics:
    verdicts: str
    dead_letters: str


class _Failure(Exception):
    """An event that ends in a dead letter: carries what the `DeadLetter` needs."""

    def __init__(self, code: ErrorCode, message: str, stage: Stage, attempts: int) -> None:
        super().__init__(message)
        self.code, self.message, self.stage, self.attempts = code, message, stage, attempts


class Pipeline:
    """Thread-safe `submit`; at most `max_in_flight` events run at once (the run loop enforces)."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        topics: Topics,
        store: WindowStore,
        analyze: Analyze,
        engine: InferenceEngine,
        model: ModelIdentity,
        metrics: Metrics,
        retry: RetryPolicy,
        window_stride: int,
        max_in_flight: int,
        max_verdict_tracks: int = 256,
    ) -> None:
        self._publisher, self._topics, self._store = publisher, topics, store
        self._analyze, self._engine, self._model = analyze, engine, model
        self._metrics, self._retry, self._stride = metrics, retry, window_stride
        self._max_tracks = max_verdict_tracks
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="fame-event")
        self._lock = threading.Lock()
        self._last_of_video: dict[str, Future[None]] = {}
        self._running: set[Future[None]] = set()
        self._stopping = threading.Event()

    def submit(self, message: Message) -> Future[None]:
        """Called from the run loop, which is also where partitions are forgotten: the epoch
        taken here is the one the event was delivered in."""
        received = time.monotonic()
        epoch = self._publisher.epoch(message.partition)
        try:
            event: VideoEvent | None = VideoEvent.model_validate_json(message.value)
        except pydantic.ValidationError as error:
            event = None
            failure = _parse_failure(error)
        with self._lock:
            if event is None:
                log.warning(
                    "record at %s@%d is not a valid event: %s (%s)",
                    message.partition,
                    message.offset,
                    failure.message[:500],
                    failure.code.value,
                )
                letter = self._dead_letter(message, None, failure)
                self._metrics.dead_letters.labels(code=failure.code.value).inc()
                self._metrics.events.labels(outcome="dead_letter").inc()
                future = self._executor.submit(self._publisher.publish, message, [letter], epoch)
            else:
                previous = self._last_of_video.get(event.video_id)
                future = self._executor.submit(self._run, message, event, previous, received, epoch)
                self._last_of_video[event.video_id] = future
            self._running.add(future)
        future.add_done_callback(functools.partial(self._forget, event.video_id if event else None))
        return future

    def close(self, timeout_s: float) -> None:
        """Let running events (also those of revoked partitions, which the run loop no longer
        counts) finish for up to `timeout_s`, then abandon the rest: retries stop, blocked
        publish calls give up, and they publish nothing. Never waits longer than that."""
        with self._lock:
            running = set(self._running)
        _, late = wait(running, timeout=timeout_s)
        if late:
            log.warning("shutdown: abandoning %d running event(s)", len(late))
            self._stopping.set()
            self._publisher.abandon()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # One event -------------------------------------------------------------------------------

    def _run(
        self,
        message: Message,
        event: VideoEvent,
        previous: Future[None] | None,
        received: float,
        epoch: int,
    ) -> None:
        if previous is not None:
            previous.exception()  # wait for the video's earlier segment, whatever its outcome
        logger = logging.LoggerAdapter(
            log,
            {
                "event_id": event.event_id,
                "video_id": event.video_id,
                "segment_index": event.segment_index,
            },
        )
        try:
            self._publish(message, self._outcome(message, event, logger), epoch)
        except Abandoned:
            raise
        except RecordRejected as error:  # the outcome can never be produced: say so instead
            logger.error("outcome rejected by the broker: %s", error.message)
            self._give_up(message, event, _Failure(error.code, error.message, "produce", 1), epoch)
        except Exception as error:
            if self._stopping.is_set():
                raise Abandoned(f"shutdown: {error}") from error
            logger.exception("event failed unexpectedly")
            failure = _Failure(ErrorCode.INTERNAL_ERROR, repr(error)[:4000], "internal", 1)
            self._give_up(message, event, failure, epoch)
        self._metrics.stage_seconds.labels(stage="total").observe(time.monotonic() - received)

    def _outcome(
        self, message: Message, event: VideoEvent, logger: logging.LoggerAdapter[logging.Logger]
    ) -> list[Record]:
        """The verdict (if any), or the failed verdict and the dead letter."""
        try:
            records = self._with_retries(lambda: self._process(event, logger))
        except _Failure as failure:
            if self._stopping.is_set():  # shutdown may be the cause: leave it to the next owner
                raise Abandoned(f"shutdown: {failure.message}") from failure
            logger.warning("event failed: %s (%s)", failure.message, failure.code.value)
            self._metrics.dead_letters.labels(code=failure.code.value).inc()
            self._metrics.events.labels(outcome="dead_letter").inc()
            return [
                *self._failed_verdict(event, failure),
                self._dead_letter(message, event, failure),
            ]
        self._metrics.events.labels(outcome="verdict").inc()
        return records

    def _give_up(self, message: Message, event: VideoEvent, failure: _Failure, epoch: int) -> None:
        """Only the dead letter: what went wrong may be the verdict itself. If even that cannot
        be published, the error escapes and the offset stays uncommitted."""
        self._metrics.dead_letters.labels(code=failure.code.value).inc()
        self._publish(message, [self._dead_letter(message, event, failure)], epoch)

    def _publish(self, message: Message, records: list[Record], epoch: int) -> None:
        started = time.perf_counter()
        self._publisher.publish(message, records, epoch)
        self._metrics.stage_seconds.labels(stage="produce").observe(time.perf_counter() - started)

    def _process(
        self, event: VideoEvent, logger: logging.LoggerAdapter[logging.Logger]
    ) -> list[Record]:
        """The records this event publishes (none for an intermediate segment)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        loaded = self._store.load(event.video_id, event.event_id)
        timings["redis"] = (time.perf_counter() - started) * 1000
        if loaded.record is not None:
            logger.info("event already processed: re-publishing its recorded outcome")
            self._metrics.events.labels(outcome="duplicate").inc()
            return (
                []
                if loaded.record == SEGMENT_RECORD
                else [self._verdict_record(event, loaded.record)]
            )
        result = self._analyze(event.source_uri, event.sha256).result()
        self._metrics.observe_frontend(result.detector, result.hardware_decoding)
        timings.update(result.timings_ms)
        state = loaded.state
        fold_segment(state, result, self._engine, self._stride, event.last_segment, timings)
        record = SEGMENT_RECORD
        if event.last_segment:
            timings["total"] = sum(timings.values())
            verdict = build_verdict(
                event.event_id, event.segment_index, state, self._model, timings
            )
            if len(verdict.tracks) > self._max_tracks:
                logger.warning(
                    "%d tracks: the verdict keeps the %d most relevant",
                    len(verdict.tracks),
                    self._max_tracks,
                )
                verdict = top_tracks(verdict, self._max_tracks)
            record = verdict.model_dump_json().encode()
        started = time.perf_counter()
        stored = self._store.commit_segment(state, event.event_id, record, event.last_segment)
        self._metrics.stage_seconds.labels(stage="redis").observe(time.perf_counter() - started)
        for stage, ms in timings.items():
            self._metrics.stage_seconds.labels(stage=stage).observe(ms / 1000)
        if not event.last_segment:
            logger.info("segment folded into %d track(s)", len(state.tracks))
            return []
        published = AttributionVerdict.model_validate_json(stored)
        self._metrics.verdicts.labels(status=published.status, label=published.label or "").inc()
        logger.info(
            "verdict %s: %s %s", published.verdict_id, published.status, published.label or ""
        )
        return [self._verdict_record(event, stored)]

    def _verdict_record(self, event: VideoEvent, value: bytes) -> Record:
        return Record(self._topics.verdicts, event.video_id.encode(), value)

    def _with_retries(self, action: Callable[[], T]) -> T:
        """Runs ``action`` until it succeeds, fails for good, or runs out of attempts; a failure
        names the stage of the last error (a store or broker error is ``internal``)."""
        attempt = 1
        while True:
            try:
                return action()
            except FameError as error:
                if not error.transient:
                    raise _Failure(error.code, error.message, _stage_of(error), attempt) from error
                last: Exception = error
            except _Failure:
                raise
            except pydantic.ValidationError as error:  # a record we built is wrong: a bug,
                # and the same input builds it again, so retrying only delays the dead letter
                message = str(error)[:4000]
                raise _Failure(ErrorCode.INTERNAL_ERROR, message, "internal", attempt) from error
            except Exception as error:  # broker or store hiccup: retried like a transient error
                last = error
            if self._stopping.is_set():
                raise Abandoned(f"shutdown during retries: {last}") from last
            if attempt >= self._retry.max_attempts:
                raise _Failure(
                    ErrorCode.RETRIES_EXHAUSTED,
                    f"gave up after {attempt} attempts: {last}",
                    _stage_of(last) if isinstance(last, FameError) else "internal",
                    attempt,
                ) from last
            log.info("transient failure (attempt %d): %s", attempt, last)
            self._stopping.wait(self._retry.delay_s(attempt))  # shutdown cuts the wait short
            attempt += 1

    # Outcomes --------------------------------------------------------------------------------

    def _failed_verdict(self, event: VideoEvent, failure: _Failure) -> list[Record]:
        """A `failed` verdict tells moderation the final state of a video we could not judge."""
        if not event.last_segment:
            return []
        verdict = AttributionVerdict(
            verdict_id=make_verdict_id(event.event_id, self._model.version),
            event_id=event.event_id,
            video_id=event.video_id,
            segment_index=event.segment_index,
            status="failed",
            model=self._model.info(),
            error=ErrorInfo(code=failure.code, message=failure.message[:4096]),
            produced_at=datetime.now(UTC),
        )
        self._metrics.verdicts.labels(status="failed", label="").inc()
        return [self._verdict_record(event, verdict.model_dump_json().encode())]

    def _dead_letter(self, message: Message, event: VideoEvent | None, failure: _Failure) -> Record:
        letter = DeadLetter.from_payload(
            message.value,
            error_code=failure.code,
            message=failure.message,
            stage=failure.stage,
            attempts=failure.attempts,
            event_id=event.event_id if event else None,
            video_id=event.video_id if event else None,
            source=DeadLetterSource(
                topic=message.partition.topic,
                partition=message.partition.index,
                offset=message.offset,
            ),
        )
        return Record(self._topics.dead_letters, message.key, letter.model_dump_json().encode())

    def _forget(self, video_id: str | None, future: Future[None]) -> None:
        with self._lock:
            self._running.discard(future)
            if video_id is not None and self._last_of_video.get(video_id) is future:
                del self._last_of_video[video_id]


def top_tracks(verdict: AttributionVerdict, limit: int) -> AttributionVerdict:
    """Keeps the `limit` tracks most likely manipulated (then the longest), in track order, so
    that a crowded video's verdict still fits a Kafka record; the video-level decision stays the
    one made over every track."""
    ranked = sorted(verdict.tracks, key=lambda t: (t.probabilities.get(REAL_LABEL, 0.0), -t.frames))
    kept = sorted(ranked[:limit], key=lambda t: t.track_id)
    return verdict.model_copy(update={"tracks": kept})


def _parse_failure(error: pydantic.ValidationError) -> _Failure:
    kinds = {e["type"] for e in error.errors()}
    version_given = any(
        e["loc"][:1] == ("schema_version",) and e["type"] != "missing" for e in error.errors()
    )
    if "json_invalid" in kinds or "json_type" in kinds or "model_type" in kinds:
        code = ErrorCode.INVALID_JSON
    elif version_given:  # a producer on a contract version we do not speak
        code = ErrorCode.UNSUPPORTED_SCHEMA_VERSION
    else:
        code = ErrorCode.SCHEMA_VIOLATION
    return _Failure(code, str(error)[:4000], "validate", 1)


_STAGES: dict[str, Stage] = {
    "fetch": "fetch",
    "checksum": "fetch",
    "unsupported": "decode",
    "too": "decode",
    "corrupt": "decode",
    "decode": "decode",
    "no_video": "decode",
    "model": "infer",
}


def _stage_of(error: FameError) -> Stage:
    for prefix, stage in _STAGES.items():
        if error.code.value.startswith(prefix):
            return stage
    return "internal"
