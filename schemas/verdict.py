"""`AttributionVerdict`: what the service concludes about one video, and the pieces it is made of.

Subscribers rely on the cross-field rules checked here (and mirrored as if/then clauses in the
exported JSON Schema): an attributed verdict always names a known class, a verdict without faces
has no tracks, and a failed one always says why.
"""

import uuid
from typing import Annotated, Any, Final, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from schemas.base import SCHEMA_VERSION, SchemaVersion, WireModel
from schemas.errors import ErrorCode
from schemas.fields import MAX_INDEX, Probability, SafeId, Sha256Hex, UtcDatetime, UuidStr

# Never change: verdict ids of already published verdicts are derived from it.
VERDICT_ID_NAMESPACE: Final = uuid.UUID("34a23061-3c80-4096-8342-66683743bc6c")
REAL_LABEL: Final = "real"
MAX_SALIENT_FRAMES: Final = 16
MAX_ERROR_MESSAGE_CHARS: Final = 4096

ClassName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
StageName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Milliseconds = Annotated[float, Field(ge=0.0)]
VerdictStatus = Literal["attributed", "no_face", "failed"]


def make_verdict_id(event_id: str, model_version: str) -> str:
    """The verdict id for an event under a model version.

    Deterministic so that reprocessing an event (after a crash, a rebalance or a replay) yields
    the same id and downstream stores can deduplicate; a new model version yields a new verdict.
    """
    return str(uuid.uuid5(VERDICT_ID_NAMESPACE, f"{event_id}|{model_version}"))


def _check_known_classes(probabilities: dict[str, float], classes: list[str], where: str) -> None:
    unknown = sorted(set(probabilities) - set(classes))
    if unknown:
        raise ValueError(f"{where} probabilities name classes {unknown} not in model.classes")


class SalientFrame(WireModel):
    """A frame the temporal attention weighted heavily: where a reviewer should look first."""

    frame_index: int = Field(ge=0, description="Index of the frame in the decoded video.")
    timestamp_s: float = Field(ge=0.0, description="Presentation time of the frame in seconds.")
    weight: Probability = Field(description="Attention weight of the frame, 0..1.")


