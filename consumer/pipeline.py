"""What happens to one event: parse -> dedupe -> front end -> windows + model -> verdict -> produce.

`Pipeline.submit` hands the event to a worker thread and returns a future that resolves only once
the event's outcome (verdict, or dead letter) is acknowledged by the broker: the run loop commits
the offset after that, never before. Failures follow the two exception families of `fame.errors`:
`TransientError` (and broker/Redis hiccups) are retried with capped exponential backoff, then
dead-lettered as ``retries_exhausted``; `PoisonError` is dead-lettered at once. Segments of one
video are processed in delivery order (each waits for the previous one of the same video).
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import pydantic

from consumer.messages import Message
from consumer.metrics import Metrics
from consumer.publish import Publisher, Record
from consumer.store import SEGMENT_RECORD, WindowStore
from fame.attribution import ModelIdentity, build_verdict, fold_segment
from fame.errors import FameError
from fame.faces.frontend import FrontEndResult
from fame.inference import InferenceEngine
from schemas import AttributionVerdict, DeadLetter, DeadLetterSource, ErrorInfo, make_verdict_id
from schemas.dead_letter import Stage
from schemas.errors import ErrorCode
from schemas.event import VideoEvent

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
    ) -> None:
        self._publisher, self._topics, self._store = publisher, topics, store
        self._analyze, self._engine, self._model = analyze, engine, model
        self._metrics, self._retry, self._stride = metrics, retry, window_stride
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="fame-event")
        self._lock = threading.Lock()
        self._last_of_video: dict[str, Future[None]] = {}
        self._stopping = threading.Event()

    def submit(self, message: Message) -> Future[None]:
        received = time.monotonic()
        try:
            event: VideoEvent | None = VideoEvent.model_validate_json(message.value)
        except pydantic.ValidationError as error:
            event = None
            failure = _parse_failure(error)
        if event is None:
            letter = self._dead_letter(message, None, failure)
            self._metrics.dead_letters.labels(code=failure.code.value).inc()
            self._metrics.events.labels(outcome="dead_letter").inc()
            return self._executor.submit(self._publisher.publish, message, [letter])
        with self._lock:
            previous = self._last_of_video.get(event.video_id)
            future = self._executor.submit(self._run, message, event, previous, received)
            self._last_of_video[event.video_id] = future
        future.add_done_callback(functools.partial(self._forget_video, event.video_id))
        return future

    def close(self, wait: bool = True) -> None:
        """Stop retrying (in-flight retries give up) and join the workers when `wait`."""
        if not wait:
            self._stopping.set()
            self._publisher.abandon()
        self._executor.shutdown(wait=wait, cancel_futures=not wait)

    # One event -------------------------------------------------------------------------------

    def _run(
        self, message: Message, event: VideoEvent, previous: Future[None] | None, received: float
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
            records = self._with_retries(lambda: self._process(event, logger))
            self._metrics.events.labels(outcome="verdict").inc()
        except _Failure as failure:
            logger.warning("event failed: %s (%s)", failure.message, failure.code.value)
            records = [
                *self._failed_verdict(event, failure),
                self._dead_letter(message, event, failure),
            ]
            self._metrics.dead_letters.labels(code=failure.code.value).inc()
            self._metrics.events.labels(outcome="dead_letter").inc()
        started = time.perf_counter()
        self._publisher.publish(message, records)
        self._metrics.stage_seconds.labels(stage="produce").observe(time.perf_counter() - started)
        self._metrics.stage_seconds.labels(stage="total").observe(time.monotonic() - received)

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
            except Exception as error:  # broker or store hiccup: retried like a transient error
                last = error
            if attempt >= self._retry.max_attempts or self._stopping.is_set():
                raise _Failure(
                    ErrorCode.RETRIES_EXHAUSTED,
                    f"gave up after {attempt} attempts: {last}",
                    _stage_of(last) if isinstance(last, FameError) else "internal",
                    attempt,
                ) from last
            log.info("transient failure (attempt %d): %s", attempt, last)
            time.sleep(self._retry.delay_s(attempt))
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

    def _forget_video(self, video_id: str, future: Future[None]) -> None:
        with self._lock:
            if self._last_of_video.get(video_id) is future:
                del self._last_of_video[video_id]


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
