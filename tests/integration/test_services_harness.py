"""The local services are real: Kafka resumes after committed offsets, Redis expires keys."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration


def _consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )


def _take(consumer: KafkaConsumer, count: int, timeout_s: float = 30.0) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500, max_records=count - len(values)).values():
            values.extend(record.value for record in records)
    return values


def test_kafka_consumer_group_resumes_after_committed_offset(kafka_bootstrap: str) -> None:
    topic = f"harness-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = [f"record-{i}".encode() for i in range(10)]
    for value in sent:
        producer.send(topic, value)
    producer.flush()
    producer.close()

    group = f"harness-group-{uuid.uuid4().hex[:8]}"
    first = _consumer(kafka_bootstrap, group, topic)
    assert _take(first, 4) == sent[:4]
    first.commit()  # commits the position after the 4 records returned
    first.close()

    second = _consumer(kafka_bootstrap, group, topic)
    assert _take(second, 6) == sent[4:]
    second.close()


def test_redis_set_get_with_ttl(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"harness:{uuid.uuid4().hex}"
    client.set(key, b"value", px=300)
    assert client.get(key) == b"value"
    assert 0 < client.pttl(key) <= 300
    time.sleep(0.5)
    assert client.get(key) is None
