"""`VideoEvent`: the request to attribute one video (or one segment of it)."""

from typing import Annotated, Final

from pydantic import Field, StringConstraints

from schemas.base import SCHEMA_VERSION, SchemaVersion, WireModel
from schemas.fields import MAX_INDEX, MAX_JSON_INT, SafeId, Sha256Hex, UtcDatetime

MAX_METADATA_KEYS: Final = 32
MAX_METADATA_KEY_CHARS: Final = 64
MAX_METADATA_VALUE_CHARS: Final = 1024
MAX_SOURCE_URI_CHARS: Final = 4096
# Only the scheme is checked here; which hosts and paths may be fetched is the fetcher's policy.
# URIs are printable ASCII (RFC 3986: anything else is percent-encoded), which also keeps the
# pattern meaning the same in every regex engine that reads the JSON Schema.
SOURCE_URI_PATTERN: Final = r"^(file|http|https)://[!-~]+$"
# type/subtype (RFC 6838 names), optionally followed by parameters such as "; codecs=avc1".
CONTENT_TYPE_PATTERN: Final = (
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*( *;.*)?$"
)

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS)]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]


class VideoEvent(WireModel):
    """A request to attribute the faces in one video to the generator that made them.

    A long video may arrive as several events sharing `video_id`: `segment_index` runs 0..n and
    only the final event has `last_segment` true. A single-file video is segment 0, last.
    """

    schema_version: SchemaVersion = Field(
        description=f"Contract version; producers must send it (currently {SCHEMA_VERSION})."
    )
    event_id: SafeId = Field(
        description="Unique id of this event; the verdict id is derived from it (idempotency)."
    )
    video_id: SafeId = Field(description="Id of the video; shared by all segments of one video.")
    source_uri: str = Field(
        max_length=MAX_SOURCE_URI_CHARS,
        pattern=SOURCE_URI_PATTERN,
        description="Where to fetch the video: a file://, http:// or https:// URI (ASCII).",
    )
    segment_index: int = Field(
        default=0,
        ge=0,
        le=MAX_INDEX,
        description="Position of this segment within the video, from 0.",
    )
    last_segment: bool = Field(
        default=True, description="True on the final (or only) segment of the video."
    )
    content_type: str | None = Field(
        default=None,
        max_length=255,
        pattern=CONTENT_TYPE_PATTERN,
        description="Media type announced by the producer (e.g. video/mp4); a hint only.",
    )
    byte_size: int | None = Field(
        default=None,
        ge=0,
        le=MAX_JSON_INT,
        description="Size in bytes announced by the producer, if known.",
    )
    sha256: Sha256Hex | None = Field(
        default=None,
        description="Lowercase hex SHA-256 of the video bytes; checked after fetching when set.",
    )
    tenant: SafeId = Field(
        default="default", description="Tenant the video belongs to (quotas and routing)."
    )
    submitted_at: UtcDatetime = Field(
        description="When the producer submitted the event (RFC 3339 with offset; kept in UTC)."
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA_KEYS,
        description=(
            f"Free-form producer annotations: at most {MAX_METADATA_KEYS} keys "
            f"of 1-{MAX_METADATA_KEY_CHARS} characters, values of at most "
            f"{MAX_METADATA_VALUE_CHARS} characters."
        ),
    )
