"""The wire contracts: committed JSON Schemas are current, examples pass both validators, bad
messages fail both, and the rules JSON Schema cannot express fail in pydantic."""

from __future__ import annotations

import copy
import json
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterSource,
    ErrorCode,
    SchemaVersion,
    VideoEvent,
    make_verdict_id,
)
from schemas.dead_letter import MAX_MESSAGE_CHARS, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_TEXT_BYTES
from schemas.export import EXPORTS, main, render, schema_path, stale_files, write_all

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "schemas" / "examples"
EXAMPLE_FILES = (
    "video_event.json",
    "video_event_segment.json",
    "attribution_verdict_attributed.json",
    "attribution_verdict_no_face.json",
    "attribution_verdict_failed.json",
    "dead_letter.json",
)
Json = dict[str, Any]


def export_name(example_file: str) -> str:
    return next(name for name in EXPORTS if example_file.startswith(name))


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def load_example(example_file: str) -> Json:
    data: Json = json.loads((EXAMPLES_DIR / example_file).read_text(encoding="utf-8"))
    return data


def pydantic_model(example_file: str) -> type[BaseModel]:
    return EXPORTS[export_name(example_file)][0]


def test_schema_version_literal_matches_constant() -> None:
    assert typing.get_args(SchemaVersion) == (SCHEMA_VERSION,)


def test_committed_json_schemas_are_current() -> None:
    assert stale_files() == [], "run `python -m schemas.export`"


