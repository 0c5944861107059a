"""Wire contracts of FAME Stream (pydantic v2).

These models are the one thing results-topic subscribers in any language depend on: they are
exported as JSON Schema files under ``schemas/json/`` (``python -m schemas.export``). This package
imports nothing else of the project.
"""

from schemas.base import SCHEMA_VERSION, SchemaVersion, WireModel
from schemas.dead_letter import DeadLetter, DeadLetterSource, Stage, make_dead_letter_id
from schemas.errors import ErrorCode
from schemas.event import VideoEvent
from schemas.verdict import (
    AttributionVerdict,
    ErrorInfo,
    ModelInfo,
    SalientFrame,
    TrackResult,
    VerdictStatus,
    make_verdict_id,
)

__all__ = [
    "SCHEMA_VERSION",
    "AttributionVerdict",
    "DeadLetter",
    "DeadLetterSource",
    "ErrorCode",
    "ErrorInfo",
    "ModelInfo",
    "SalientFrame",
    "SchemaVersion",
    "Stage",
    "TrackResult",
    "VerdictStatus",
    "VideoEvent",
    "WireModel",
    "make_dead_letter_id",
    "make_verdict_id",
]
