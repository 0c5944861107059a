"""`KafkaSink` against the real broker: what Kafka will never accept fails as `RecordRejected`
(dead-lettered by the pipeline), not as an error the publisher retries forever."""

from __future__ import annotations

import pytest

from consumer.backends.base import RecordRejected
from consumer.backends.kafka import KafkaSink
from consumer.settings import Settings
from tests.integration.service_support import Topics

pytestmark = pytest.mark.integration


def test_a_record_over_the_size_limit_is_rejected_and_the_sink_keeps_working(
    kafka_bootstrap: str,
) -> None:
    topics = Topics.fresh(kafka_bootstrap)
    sink = KafkaSink(Settings(kafka_bootstrap_servers=kafka_bootstrap))
    try:
        with pytest.raises(RecordRejected, match="will not accept"):
            sink.produce(topics.verdicts, b"video", b"x" * (1 << 20)).result(timeout=30)
        sink.produce(topics.verdicts, b"video", b"small").result(timeout=30)
    finally:
        sink.close()