def test_export_check_flags_a_stale_file(tmp_path: Path) -> None:
    write_all(tmp_path)
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    stale = schema_path("dead_letter", tmp_path)
    stale.write_text(stale.read_text(encoding="utf-8").replace("Kafka", "Kafka!"))
    assert stale_files(tmp_path) == [stale]
    assert main(["--check", "--dir", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_exported_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = json.loads(render(name))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f"{name}:{SCHEMA_VERSION}")
    assert schema["title"] and schema["description"]
    assert render(name).endswith("}\n")


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_every_field_is_described(name: str) -> None:
    schema = json.loads(render(name))
    objects = [schema, *schema.get("$defs", {}).values()]
    for obj in objects:
        for field, spec in obj.get("properties", {}).items():
            assert spec.get("description"), f"{obj['title']}.{field} has no description"


def test_examples_folder_holds_exactly_the_documented_examples() -> None:
    assert sorted(p.name for p in EXAMPLES_DIR.glob("*.json")) == sorted(EXAMPLE_FILES)


@pytest.mark.parametrize("example_file", EXAMPLE_FILES)
def test_example_passes_json_schema_and_pydantic(example_file: str) -> None:
    data = load_example(example_file)
    validator(export_name(example_file)).validate(data)
    model = pydantic_model(example_file).model_validate_json(json.dumps(data))
    validator(export_name(example_file)).validate(json.loads(model.model_dump_json()))


def _set(path: str, value: Any) -> Callable[[Json], None]:
    """A mutation that sets a dotted path (list indices as numbers) to `value`."""

    def mutate(data: Json) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value

    return mutate


def _drop(key: str) -> Callable[[Json], None]:
    return lambda data: data.pop(key)


BAD_FOR_BOTH: dict[str, tuple[str, Callable[[Json], None]]] = {
    "unknown field": ("video_event.json", _set("priority", "high")),
    "unknown nested field": (
        "attribution_verdict_attributed.json",
        _set("tracks.0.blur", 0.3),
    ),
    "uppercase sha256": ("video_event.json", _set("sha256", "AB" * 32)),
    "short sha256": ("video_event.json", _set("sha256", "ab" * 31)),
    "naive datetime": ("video_event.json", _set("submitted_at", "2025-06-12T09:41:27")),
    "date without time": ("video_event.json", _set("submitted_at", "2025-06-12")),
    "epoch number datetime": ("video_event.json", _set("submitted_at", 1749721287)),
    # out-of-range fields the digit-count pattern let through to pydantic
    "hour 25": ("video_event.json", _set("submitted_at", "2025-01-31T25:00:00Z")),
    "minute 61": ("video_event.json", _set("submitted_at", "2025-01-31T12:61:00Z")),
    "month 13": ("video_event.json", _set("submitted_at", "2025-13-01T12:00:00Z")),
    "offset +24:00": ("video_event.json", _set("submitted_at", "2025-01-31T12:00:00+24:00")),
    # integers a JavaScript, Go or Java subscriber could not read back exactly
    "segment index beyond int32": ("video_event.json", _set("segment_index", 2**31)),
    "byte size beyond 2^53": ("video_event.json", _set("byte_size", 2**53)),
    "too many metadata keys": (
        "video_event.json",
        _set("metadata", {f"k{i}": "v" for i in range(33)}),
    ),
    "metadata key too long": ("video_event.json", _set("metadata", {"k" * 65: "v"})),
    "metadata value too long": ("video_event.json", _set("metadata", {"k": "v" * 1025})),
    "metadata value not a string": ("video_event.json", _set("metadata", {"k": 1})),
    "ftp source uri": ("video_event.json", _set("source_uri", "ftp://example.org/a.mp4")),
    "unsafe event id": ("video_event.json", _set("event_id", "../etc/passwd")),
    "negative segment index": ("video_event.json", _set("segment_index", -1)),
    "string segment index": ("video_event.json", _set("segment_index", "1")),
    "future schema version": ("video_event.json", _set("schema_version", "2.0")),
    "missing schema version": ("video_event.json", _drop("schema_version")),
    "attributed without label": ("attribution_verdict_attributed.json", _set("label", None)),
    "attributed without confidence": (
        "attribution_verdict_attributed.json",
        _set("confidence", None),
    ),
    "no_face with tracks": (
        "attribution_verdict_no_face.json",
        _set("tracks", load_example("attribution_verdict_attributed.json")["tracks"]),
    ),
    "no_face with label": ("attribution_verdict_no_face.json", _set("label", "real")),
    "failed without error": ("attribution_verdict_failed.json", _set("error", None)),
    "error on success": (
        "attribution_verdict_no_face.json",
        _set("error", {"code": "model_error", "message": "x"}),
    ),
    "unknown verdict error code": (
        "attribution_verdict_failed.json",
        _set("error.code", "gremlins"),
    ),
    "probability above one": ("attribution_verdict_attributed.json", _set("confidence", 1.5)),
    "too many salient frames": (
        "attribution_verdict_attributed.json",
        _set(
            "tracks.0.salient_frames",
            [{"frame_index": i, "timestamp_s": i / 25, "weight": 0.05} for i in range(17)],
        ),
    ),
    "empty class list": ("attribution_verdict_no_face.json", _set("model.classes", [])),
    "duplicate classes": (
        "attribution_verdict_no_face.json",
        _set("model.classes", ["real", "real"]),
    ),
    "unknown dead-letter error code": ("dead_letter.json", _set("error_code", "gremlins")),
    "unknown stage": ("dead_letter.json", _set("stage", "teleport")),
    "zero attempts": ("dead_letter.json", _set("attempts", 0)),
    "payload not base64": ("dead_letter.json", _set("payload_b64", "not base64!")),
    "message too long": ("dead_letter.json", _set("message", "x" * (MAX_MESSAGE_CHARS + 1))),
}


@pytest.mark.parametrize("case", sorted(BAD_FOR_BOTH))
def test_bad_message_is_rejected_by_json_schema_and_pydantic(case: str) -> None:
    example_file, mutate = BAD_FOR_BOTH[case]
    data = copy.deepcopy(load_example(example_file))
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        validator(export_name(example_file)).validate(data)
    with pytest.raises(ValidationError):
        pydantic_model(example_file).model_validate_json(json.dumps(data))


# Rules JSON Schema cannot express (membership, derivations, comparisons): pydantic only.
BAD_FOR_PYDANTIC: dict[str, tuple[str, Callable[[Json], None], str]] = {
    "label not a model class": (
        "attribution_verdict_attributed.json",
        _set("label", "stylegan"),
        "not in model.classes",
    ),
    "probability for unknown class": (
        "attribution_verdict_attributed.json",
        _set("probabilities.stylegan", 0.0),
        "not in model.classes",
    ),
    "track label not a model class": (
        "attribution_verdict_attributed.json",
        _set("tracks.1.label", "stylegan"),
        "not in model.classes",
    ),
    "label not the top class": (
        "attribution_verdict_attributed.json",
        _set("label", "real"),
        "not the most probable",
    ),
    "manipulated wrong": (
        "attribution_verdict_attributed.json",
        _set("manipulated", False),
        "manipulated must be True",
    ),
    "verdict id not derived": (
        "attribution_verdict_no_face.json",
        _set("verdict_id", str(uuid.UUID(int=7))),
        "make_verdict_id",
    ),
    "track ends before it starts": (
        "attribution_verdict_attributed.json",
        _set("tracks.1.last_frame", 1),
        "last_frame",
    ),
    "last_seen before first_seen": (
        "dead_letter.json",
        _set("last_seen", "2025-06-12T10:00:00Z"),
        "before first_seen",
    ),
    "payload_text disagrees": ("dead_letter.json", _set("payload_text", "{}"), "payload_text"),
    "truncated flag disagrees": (
        "dead_letter.json",
        _set("payload_truncated", True),
        "payload_truncated",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FOR_PYDANTIC))
def test_cross_field_rule_is_enforced_by_pydantic(case: str) -> None:
    example_file, mutate, message = BAD_FOR_PYDANTIC[case]
    data = copy.deepcopy(load_example(example_file))
    mutate(data)
    with pytest.raises(ValidationError, match=message):
        pydantic_model(example_file).model_validate_json(json.dumps(data))


def test_metadata_limit_error_names_the_limit() -> None:
    data = load_example("video_event.json") | {"metadata": {f"k{i}": "v" for i in range(33)}}
    with pytest.raises(ValidationError, match="at most 32 items") as info:
        VideoEvent.model_validate_json(json.dumps(data))
    assert info.value.errors()[0]["loc"] == ("metadata",)


def test_verdict_id_is_deterministic_and_versioned() -> None:
    first = make_verdict_id("evt-1", "2025.06.1")
    assert first == make_verdict_id("evt-1", "2025.06.1")
    assert uuid.UUID(first).version == 5
    assert first != make_verdict_id("evt-1", "2025.06.2")
    assert first != make_verdict_id("evt-2", "2025.06.1")


def test_datetimes_are_kept_as_utc_instants() -> None:
    data = load_example("video_event_segment.json")
    event = VideoEvent.model_validate_json(json.dumps(data))
    assert event.submitted_at == datetime(2025, 6, 12, 9, 2, 10, tzinfo=UTC)
    assert event.submitted_at.utcoffset() == timedelta(0)
    assert json.loads(event.model_dump_json())["submitted_at"] == "2025-06-12T09:02:10Z"


def test_python_construction_is_strict() -> None:
    data = load_example("video_event.json")
    fields = {k: v for k, v in data.items() if k != "submitted_at"}
    aware = datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert VideoEvent(**fields, submitted_at=aware).submitted_at.tzinfo is UTC
    with pytest.raises(ValidationError, match="timezone"):
        VideoEvent(**fields, submitted_at=datetime(2025, 1, 1))
    with pytest.raises(ValidationError):
        VideoEvent(**(fields | {"byte_size": "12"}), submitted_at=aware)


def test_models_are_frozen() -> None:
    event = VideoEvent.model_validate_json((EXAMPLES_DIR / "video_event.json").read_text())
    with pytest.raises(ValidationError, match="frozen"):
        event.video_id = "other"  # type: ignore[misc, unused-ignore]


def test_dead_letter_from_payload_keeps_bytes_and_text() -> None:
    raw = b'{"event_id": "evt-1"'
    source = DeadLetterSource(topic="fame.video-events", partition=0, offset=12)
    letter = DeadLetter.from_payload(
        raw, error_code=ErrorCode.INVALID_JSON, message="bad json", stage="parse", source=source
    )
    assert letter.raw_payload() == raw
    assert letter.payload_text == raw.decode()
    assert not letter.payload_truncated
    assert letter.first_seen == letter.last_seen
    again = DeadLetter.from_payload(
        raw, error_code=ErrorCode.INVALID_JSON, message="other", stage="parse", source=source
    )
    assert again.dead_letter_id == letter.dead_letter_id
    moved = DeadLetterSource(topic="fame.video-events", partition=0, offset=13)
    elsewhere = DeadLetter.from_payload(
        raw, error_code=ErrorCode.INVALID_JSON, message="x", stage="parse", source=moved
    )
    assert elsewhere.dead_letter_id != letter.dead_letter_id


def test_dead_letter_text_is_null_for_binary_or_large_payloads() -> None:
    def build(raw: bytes) -> DeadLetter:
        return DeadLetter.from_payload(
            raw, error_code=ErrorCode.INVALID_JSON, message="x", stage="parse"
        )

    assert build(b"\xff\xfe\x00garbage").payload_text is None
    assert build(b"a" * MAX_PAYLOAD_TEXT_BYTES).payload_text is not None
    assert build(b"a" * (MAX_PAYLOAD_TEXT_BYTES + 1)).payload_text is None


def test_dead_letter_cuts_oversized_payload_and_message() -> None:
    raw = bytes(range(256)) * (MAX_PAYLOAD_BYTES // 256 + 10)
    letter = DeadLetter.from_payload(
        raw, error_code=ErrorCode.FETCH_TOO_LARGE, message="m" * 10_000, stage="parse"
    )
    assert letter.payload_truncated
    assert letter.payload_size_bytes == len(raw)
    assert letter.raw_payload() == raw[:MAX_PAYLOAD_BYTES]
    assert len(letter.message) == MAX_MESSAGE_CHARS
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter
    validator("dead_letter").validate(json.loads(letter.model_dump_json()))


def test_attributed_example_follows_the_decision_rule() -> None:
    """The video-level label, confidence and probabilities are the deciding track's (the lowest
    p(real)), as integration.md says: the example subscribers read must not suggest an average."""
    from fame.aggregate import decide_video

    example = load_example("attribution_verdict_attributed.json")
    classes = list(example["probabilities"])
    tracks = [[t["probabilities"][c] for c in classes] for t in example["tracks"]]
    decision = decide_video(tracks, classes)
    deciding = example["tracks"][decision.track]["probabilities"]
    assert example["probabilities"] == deciding
    assert decision.class_index is not None and example["label"] == classes[decision.class_index]
    assert example["confidence"] == pytest.approx(decision.confidence)
    assert example["manipulated"] == decision.is_manipulated
