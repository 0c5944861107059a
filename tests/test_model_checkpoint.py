"""Checkpoints keep weights and metadata together; loading fails clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fame.checkpoint import build_meta, file_sha256, load_checkpoint, read_meta, save_checkpoint
from fame.errors import FameError, ModelMissingError
from fame.model import create_model
from schemas.errors import ErrorCode

CLASSES = ["dfaker", "faceswap", "real"]


def _saved(tmp_path: Path, fp16: bool = False) -> tuple[torch.nn.Module, Path, str]:
    torch.manual_seed(0)
    model = create_model("fame_noattn_tiny", 3).eval()
    meta = build_meta(
        model, "fame_noattn_tiny", CLASSES, data_fingerprint="sha256:abc", unknown_threshold=0.4
    )
    path = tmp_path / "model.pt"
    return model, path, save_checkpoint(path, model, meta, fp16=fp16)


def test_roundtrip_restores_outputs_and_metadata(tmp_path: Path) -> None:
    model, path, digest = _saved(tmp_path)
    loaded, meta = load_checkpoint(path)
    x = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0])
    assert not loaded.training
    assert meta.sha256 == digest == file_sha256(path)
    assert (meta.classes, meta.model_name, meta.unknown_threshold) == (
        CLASSES,
        "fame_noattn_tiny",
        0.4,
    )
    assert (meta.input_size, meta.clip_len) == (64, 8)
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406))
    assert meta.data_fingerprint == "sha256:abc" and meta.code_version and meta.created_at
    assert meta.fame_config == loaded.config


def test_fp16_weights_load_as_float32(tmp_path: Path) -> None:
    model, path, _ = _saved(tmp_path, fp16=True)
    loaded, meta = load_checkpoint(path)
    assert meta.weights_dtype == "float16"
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(1, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0], atol=2e-2, rtol=2e-2)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(FameError) as info:
        read_meta(foreign)
    assert info.value.code == ErrorCode.MODEL_ERROR


def test_class_list_must_match_the_head(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="class names"):
        build_meta(create_model("fame_tiny", 3), "fame_tiny", ["a", "b"])


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda payload: payload["meta"].update(classes=["a", "real"]), "class names"),
        (lambda payload: payload["meta"].update(classes=["a", "a", "real"]), "duplicate"),
        (lambda payload: payload["meta"].update(surprise=1), "surprise"),
        (lambda payload: payload["meta"]["config"].update(lstm_hidden=7), "weights do not fit"),
    ],
)
def test_a_checkpoint_that_cannot_work_fails_at_load(
    tmp_path: Path, edit: Any, reason: str
) -> None:
    """Not at the first video: the service must not start with it."""
    _, path, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    with pytest.raises(FameError, match=reason) as info:
        load_checkpoint(path)
    assert info.value.code == ErrorCode.MODEL_ERROR