class TrackResult(WireModel):
    """The attribution of one face track (one person followed across frames)."""

    track_id: int = Field(ge=0, description="Id of the track, unique within the verdict.")
    first_frame: int = Field(ge=0, description="Index of the first frame the track appears in.")
    last_frame: int = Field(ge=0, description="Index of the last frame the track appears in.")
    start_s: float = Field(ge=0.0, description="Time of the first frame in seconds.")
    end_s: float = Field(ge=0.0, description="Time of the last frame in seconds.")
    frames: int = Field(ge=1, description="Number of sampled frames in which this face was found.")
    windows: int = Field(ge=1, description="Number of frame windows the model scored.")
    label: ClassName = Field(
        description=(
            "This track's decision: its most probable fake class when the fake classes together "
            "hold at least half the probability (even where real is the single most probable "
            "class), else real."
        )
    )
    probabilities: dict[ClassName, Probability] = Field(
        description="Class name -> probability for this track, each 0..1."
    )
    unknown_generator: bool = Field(
        description="True when this track's evidence fits none of the known classes."
    )
    salient_frames: list[SalientFrame] = Field(
        default_factory=list,
        max_length=MAX_SALIENT_FRAMES,
        description=f"Up to {MAX_SALIENT_FRAMES} frames with the highest attention weight.",
    )
    mean_detection_score: Probability = Field(
        description="Mean face-detector confidence over the track's frames, 0..1."
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if self.last_frame < self.first_frame:
            raise ValueError(
                f"track {self.track_id}: last_frame {self.last_frame} < "
                f"first_frame {self.first_frame}"
            )
        if self.end_s < self.start_s:
            raise ValueError(f"track {self.track_id}: end_s {self.end_s} < start_s {self.start_s}")
        return self


class ModelInfo(WireModel):
    """Which model produced the verdict; weights are identified by their checksum."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="Model family name (e.g. fame-vgg19-bilstm)."
    )
    version: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="Model version; part of the verdict id."
    )
    sha256: Sha256Hex | None = Field(
        default=None, description="Lowercase hex SHA-256 of the checkpoint file, when known."
    )
    classes: list[ClassName] = Field(
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description="The classes the model distinguishes, in output order; no duplicates.",
    )

    @model_validator(mode="after")
    def _check_unique_classes(self) -> Self:
        duplicates = sorted({name for name in self.classes if self.classes.count(name) > 1})
        if duplicates:
            raise ValueError(f"model.classes has duplicates: {duplicates}")
        return self


class ErrorInfo(WireModel):
    """Why a verdict failed."""

    code: ErrorCode = Field(description="Stable error code (same set as dead letters).")
    message: str = Field(
        max_length=MAX_ERROR_MESSAGE_CHARS, description="Human-readable detail for operators."
    )


def _verdict_rules_json_schema() -> dict[str, Any]:
    """The cross-field rules as JSON Schema conditionals (membership in model.classes and the
    verdict id derivation cannot be expressed there and are checked by pydantic only)."""

    def status_is(status: str) -> dict[str, Any]:
        return {"properties": {"status": {"const": status}}, "required": ["status"]}

    return {
        "allOf": [
            {
                "if": status_is("attributed"),
                "then": {
                    "properties": {
                        "label": {"type": "string"},
                        "confidence": {"type": "number"},
                        "manipulated": {"type": "boolean"},
                        "probabilities": {"minProperties": 1},
                    },
                    "required": ["label", "confidence", "manipulated", "probabilities"],
                },
                "else": {
                    "properties": {
                        "label": {"type": "null"},
                        "confidence": {"type": "null"},
                        "manipulated": {"type": "null"},
                        "probabilities": {"maxProperties": 0},
                        "unknown_generator": {"const": False},
                    }
                },
            },
            {"if": status_is("no_face"), "then": {"properties": {"tracks": {"maxItems": 0}}}},
            {
                "if": status_is("failed"),
                "then": {"properties": {"error": {"type": "object"}}, "required": ["error"]},
                "else": {"properties": {"error": {"type": "null"}}},
            },
        ]
    }


class AttributionVerdict(WireModel):
    """The attribution of one video: which generator (if any) made its faces, and the evidence.

    Published once per video, when the segment with `last_segment` true has been processed
    (or when processing failed). The id is `make_verdict_id(event_id, model.version)`.
    """

    model_config = ConfigDict(json_schema_extra=_verdict_rules_json_schema())

    schema_version: SchemaVersion = Field(
        default=SCHEMA_VERSION, description=f"Contract version (currently {SCHEMA_VERSION})."
    )
    verdict_id: UuidStr = Field(
        description="make_verdict_id(event_id, model.version): stable across reprocessing."
    )
    event_id: SafeId = Field(description="The event that completed this verdict.")
    video_id: SafeId = Field(description="The video this verdict is about.")
    segment_index: int = Field(
        ge=0, le=MAX_INDEX, description="Segment index of the event that completed it."
    )
    status: VerdictStatus = Field(
        description="attributed: faces found and scored; no_face: none found; failed: see error."
    )
    label: ClassName | None = Field(
        default=None,
        description=(
            'Top class of the video: "real" when it wins outright, else the most probable '
            "generator; null unless status is attributed."
        ),
    )
    confidence: Probability | None = Field(
        default=None,
        description=(
            "Probability of label on the deciding track (the one with the lowest real "
            "probability), 0..1; null unless attributed."
        ),
    )
    probabilities: dict[ClassName, Probability] = Field(
        default_factory=dict,
        description=(
            "Class name -> probability on the deciding track (the one with the lowest real "
            "probability; not an average over tracks); empty unless attributed."
        ),
    )
    manipulated: bool | None = Field(
        default=None,
        description=f'True when label is not "{REAL_LABEL}"; null unless attributed.',
    )
    unknown_generator: bool = Field(
        default=False,
        description="True when the evidence fits no known class (a generator not trained on).",
    )
    tracks: list[TrackResult] = Field(
        default_factory=list, description="Per-face-track results; empty when no_face."
    )
    model: ModelInfo = Field(description="The model that produced the verdict.")
    timings_ms: dict[StageName, Milliseconds] = Field(
        default_factory=dict,
        description=(
            "Stage name -> milliseconds spent in it on this event (the last segment, for a video "
            "sent as segments): e.g. fetch, decode, detect, track, embed, temporal, redis; "
            "decode overlaps detect, and total is their sum, not the wall time."
        ),
    )
    error: ErrorInfo | None = Field(
        default=None, description="Why the verdict failed; set exactly when status is failed."
    )
    produced_at: UtcDatetime = Field(
        description="When the verdict was produced (RFC 3339 with offset; kept in UTC)."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        expected_id = make_verdict_id(self.event_id, self.model.version)
        if self.verdict_id != expected_id:
            raise ValueError(
                f"verdict_id {self.verdict_id!r} is not make_verdict_id(event_id, model.version)"
                f" = {expected_id!r}"
            )
        if (self.status == "failed") != (self.error is not None):
            raise ValueError(
                f"error must be set exactly when status is failed (status {self.status!r})"
            )
        if self.status == "no_face" and self.tracks:
            raise ValueError(f"status no_face but {len(self.tracks)} tracks given")
        classes = self.model.classes
        _check_known_classes(self.probabilities, classes, "verdict")
        for track in self.tracks:
            if track.label not in classes:
                raise ValueError(
                    f"track {track.track_id} label {track.label!r} not in model.classes"
                )
            _check_known_classes(track.probabilities, classes, f"track {track.track_id}")
        if self.status == "attributed":
            self._check_attributed()
        else:
            self._check_not_attributed()
        return self

    def _check_attributed(self) -> None:
        label = self.label
        if label is None or self.confidence is None:
            raise ValueError("status attributed needs label and confidence")
        if label not in self.model.classes:
            raise ValueError(f"label {label!r} not in model.classes {self.model.classes}")
        if label not in self.probabilities:
            raise ValueError(f"label {label!r} missing from probabilities")
        # "real" must win outright; a generator label must be the most probable generator (the
        # video is called manipulated when the fake classes together outweigh "real").
        rivals = [
            p for name, p in self.probabilities.items() if label == REAL_LABEL or name != REAL_LABEL
        ]
        if self.probabilities[label] < max(rivals):
            kind = "class" if label == REAL_LABEL else "generator class"
            raise ValueError(f"label {label!r} is not the most probable {kind}")
        if self.manipulated != (label != REAL_LABEL):
            raise ValueError(
                f'manipulated must be {label != REAL_LABEL} for label {label!r} ("{REAL_LABEL}" '
                "is the only unmanipulated class)"
            )

    def _check_not_attributed(self) -> None:
        given = [
            name
            for name, is_set in (
                ("label", self.label is not None),
                ("confidence", self.confidence is not None),
                ("probabilities", bool(self.probabilities)),
                ("manipulated", self.manipulated is not None),
                ("unknown_generator", self.unknown_generator),
            )
            if is_set
        ]
        if given:
            raise ValueError(f"status {self.status!r} must not set {given}")
