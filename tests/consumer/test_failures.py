"""Failure and shutdown paths of the pipeline and the run loop: nothing false is published, no
event stays in flight for good, shutdown never hangs, a crowded video still gets a verdict."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, wait
from types import SimpleNamespace
from typing import Any

import pytest

from consumer import pipeline as pipeline_module
from consumer.backends.local import LocalSource
from consumer.metrics import Metrics
from consumer.pipeline import RetryPolicy
from consumer.processor import Processor
from consumer.publish import AckedPublisher
from fame.errors import TransientError
from schemas import AttributionVerdict, SalientFrame, TrackResult, make_verdict_id
from tests.consumer.fakes import (
    CLASSES,
    DLQ,
    EVENTS,
    GROUP,
    INF,
    KAFKA_MAX_REQUEST_BYTES,
    MODEL,
    PARTITION,
    VERDICTS,
    LimitedSink,
    broker_with,
    failing,
    payload,
    pipeline,
    published,
)


class _Blocked:
    """A front end whose analysis hangs until the test (standing in for `Service.close`)
    fails it."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.analysis: Future[Any] = Future()

    def __call__(self, uri: str, sha256: str | None) -> Future[Any]:
        self.called.set()
        return self.analysis

    def pool_closed(self) -> None:
        self.analysis.set_exception(TransientError("front-end pool closed during the task"))


