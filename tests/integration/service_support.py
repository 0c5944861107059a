"""Run `fame-consumer run` as real processes against the local Kafka and Redis."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.conftest import REPO_ROOT

CONSUMER = [sys.executable, "-m", "consumer.cli", "run"]


@dataclass
class Topics:
    events: str
    verdicts: str
    dlq: str
    group: str

    @classmethod
    def fresh(cls, bootstrap: str, partitions: int = 1) -> Topics:
        tag = uuid.uuid4().hex[:10]
        topics = cls(f"ev-{tag}", f"verdicts-{tag}", f"dlq-{tag}", f"group-{tag}")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics(
            [
                NewTopic(topics.events, num_partitions=partitions, replication_factor=1),
                NewTopic(topics.verdicts, num_partitions=1, replication_factor=1),
                NewTopic(topics.dlq, num_partitions=1, replication_factor=1),
            ]
        )
        admin.close()
        return topics


@dataclass
class ConsumerProcess:
    """One `fame-consumer run` process; its JSON log lines are kept in a file."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> ConsumerProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            CONSUMER, env=self.env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def wait_for_log(self, pattern: str, timeout_s: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_path.read_text(errors="replace"))
            if match:
                return match
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"consumer exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not logged: {self.log_path.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 90) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout=timeout_s)
        self._log.close()
        return code


def consumer_env(
    bootstrap: str,
    redis_url: str,
    topics: Topics,
    checkpoint: Path,
    detector: Path,
    roots: list[Path],
    **extra: str,
) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FAME_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FAME_REDIS_URL": redis_url,
        "FAME_EVENTS_TOPIC": topics.events,
        "FAME_VERDICTS_TOPIC": topics.verdicts,
        "FAME_DLQ_TOPIC": topics.dlq,
        "FAME_GROUP_ID": topics.group,
        "FAME_CHECKPOINT": str(checkpoint),
        "FAME_DETECTOR_MODEL": str(detector),
        "FAME_FILE_ROOTS": json.dumps([str(r) for r in roots]),
        "FAME_WORKERS": "1",
        "FAME_WINDOW_STRIDE": "4",
        "FAME_HTTP_PORT": "0",
        "FAME_HTTP_HOST": "127.0.0.1",
        "FAME_COMMIT_INTERVAL_MS": "200",
        "FAME_SESSION_TIMEOUT_MS": "10000",
        "FAME_RETRY_BASE_MS": "100",
        "FAME_RETRY_MAX_MS": "2000",
        "FAME_MAX_ATTEMPTS": "8",
    }
    env.update(extra)
    return env


def keyed(events: list[dict[str, Any]]) -> list[tuple[str | None, bytes]]:
    """Event payloads keyed by video id, as a producer of VideoEvents should send them."""
    return [(e["video_id"], json.dumps(e).encode()) for e in events]


def produce(bootstrap: str, topic: str, events: list[tuple[str | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in events:
        producer.send(topic, key=key.encode() if key else None, value=value)
    producer.flush()
    producer.close()


def read_all(
    bootstrap: str,
    topic: str,
    done: Callable[[list[bytes]], bool],
    timeout_s: float,
    isolation_level: str = "read_uncommitted",
) -> list[bytes]:
    """Every record of a one-partition topic, read until `done(records)` or the timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level
    )
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
        if done(values):
            break
    consumer.close()
    return values


def at_least(count: int) -> Callable[[list[bytes]], bool]:
    return lambda records: len(records) >= count


def never(records: list[bytes]) -> bool:
    """Read until the timeout: everything the topic holds."""
    return False


def covering(event_ids: set[str]) -> Callable[[list[bytes]], bool]:
    """Done once every event id has a record (duplicates do not count twice)."""
    return lambda records: {json.loads(r)["event_id"] for r in records} >= event_ids


def outcomes(verdicts: list[bytes], letters: list[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event id, document) for every published verdict and dead letter."""
    for raw in verdicts:
        doc = json.loads(raw)
        yield doc["event_id"], doc
    for raw in letters:
        doc = json.loads(raw)
        yield doc.get("event_id") or f"offset-{doc['source']['offset']}", doc
