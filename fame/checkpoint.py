"""FAME checkpoints: weights plus the metadata that must travel with them.

A checkpoint is one ``torch.save`` file holding ``{"format", "meta", "state_dict"}``. The meta
says everything a consumer needs to use the weights correctly (class list, input size and
normalisation, the architecture config, the unknown-generator threshold) and where they came
from (training data fingerprint, metrics, code version, ImageNet or random init). Loading lives
here and only here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from fame import __version__
from fame.aggregate import DEFAULT_UNKNOWN_THRESHOLD
from fame.errors import FameError, ModelMissingError
from fame.model import FAME, FAMEConfig
from schemas.errors import ErrorCode

CHECKPOINT_FORMAT = "fame-checkpoint/1"
# The checkpoint `make demo`, `fame attribute` and the service use when none is named.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "fame_default.pt"


def resolve_checkpoint(explicit: str | Path | None = None) -> Path:
    """The named checkpoint, else ``FAME_CHECKPOINT``, else the committed default; a
    `ModelMissingError` naming the path when the file is not there."""
    named = explicit or os.environ.get("FAME_CHECKPOINT") or DEFAULT_CHECKPOINT
    path = Path(named).expanduser()
    if not path.is_file():
        raise ModelMissingError(
            f"FAME checkpoint not found at {path}: name one with --checkpoint or FAME_CHECKPOINT "
            "(`fame train` writes them)"
        )
    return path


@dataclass
class CheckpointMeta:
    """Weight metadata; ``sha256`` is filled in on load (the file's digest)."""

    model_name: str
    config: dict[str, Any]
    classes: list[str]
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    unknown_threshold: float = DEFAULT_UNKNOWN_THRESHOLD
    init_source: str = "random"
    code_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    weights_dtype: str = "float32"
    sha256: str = ""

    @property
    def fame_config(self) -> FAMEConfig:
        return FAMEConfig.from_dict(self.config)

    @property
    def input_size(self) -> int:
        return int(self.config["img_size"])

    @property
    def clip_len(self) -> int:
        return int(self.config["clip_len"])

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.config["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.config["std"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_meta(model: FAME, model_name: str, classes: list[str], **fields: Any) -> CheckpointMeta:
    if len(classes) != model.config.num_classes:
        raise ValueError(f"{len(classes)} class names for {model.config.num_classes} outputs")
    config = dataclasses.replace(model.config, pretrained=None).to_dict()
    return CheckpointMeta(
        model_name=model_name,
        config=config,
        classes=list(classes),
        init_source=model.init_source,
        **fields,
    )


def save_checkpoint(
    path: str | Path, model: FAME, meta: CheckpointMeta, *, fp16: bool = False
) -> str:
    """Writes atomically (temp file + rename); returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    state = {
        k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    meta = dataclasses.replace(meta, weights_dtype=str(dtype).removeprefix("torch."), sha256="")
    payload = {"format": CHECKPOINT_FORMAT, "meta": meta.to_dict(), "state_dict": state}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return file_sha256(path)


def read_meta(path: str | Path) -> CheckpointMeta:
    return _read(path)[1]


def _read(path: str | Path) -> tuple[dict[str, Any], CheckpointMeta]:
    path = Path(path)
    if not path.is_file():
        raise ModelMissingError(f"FAME checkpoint not found at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the cause (often a long unpickler message) stays chained
        raise FameError(
            f"{path} is not a FAME checkpoint, or is damaged: torch.load cannot read it "
            f"({type(e).__name__}); `fame train` writes them",
            code=ErrorCode.MODEL_ERROR,
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise FameError(f"{path} is not a {CHECKPOINT_FORMAT} file", code=ErrorCode.MODEL_ERROR)
    try:
        meta = CheckpointMeta(**{**payload["meta"], "sha256": file_sha256(path)})
        _check_meta(meta)
    except (TypeError, ValueError, KeyError) as e:
        raise FameError(f"{path}: bad metadata: {e}", code=ErrorCode.MODEL_ERROR) from e
    return payload, meta


def _check_meta(meta: CheckpointMeta) -> None:
    """What would otherwise pass loading and fail on every video: a class list that does not
    match the head, or duplicate class names."""
    outputs = meta.fame_config.num_classes
    if len(meta.classes) != outputs:
        raise ValueError(f"{len(meta.classes)} class names for a head of {outputs} outputs")
    if len(set(meta.classes)) != len(meta.classes):
        raise ValueError(f"duplicate class names in {meta.classes}")


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[FAME, CheckpointMeta]:
    """The model in eval mode, float32 on ``device``, and its metadata."""
    payload, meta = _read(path)
    model = FAME(dataclasses.replace(meta.fame_config, pretrained=None))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # weights of another architecture than the config says
        raise FameError(
            f"{path}: weights do not fit its config: {e}", code=ErrorCode.MODEL_ERROR
        ) from e
    model.init_source = meta.init_source
    return model.to(device).eval(), meta
