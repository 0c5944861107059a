"""An untrained checkpoint for the speed benchmarks: random weights, the service's six classes.
Speed does not depend on the weights, and no benchmark should wait on training."""

from __future__ import annotations

from pathlib import Path

CLASSES = ["real", "faceswap", "lightweight", "iae", "dfaker", "dfl-h128"]
CALIBRATION_CROPS = 128


def make_checkpoint(
    directory: Path,
    model_name: str,
    int8_videos: list[Path] | None = None,
    detector: Path | None = None,
) -> Path:
    """An untrained checkpoint of `model_name` (a `fame.model` registry name) in `directory`.

    With ``int8_videos`` and no GPU, its int8 encoder goes beside it, calibrated on the faces
    of those videos, as `fame quantize` does for a deployment: the engine's ``auto`` precision
    then runs int8 on this CPU."""
    import torch

    from fame.checkpoint import build_meta, save_checkpoint
    from fame.model import create_model

    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), pretrained=None)
    path = directory / f"{model_name}-untrained.pt"
    save_checkpoint(path, model, build_meta(model, model_name, CLASSES))
    if int8_videos and not torch.cuda.is_available():
        from fame.quantize import quantize_checkpoint

        quantize_checkpoint(path, int8_videos, CALIBRATION_CROPS, detector)
    return path
