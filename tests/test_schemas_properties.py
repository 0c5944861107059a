"""Property tests: any valid `VideoEvent` survives JSON unchanged and satisfies the exported
JSON Schema; any bytes survive a `DeadLetter`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import DeadLetter, DeadLetterSource, ErrorCode, VideoEvent
from schemas.dead_letter import MAX_PAYLOAD_TEXT_BYTES
from schemas.export import schema_path
from schemas.fields import MAX_INDEX, SAFE_ID_PATTERN

PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

safe_ids = st.from_regex(SAFE_ID_PATTERN.replace("^", r"\A").replace("$", r"\Z"))
uri_paths = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.timezones(),
)
metadata = st.dictionaries(st.text(min_size=1, max_size=64), st.text(max_size=1024), max_size=32)
video_events = st.builds(
    VideoEvent,
    schema_version=st.just("1.0"),
    event_id=safe_ids,
    video_id=safe_ids,
    source_uri=st.builds("{}://{}".format, st.sampled_from(["file", "http", "https"]), uri_paths),
    segment_index=st.integers(min_value=0, max_value=MAX_INDEX),
    last_segment=st.booleans(),
    content_type=st.none() | st.sampled_from(["video/mp4", "video/webm; codecs=vp9"]),
    byte_size=st.none() | st.integers(min_value=0, max_value=2**40),
    sha256=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    tenant=safe_ids,
    submitted_at=aware_datetimes,
    metadata=metadata,
)


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@PROFILE
@given(video_events)
def test_video_event_json_round_trip(event: VideoEvent) -> None:
    wire = event.model_dump_json()
    assert VideoEvent.model_validate_json(wire) == event
    validator("video_event").validate(json.loads(wire))


@PROFILE
@given(
    raw=st.binary(max_size=4096) | st.text(max_size=2048).map(str.encode),
    offset=st.none() | st.integers(min_value=0, max_value=2**62),
)
def test_dead_letter_round_trips_any_bytes(raw: bytes, offset: int | None) -> None:
    letter = DeadLetter.from_payload(
        raw,
        error_code=ErrorCode.INVALID_JSON,
        message="payload is not JSON",
        stage="parse",
        source=DeadLetterSource(topic="fame.video-events", partition=1, offset=offset),
    )
    assert letter.raw_payload() == raw
    assert not letter.payload_truncated
    wire = letter.model_dump_json()
    parsed = DeadLetter.model_validate_json(wire)
    assert parsed == letter
    assert parsed.raw_payload() == raw
    validator("dead_letter").validate(json.loads(wire))
    if len(raw) <= MAX_PAYLOAD_TEXT_BYTES and parsed.payload_text is not None:
        assert parsed.payload_text.encode() == raw


def test_dead_letter_times_default_to_now() -> None:
    before = datetime.now(UTC)
    letter = DeadLetter.from_payload(
        b"", error_code=ErrorCode.INTERNAL_ERROR, message="", stage="internal"
    )
    assert before <= letter.first_seen == letter.last_seen <= datetime.now(UTC)
