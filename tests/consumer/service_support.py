"""Run the real service code over the in-process broker, and read what it published."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from consumer.app import Service, retry_policy
from consumer.backends.local import LocalBroker, LocalSink, LocalSource
from consumer.publish import AckedPublisher
from consumer.settings import Settings
from consumer.store import MemoryWindowStore, WindowStore
from tests.conftest import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "schemas" / "json"


def event(path: Path, **fields: Any) -> dict[str, Any]:
    """A valid VideoEvent payload for a local file."""
    return {
        "schema_version": "1.0",
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "video_id": f"vid-{uuid.uuid4().hex[:8]}",
        "source_uri": path.resolve().as_uri(),
        "submitted_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def segment_events(paths: list[Path], video_id: str) -> list[dict[str, Any]]:
    return [
        event(p, video_id=video_id, segment_index=i, last_segment=i == len(paths) - 1)
        for i, p in enumerate(paths)
    ]


def settings(checkpoint: Path, detector: Path, roots: list[Path], **extra: Any) -> Settings:
    return Settings(
        checkpoint=checkpoint,
        detector_model=detector,
        file_roots=roots,
        workers=1,
        window_stride=4,
        max_attempts=2,
        retry_base_ms=10,
        retry_max_ms=50,
        drain_timeout_s=60,
        **extra,
    )


def run_embedded(
    config: Settings, payloads: list[bytes], store: WindowStore | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], LocalBroker]:
    """Process `payloads` to the end; returns (verdicts, dead letters) as published."""
    broker = LocalBroker()
    for payload in payloads:
        broker.append(config.events_topic, None, payload)
    source = LocalSource(broker, config.events_topic, config.group_id)
    service = Service(
        settings=config,
        source=source,
        publisher=AckedPublisher(LocalSink(broker), source, retry_policy(config).delay_s),
        store=store or MemoryWindowStore(ttl_s=3600),
        exit_when_idle=True,
    ).build()
    try:
        service.run()
    finally:
        service.close()
    verdicts = [json.loads(m.value) for m in broker.messages(config.verdicts_topic)]
    letters = [json.loads(m.value) for m in broker.messages(config.dlq_topic)]
    return verdicts, letters, broker


def assert_schema_valid(document: dict[str, Any], name: str) -> None:
    """Independent check against the committed JSON Schema (not pydantic)."""
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)
