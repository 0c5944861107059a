"""The int8 encoder: calibration writes a stamped file, the engine and evaluation run it where
the precision resolves to int8, its embeddings stay close to fp32, and a file made for other
weights or a missing one is refused at startup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fame import precision
from fame.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_meta
from fame.cli import main as fame_main
from fame.data.cache import CROP_SIZE
from fame.errors import FameError, ModelMissingError
from fame.faces.frontend import FrontEnd, FrontEndConfig
from fame.inference import InferenceEngine
from fame.precision import resolve_precision
from fame.quantize import (
    Int8Encoder,
    find_int8_encoder,
    model_input,
    quantize_encoder,
    sidecar_path,
)
from fame.video.fetch import FetchPolicy
from schemas.errors import ErrorCode

CPU = torch.device("cpu")


def _smooth_crops(count: int, size: int = 112, seed: int = 0) -> np.ndarray:
    """Face-like inputs for calibration: blurred noise, not white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (count, size // 8, size // 8, 3)).astype(np.float32)
    crops = coarse.repeat(8, axis=1).repeat(8, axis=2)
    return np.clip(crops + rng.normal(0, 8, crops.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def quantized(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny checkpoint with its int8 sidecar beside it."""
    folder = tmp_path_factory.mktemp("int8")
    checkpoint = folder / "tiny.pt"
    shutil.copy(tiny_checkpoint, checkpoint)
    model, meta = load_checkpoint(checkpoint)
    report = quantize_encoder(model, meta.sha256, _smooth_crops(64), sidecar_path(checkpoint))
    assert report.path == folder / "tiny.int8.onnx"
    assert report.calibration_crops == 64
    assert 0 < report.embedding_rel_l2 < 0.05
    return checkpoint


def test_auto_takes_int8_on_a_cpu_only_where_an_int8_encoder_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU, int8_encoder=True) == "int8"
    assert resolve_precision("auto", CPU, int8_encoder=False) == "bf16"
    assert resolve_precision("auto", torch.device("cuda"), int8_encoder=True) == "bf16"
    assert resolve_precision("fp32", CPU, int8_encoder=True) == "fp32"  # explicit wins
    with pytest.raises(ValueError, match="int8 runs the encoder on the CPU"):
        resolve_precision("int8", torch.device("cuda"))


def test_engine_runs_the_int8_encoder_close_to_fp32(quantized: Path) -> None:
    crops = _smooth_crops(24, seed=1)
    outputs = {}
    for name in ("fp32", "auto"):
        model, meta = load_checkpoint(quantized)
        engine = InferenceEngine(
            model, meta, precision=name, int8_encoder=find_int8_encoder(quantized)
        )
        expected_path = sidecar_path(quantized) if engine.precision == "int8" else None
        assert engine.int8_encoder_path == expected_path  # what the service logs
        try:
            outputs[engine.precision] = engine.embed(crops)
        finally:
            engine.close()
    e32, e8 = outputs["fp32"], outputs["int8"]
    assert not np.array_equal(e32, e8), "the int8 encoder did not run"
    assert np.linalg.norm(e8 - e32) / np.linalg.norm(e32) < 0.05


def test_int8_needs_an_encoder_made_from_the_same_weights(
    quantized: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    model, meta = load_checkpoint(quantized)
    with pytest.raises(ModelMissingError, match="fame quantize"):
        InferenceEngine(model, meta, precision="int8")
    with pytest.raises(FameError, match="was made from checkpoint") as caught:
        Int8Encoder(sidecar_path(quantized), "0" * 64)
    assert caught.value.code is ErrorCode.MODEL_ERROR
    with pytest.raises(ModelMissingError, match="FAME_INT8_ENCODER"):
        find_int8_encoder(quantized, tmp_path / "missing.onnx")
    assert find_int8_encoder(tiny_checkpoint) is None  # no sidecar beside the original
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    with pytest.raises(FameError, match="cannot load int8 encoder"):
        Int8Encoder(garbage, meta.sha256)


def test_shipped_checkpoint_has_a_current_int8_encoder(shared: Path, detector: Path) -> None:
    """The committed sidecar belongs to the committed checkpoint (re-run `fame quantize` after
    retraining), and on real face crops its embeddings stay within a few percent of fp32 and its
    probabilities within a hundredth. (Static int8 scales fit faces: on noise it drifts more.)"""
    sidecar = find_int8_encoder(DEFAULT_CHECKPOINT)
    assert sidecar is not None, "checkpoints/fame_default.int8.onnx is missing"
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    encoder = Int8Encoder(sidecar, meta.sha256)
    video = shared / "data" / "faces" / "driving_d19.mp4"
    frontend = FrontEnd(
        FrontEndConfig(
            fetch=FetchPolicy(file_roots=(video.parent,)),
            detector_path=str(detector),
            crop_size_px=CROP_SIZE,
        )
    )
    track = frontend.process(video.as_uri()).dominant_track
    assert track is not None and len(track.crops) >= 32
    x = model_input(model, track.crops[:32])
    with torch.inference_mode():
        e32 = model.embed_frames(torch.from_numpy(x))
        e8 = torch.from_numpy(encoder(x))
        windows = torch.stack([e32[:16], e32[16:]]), torch.stack([e8[:16], e8[16:]])
        p32, p8 = (torch.softmax(model.classify_embeddings(w)[0], -1) for w in windows)
    assert torch.linalg.norm(e8 - e32) / torch.linalg.norm(e32) < 0.05
    assert (p8 - p32).abs().max() < 0.01


def test_quantize_command_calibrates_on_video_faces(
    tiny_checkpoint: Path,
    shared: Path,
    detector: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "encoder.int8.onnx"
    folder = tmp_path / "videos" / "nested"  # folders are searched recursively
    folder.mkdir(parents=True)
    shutil.copy(shared / "data" / "faces" / "driving_d0.mp4", folder)
    (folder / "notes.txt").write_text("not a video")
    code = fame_main(
        [
            "quantize",
            str(tmp_path / "videos"),
            "--checkpoint",
            str(tiny_checkpoint),
            "--detector",
            str(detector),
            "--crops",
            "20",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["calibration_crops"] == 20 and line["videos"] == 1
    assert line["checkpoint_sha256"] == read_meta(tiny_checkpoint).sha256 != ""
    Int8Encoder(out, line["checkpoint_sha256"])  # loads, stamp matches
    with pytest.raises(SystemExit, match="does not exist"):
        fame_main(["quantize", str(tmp_path / "missing.mp4"), "--checkpoint", str(tiny_checkpoint)])