class _RevokingSource(LocalSource):
    """Revokes every partition at the next poll, as a rebalance would, and keeps them away."""

    revoke = False

    def subscribe(self, on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self._on_revoke = on_revoke
        super().subscribe(on_assign, on_revoke, on_lost)

    def poll(self, timeout_s: float, max_records: int) -> list[Any]:
        if self.revoke:
            self.revoke, revoked = False, self.assignment()
            self._positions.clear()
            self._on_revoke(revoked)
            return []
        return super().poll(timeout_s, max_records)


def _processor(source: LocalSource, pipe: Any, metrics: Metrics | None = None) -> Processor:
    return Processor(
        source,
        pipe,
        pipe._publisher,
        metrics or Metrics(),
        max_in_flight=4,
        commit_interval_ms=0,
        drain_timeout_s=0.3,
    )


def _run_in_thread(processor: Processor) -> threading.Thread:
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    return thread


def test_a_drain_timeout_abandons_the_event_without_a_false_failed_verdict() -> None:
    """The front-end pool closes under an event after the drain timed out: publishing its
    `failed` verdict would shadow the next owner's real one (same verdict id)."""
    broker = broker_with(payload(last_segment=True))
    source = LocalSource(broker, EVENTS, GROUP)
    front_end = _Blocked()
    pipe = pipeline(broker, source, front_end)
    processor = _processor(source, pipe)
    thread = _run_in_thread(processor)
    assert front_end.called.wait(10)
    processor.stop()
    thread.join(10)
    assert not thread.is_alive()
    front_end.pool_closed()  # what Service.close does next
    wait(pipe.futures, timeout=10)
    assert published(broker, VERDICTS) == [], "a failed verdict under the real one's id"
    assert published(broker, DLQ) == []
    assert all(f.done() and f.exception() is not None for f in pipe.futures), "acknowledged"
    assert broker.committed(GROUP, PARTITION) == 0, "the next owner processes it again"


def test_shutdown_is_bounded_with_work_left_from_a_revoked_partition() -> None:
    """The run loop no longer counts a revoked partition's events; shutdown must still not wait
    for them without a limit."""
    broker = broker_with(payload())
    source = _RevokingSource(broker, EVENTS, GROUP)
    front_end = _Blocked()
    metrics = Metrics()
    pipe = pipeline(broker, source, front_end)
    processor = _processor(source, pipe, metrics)
    thread = _run_in_thread(processor)
    try:
        assert front_end.called.wait(10)
        metrics.lag.labels(partition=str(PARTITION)).set(3)
        source.revoke = True
        deadline = time.monotonic() + 10
        while processor.assigned and time.monotonic() < deadline:
            time.sleep(0.01)
        processor.stop()
        thread.join(5)
        assert not thread.is_alive(), "shutdown waits for the revoked partition's event"
    finally:
        front_end.pool_closed()
        thread.join(10)
    lag = metrics.registry.get_sample_value("fame_consumer_lag", {"partition": str(PARTITION)})
    assert lag is None, "a revoked partition keeps its lag series"


def test_an_error_outside_the_retries_is_dead_lettered_not_left_in_flight() -> None:
    """FAME_RETRY_BASE_MS=inf (now refused by the settings) made the backoff wait raise
    OverflowError outside the retry loop's try: the offset stayed pending forever."""
    broker = broker_with(payload())
    source = LocalSource(broker, EVENTS, GROUP)
    pipe = pipeline(
        broker,
        source,
        failing(TransientError("fetch timed out")),
        retry=RetryPolicy(max_attempts=3, base_ms=INF, max_ms=INF),
    )
    source.subscribe(lambda _: None, lambda _: None, lambda _: None)
    (message,) = source.poll(0, 10)
    pipe.submit(message).result(timeout=10)  # finished: its offset can be committed
    (letter,) = published(broker, DLQ)
    assert (letter["error_code"], letter["stage"]) == ("internal_error", "internal")
    assert "OverflowError" in letter["message"]
    pipe.close(timeout_s=1)


def _crowded_verdict(event_id: str, tracks: int) -> AttributionVerdict:
    """`tracks` tracks whose chance of being real is scattered over 0..1."""
    results = []
    for i in range(tracks):
        real = round(((i * 7919) % tracks) / tracks, 6)
        results.append(
            TrackResult(
                track_id=i,
                first_frame=i,
                last_frame=i + 40,
                start_s=i / 8,
                end_s=(i + 40) / 8,
                frames=41,
                windows=5,
                label="real" if real > 0.5 else "faceswap",
                probabilities={
                    **dict.fromkeys(CLASSES[2:], round((1 - real) / 10, 6)),
                    "real": real,
                    "faceswap": round(0.6 * (1 - real), 6),
                },
                unknown_generator=False,
                salient_frames=[
                    SalientFrame(frame_index=i + k, timestamp_s=(i + k) / 8, weight=0.123456)
                    for k in range(5)
                ],
                mean_detection_score=0.876543,
            )
        )
    return AttributionVerdict(
        verdict_id=make_verdict_id(event_id, MODEL.version),
        event_id=event_id,
        video_id="crowd",
        segment_index=0,
        status="attributed",
        label="faceswap",
        confidence=0.7,
        probabilities={**dict.fromkeys(CLASSES, 0.0), "real": 0.3, "faceswap": 0.7},
        manipulated=True,
        tracks=results,
        model=MODEL.info(),
        produced_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
    )


def _crowded(monkeypatch: pytest.MonkeyPatch, tracks: int) -> None:
    """The front end and the model are replaced: the verdict has `tracks` tracks."""
    monkeypatch.setattr(pipeline_module, "fold_segment", lambda *args: None)
    monkeypatch.setattr(
        pipeline_module,
        "build_verdict",
        lambda event_id, *args: _crowded_verdict(event_id, tracks),
    )


def _analysed(uri: str, sha256: str | None) -> Future[Any]:
    done: Future[Any] = Future()
    done.set_result(SimpleNamespace(detector="fake", hardware_decoding=False, timings_ms={}))
    return done


def test_a_crowded_video_gets_a_verdict_with_its_most_relevant_tracks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,000 tracks make a verdict over Kafka's 1 MiB: it keeps the most likely manipulated
    ones (FAME_MAX_VERDICT_TRACKS) instead of being refused by the broker forever."""
    assert len(_crowded_verdict("e", 2000).model_dump_json()) > KAFKA_MAX_REQUEST_BYTES
    _crowded(monkeypatch, 2000)
    broker = broker_with(payload())
    source = LocalSource(broker, EVENTS, GROUP)
    source.subscribe(lambda _: None, lambda _: None, lambda _: None)
    pipe = pipeline(broker, source, _analysed, max_verdict_tracks=256)
    (message,) = source.poll(0, 10)
    pipe.submit(message).result(timeout=10)
    pipe.close(timeout_s=1)
    assert published(broker, DLQ) == []
    (verdict,) = published(broker, VERDICTS)
    AttributionVerdict.model_validate(verdict, strict=False)
    reals = sorted(t["probabilities"]["real"] for t in verdict["tracks"])
    assert len(reals) == 256 and reals[-1] < 256 / 2000, "the most likely manipulated are kept"
    ids = [t["track_id"] for t in verdict["tracks"]]
    assert ids == sorted(ids)
    assert verdict["label"] == "faceswap", "the video's decision is the one over every track"


def test_an_outcome_the_broker_refuses_is_dead_lettered_not_retried_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever still does not fit (a broker with a lower limit, say) ends in a dead letter, so
    the partition keeps committing."""
    _crowded(monkeypatch, 2000)
    broker = broker_with(payload())
    source = LocalSource(broker, EVENTS, GROUP)
    source.subscribe(lambda _: None, lambda _: None, lambda _: None)
    publisher = AckedPublisher(LimitedSink(broker), source, lambda attempt: 0.01)
    pipe = pipeline(broker, source, _analysed, publisher=publisher, max_verdict_tracks=5000)
    (message,) = source.poll(0, 10)
    pipe.submit(message).result(timeout=10)
    pipe.close(timeout_s=1)
    assert published(broker, VERDICTS) == []
    (letter,) = published(broker, DLQ)
    assert (letter["error_code"], letter["stage"]) == ("internal_error", "produce")


def test_a_verdict_that_fails_its_own_schema_is_dead_lettered_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug, not a hiccup: the same input builds the same invalid record, so no retries (they
    ended as retries_exhausted, which tells moderation to resubmit)."""
    calls: list[str] = []

    def invalid_verdict(event_id: str, *args: Any) -> AttributionVerdict:
        calls.append(event_id)
        return AttributionVerdict.model_validate({"event_id": event_id})

    monkeypatch.setattr(pipeline_module, "fold_segment", lambda *args: None)
    monkeypatch.setattr(pipeline_module, "build_verdict", invalid_verdict)
    broker = broker_with(payload())
    source = LocalSource(broker, EVENTS, GROUP)
    source.subscribe(lambda _: None, lambda _: None, lambda _: None)
    pipe = pipeline(broker, source, _analysed)
    (message,) = source.poll(0, 10)
    pipe.submit(message).result(timeout=10)
    pipe.close(timeout_s=1)
    (letter,) = published(broker, DLQ)
    assert (letter["error_code"], letter["stage"], letter["attempts"]) == (
        "internal_error",
        "internal",
        1,
    )
    assert len(calls) == 1
