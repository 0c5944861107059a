"""The closed set of error codes a `DeadLetter` may carry.

Every failure in the project maps to exactly one of these codes, so that operators can alert,
count and replay by code. Adding a code is a schema change (bump ``schema_version``).
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why an event was dead-lettered (or why a one-off attribution failed)."""

    # The event itself
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    # Fetching the video
    FETCH_REFUSED = "fetch_refused"
    FETCH_FAILED = "fetch_failed"
    FETCH_TOO_LARGE = "fetch_too_large"
    FETCH_TIMEOUT = "fetch_timeout"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    # Decoding the video
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_LONG = "too_long"
    TOO_MANY_STREAMS = "too_many_streams"
    CORRUPT_STREAM = "corrupt_stream"
    DECODE_TIMEOUT = "decode_timeout"
    DECODE_CRASHED = "decode_crashed"
    NO_VIDEO_STREAM = "no_video_stream"
    # Models and the runtime
    MODEL_MISSING = "model_missing"
    MODEL_ERROR = "model_error"
    RETRIES_EXHAUSTED = "retries_exhausted"
    INTERNAL_ERROR = "internal_error"
