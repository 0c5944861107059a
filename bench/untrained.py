"""An untrained checkpoint for the speed benchmarks: random weights, the service's six classes.
Speed does not depend on the weights, and no benchmark should wait on training."""

from __future__ import annotations

from pathlib import Path

CLASSES = ["real", "faceswap", "lightweight", "iae", "dfaker", "dfl-h128"]


def make_checkpoint(directory: Path, model_name: str) -> Path:
    """An untrained checkpoint of `model_name` (a `fame.model` registry name) in `directory`."""
    import torch

    from fame.checkpoint import build_meta, save_checkpoint
    from fame.model import create_model

    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), pretrained=None)
    path = directory / f"{model_name}-untrained.pt"
    save_checkpoint(path, model, build_meta(model, model_name, CLASSES))
    return path
