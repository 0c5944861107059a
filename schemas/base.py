"""The base every wire model shares: one version, one strictness policy.

Strict mode means no silent coercion (``"1"`` is not an int), yet JSON input still parses
datetimes from RFC 3339 strings and enums from their values (pydantic's JSON mode).
Unknown fields are rejected so that a typo in a producer fails loudly instead of being dropped.
"""

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

# Bumping the version means editing both lines; a test checks that they agree.
SchemaVersion = Literal["1.0"]
SCHEMA_VERSION: Final[SchemaVersion] = "1.0"


class WireModel(BaseModel):
    """Frozen, strict, closed: what a message says cannot change after validation."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        json_schema_serialization_defaults_required=True,
    )
