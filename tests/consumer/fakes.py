"""A `Pipeline` over the in-process broker with a scripted front end and no model: fast tests of
the failure and shutdown paths, which never reach the engine."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from consumer.backends.base import RecordRejected
from consumer.backends.local import LocalBroker, LocalSink, LocalSource
from consumer.messages import Message, Partition
from consumer.metrics import Metrics
from consumer.pipeline import Analyze, Pipeline, RetryPolicy, Topics
from consumer.publish import AckedPublisher, Publisher
from consumer.store import MemoryWindowStore
from fame.attribution import ModelIdentity
from tests.consumer.service_support import event

EVENTS, VERDICTS, DLQ, GROUP = "events", "verdicts", "dlq", "group"
PARTITION = Partition(EVENTS, 0)
CLASSES = ("real", "faceswap", "lightweight", "iae", "dfaker", "dfl-h128")
MODEL = ModelIdentity("fame_tiny", "test-1", None, CLASSES, 0.5)
KAFKA_MAX_REQUEST_BYTES = 1_048_576  # kafka-python's default max_request_size


class LimitedSink(LocalSink):
    """Refuses records over Kafka's default size limit, as `KafkaSink` does."""

    def produce(self, topic: str, key: bytes | None, value: bytes) -> Future[None]:
        if len(value) + len(key or b"") > KAFKA_MAX_REQUEST_BYTES:
            refused: Future[None] = Future()
            refused.set_exception(RecordRejected(f"{len(value)} bytes is over the limit"))
            return refused
        return super().produce(topic, key, value)


class RecordingPipeline(Pipeline):
    """Keeps every future it hands out, so a test can wait for abandoned work too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.futures: list[Future[None]] = []

    def submit(self, message: Message) -> Future[None]:
        future = super().submit(message)
        self.futures.append(future)
        return future


def payload(**fields: Any) -> bytes:
    return json.dumps(event(Path("/videos/clip.mp4"), **fields)).encode()


def broker_with(*payloads: bytes) -> LocalBroker:
    broker = LocalBroker()
    for value in payloads:
        broker.append(EVENTS, None, value)
    return broker


def failing(error: Exception) -> Analyze:
    def analyze(uri: str, sha256: str | None) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(error)
        return future

    return analyze


def pipeline(
    broker: LocalBroker,
    source: LocalSource,
    analyze: Analyze,
    *,
    retry: RetryPolicy | None = None,
    publisher: Publisher | None = None,
    **extra: Any,
) -> RecordingPipeline:
    backoff: Callable[[int], float] = lambda attempt: 0.01  # noqa: E731
    return RecordingPipeline(
        publisher=publisher or AckedPublisher(LimitedSink(broker), source, backoff),
        topics=Topics(VERDICTS, DLQ),
        store=MemoryWindowStore(ttl_s=3600),
        analyze=analyze,
        engine=None,
        model=MODEL,
        metrics=Metrics(),
        retry=retry or RetryPolicy(max_attempts=2, base_ms=1, max_ms=5),
        window_stride=4,
        max_in_flight=4,
        **extra,
    )


def published(broker: LocalBroker, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in broker.messages(topic)]


INF = math.inf
