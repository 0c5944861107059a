"""Constrained field types reused across the wire models.

Each constraint is expressed so that it also lands in the exported JSON Schema (pattern,
bounds), letting subscribers in other languages check the same rules pydantic checks.
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

SAFE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
UUID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# RFC 3339 date-time with a mandatory offset; pydantic alone would also accept a space separator,
# "+0100" offsets and dates without a time, which other languages' parsers may not.
# Field ranges are in the pattern too (hour 00-23, minute and second 00-59, month 01-12, day
# 01-31), so a validator in another language refuses what pydantic refuses.
AWARE_DATETIME_PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Integers every JSON parser reads exactly (JavaScript's safe range; Java's int for indices).
MAX_JSON_INT: Final = 2**53 - 1
MAX_INDEX: Final = 2**31 - 1
_AWARE_DATETIME_RE: Final = re.compile(AWARE_DATETIME_PATTERN)


def _require_rfc3339(value: object) -> object:
    """Accept a `datetime` or an RFC 3339 string only (the field itself is lax, so that JSON
    strings survive this validator; numbers, dates and other spellings stop here)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _AWARE_DATETIME_RE.fullmatch(value):
        return value
    raise ValueError(
        f"datetime {value!r} is not RFC 3339 with an offset (e.g. 2025-01-31T12:00:00Z)"
    )


def _to_utc(value: datetime) -> datetime:
    """Normalise to UTC so that a value survives a JSON round trip unchanged, whatever zone."""
    try:
        return value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError(f"datetime {value.isoformat()} is out of range in UTC") from error


SafeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=SAFE_ID_PATTERN),
    Field(description="1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit."),
]
Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
UuidStr = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_require_rfc3339),
    Field(strict=False, json_schema_extra={"pattern": AWARE_DATETIME_PATTERN}),
    AfterValidator(_to_utc),
]


def to_safe_id(text: str) -> str:
    """A valid id (`SafeId`) derived from free text such as a file name, for local tools."""
    cleaned = "".join(c if (c.isalnum() and c.isascii()) or c in "._:-" else "-" for c in text)
    return (cleaned.lstrip("._:-") or "video")[:128]
