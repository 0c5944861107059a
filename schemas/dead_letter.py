"""`DeadLetter`: an input the service gave up on, kept byte-exact so that it can be replayed.

The original payload travels as base64 because it may not be UTF-8 (or JSON) at all; the
readable copy in `payload_text` is a convenience for operators. A payload larger than
`MAX_PAYLOAD_BYTES` is cut (`payload_truncated`) so that the dead letter itself still fits in a
Kafka message.
"""

import base64
import binascii
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Final, Literal, Self

from pydantic import Field, model_validator

from schemas.base import SCHEMA_VERSION, SchemaVersion, WireModel
from schemas.errors import ErrorCode
from schemas.fields import SafeId, UtcDatetime, UuidStr

# Never change: dead-letter ids of already published dead letters are derived from it.
DEAD_LETTER_ID_NAMESPACE: Final = uuid.UUID("4cc10774-927a-4304-8cb4-fb82462b7b83")
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_PAYLOAD_TEXT_BYTES: Final = 64 * 1024
MAX_MESSAGE_CHARS: Final = 4096
_TRUNCATION_MARK: Final = "…"
BASE64_PATTERN: Final = r"^[A-Za-z0-9+/]*={0,2}$"

Stage = Literal[
    "parse", "validate", "fetch", "decode", "detect", "track", "infer", "produce", "internal"
]


class DeadLetterSource(WireModel):
    """Where the payload was read from; all null when it did not come from a topic."""

    topic: str | None = Field(
        default=None, min_length=1, max_length=249, description="Kafka topic of the payload."
    )
    partition: int | None = Field(default=None, ge=0, description="Kafka partition.")
    offset: int | None = Field(default=None, ge=0, description="Kafka offset in the partition.")


def make_dead_letter_id(raw: bytes, source: DeadLetterSource) -> str:
    """Deterministic id: the same message dead-lettered twice (crash before commit, replay)
    gets the same id, so that stores downstream can deduplicate."""
    digest = hashlib.sha256(raw).hexdigest()
    name = f"{source.topic}|{source.partition}|{source.offset}|{digest}"
    return str(uuid.uuid5(DEAD_LETTER_ID_NAMESPACE, name))


def _payload_text(raw: bytes) -> str | None:
    if len(raw) > MAX_PAYLOAD_TEXT_BYTES:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _truncate_message(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


class DeadLetter(WireModel):
    """An event the service could not process, with the error and the original bytes."""

    schema_version: SchemaVersion = Field(
        default=SCHEMA_VERSION, description=f"Contract version (currently {SCHEMA_VERSION})."
    )
    dead_letter_id: UuidStr = Field(
        description="Id of this dead letter (make_dead_letter_id: stable across reprocessing)."
    )
    error_code: ErrorCode = Field(description="Stable code of the failure: alert and replay by it.")
    message: str = Field(
        max_length=MAX_MESSAGE_CHARS, description="Human-readable detail for operators."
    )
    stage: Stage = Field(description="Pipeline stage that failed.")
    attempts: int = Field(ge=1, description="How many times processing was tried.")
    first_seen: UtcDatetime = Field(description="First failure (RFC 3339 with offset; UTC).")
    last_seen: UtcDatetime = Field(description="Last failure, not before first_seen.")
    event_id: SafeId | None = Field(
        default=None, description="Id of the event; null when the payload did not parse."
    )
    video_id: SafeId | None = Field(
        default=None, description="Id of the video; null when the payload did not parse."
    )
    source: DeadLetterSource = Field(
        default_factory=DeadLetterSource, description="Where the payload was read from."
    )
    payload_b64: str = Field(
        max_length=4 * ((MAX_PAYLOAD_BYTES + 2) // 3),
        pattern=BASE64_PATTERN,
        description=(
            f"Standard base64 of the original payload bytes (the first {MAX_PAYLOAD_BYTES} "
            "bytes when payload_truncated)."
        ),
    )
    payload_size_bytes: int = Field(ge=0, description="Size of the original payload in bytes.")
    payload_truncated: bool = Field(
        description="True when payload_b64 holds only a prefix of the original payload."
    )
    payload_text: str | None = Field(
        default=None,
        description=(
            f"The stored payload decoded as UTF-8 when valid and at most {MAX_PAYLOAD_TEXT_BYTES} "
            "bytes, else null."
        ),
    )

    @classmethod
    def from_payload(
        cls,
        raw: bytes,
        *,
        error_code: ErrorCode,
        message: str,
        stage: Stage,
        attempts: int = 1,
        first_seen: datetime | None = None,
        last_seen: datetime | None = None,
        event_id: str | None = None,
        video_id: str | None = None,
        source: DeadLetterSource | None = None,
    ) -> Self:
        """Build a dead letter from raw bytes; times default to now, an over-long message is
        cut rather than rejected (the dead-letter path must not fail on its own input)."""
        now = datetime.now(UTC)
        source = source if source is not None else DeadLetterSource()
        stored = raw[:MAX_PAYLOAD_BYTES]
        return cls(
            dead_letter_id=make_dead_letter_id(raw, source),
            error_code=error_code,
            message=_truncate_message(message),
            stage=stage,
            attempts=attempts,
            first_seen=first_seen if first_seen is not None else now,
            last_seen=last_seen if last_seen is not None else now,
            event_id=event_id,
            video_id=video_id,
            source=source,
            payload_b64=base64.b64encode(stored).decode("ascii"),
            payload_size_bytes=len(raw),
            payload_truncated=len(stored) < len(raw),
            payload_text=_payload_text(stored),
        )

    def raw_payload(self) -> bytes:
        """The stored payload bytes (a prefix of the original when `payload_truncated`)."""
        return base64.b64decode(self.payload_b64, validate=True)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.last_seen < self.first_seen:
            raise ValueError(f"last_seen {self.last_seen} is before first_seen {self.first_seen}")
        try:
            raw = self.raw_payload()
        except binascii.Error as error:
            raise ValueError(f"payload_b64 is not valid base64: {error}") from error
        if base64.b64encode(raw).decode("ascii") != self.payload_b64:
            raise ValueError("payload_b64 is not in canonical base64 form")
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"stored payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        if self.payload_truncated != (len(raw) < self.payload_size_bytes):
            raise ValueError(
                f"payload_truncated {self.payload_truncated} disagrees with {len(raw)} stored of "
                f"{self.payload_size_bytes} bytes"
            )
        if len(raw) > self.payload_size_bytes:
            raise ValueError(
                f"{len(raw)} stored bytes exceed payload_size_bytes {self.payload_size_bytes}"
            )
        if self.payload_text != _payload_text(raw):
            raise ValueError(
                "payload_text must be the stored payload decoded as UTF-8 (null when not valid "
                f"UTF-8 or over {MAX_PAYLOAD_TEXT_BYTES} bytes)"
            )
        return self
