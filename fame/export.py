"""TorchScript and ONNX exports of a checkpoint, checked against eager outputs.

TorchScript (``fame.ts``) is traced with all three entry points the service uses: ``forward``,
``embed_frames`` and ``classify_embeddings``. ONNX (``fame.onnx``) is the full clip model with
inputs ``clips`` float [B, T, 3, S, S] and ``mask`` bool [B, T], outputs ``logits`` and
``attention``; batch and clip length are dynamic. ``meta.json`` beside them is the checkpoint's
metadata, so an export is as self-describing as the checkpoint.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fame.checkpoint import CheckpointMeta, load_checkpoint
from fame.model import FAME

TORCHSCRIPT_FILE = "fame.ts"
ONNX_FILE = "fame.onnx"
META_FILE = "meta.json"
ONNX_OPSET = 17


class _ClipModel(torch.nn.Module):
    """forward(clips, mask) with a required mask: export graphs need fixed signatures."""

    def __init__(self, model: FAME) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, attention = self.model(clips, mask)
        return logits, attention


def example_inputs(model: FAME, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded clips with the second one half padded, so masking is part of what is checked."""
    c = model.config
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(batch, c.clip_len, 3, c.img_size, c.img_size, generator=generator)
    mask = torch.ones(batch, c.clip_len, dtype=torch.bool)
    mask[1:, max(1, c.clip_len // 2) :] = False
    return clips, mask


def export_torchscript(model: FAME, path: str | Path) -> Path:
    model = model.eval()
    clips, mask = example_inputs(model)
    frames = clips.flatten(0, 1)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated upstream but remains the one format C++/libtorch hosts load;
        # the LSTM's shape checks trigger tracer warnings that do not apply to fixed-size input.
        warnings.simplefilter("ignore", (FutureWarning, torch.jit.TracerWarning))  # type: ignore[attr-defined]
        embeddings = model.embed_frames(frames).view(*clips.shape[:2], -1)
        traced = torch.jit.trace_module(  # type: ignore[no-untyped-call]
            model,
            {
                "forward": (clips, mask),
                "embed_frames": (frames,),
                "classify_embeddings": (embeddings, mask),
            },
            check_trace=False,
        )
    traced.save(str(path))
    return Path(path)


def export_onnx(model: FAME, path: str | Path) -> Path:
    return _to_onnx(
        _ClipModel(model.eval()),
        example_inputs(model),
        path,
        {"clips": {0: "batch", 1: "time"}, "mask": {0: "batch", 1: "time"}},
        {"logits": {0: "batch"}, "attention": {0: "batch", 1: "time"}},
    )


class _Encoder(torch.nn.Module):
    def __init__(self, model: FAME) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.embed_frames(frames)


def export_encoder_onnx(model: FAME, path: str | Path) -> Path:
    """The encoder alone, dynamic batch: normalised frames [N, 3, S, S] -> embeddings [N, D]."""
    size = model.config.img_size
    return _to_onnx(
        _Encoder(model.eval()),
        (torch.zeros(2, 3, size, size),),
        path,
        {"frames": {0: "n"}},
        {"embeddings": {0: "n"}},
    )


def _to_onnx(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: str | Path,
    input_axes: dict[str, dict[int, str]],
    output_axes: dict[str, dict[int, str]],
) -> Path:
    module.eval()  # a wrapper starts in training mode, and would put BatchNorm in it too
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter warns about LSTM batch sizes; our LSTMs take no initial state,
        # which is the case the warning says is safe.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=list(input_axes),
            output_names=list(output_axes),
            dynamic_axes={**input_axes, **output_axes},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return Path(path)


@dataclass(frozen=True)
class Parity:
    """Largest absolute differences to eager outputs over the checked inputs."""

    torchscript_max_abs: float
    onnx_max_abs: float


def check_parity(model: FAME, out_dir: str | Path, batch: int = 3) -> Parity:
    """Compares both exports with eager on a batch size other than the traced one."""
    import onnxruntime

    out_dir = Path(out_dir)
    clips, mask = example_inputs(model.eval(), batch=batch)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        ref_logits, ref_attention = model(clips, mask)
        scripted = torch.jit.load(str(out_dir / TORCHSCRIPT_FILE))  # type: ignore[no-untyped-call]
        ts_logits, ts_attention = scripted(clips, mask)
    session = onnxruntime.InferenceSession(
        str(out_dir / ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    onnx_logits, onnx_attention = session.run(None, {"clips": clips.numpy(), "mask": mask.numpy()})

    def diff(a: torch.Tensor | np.ndarray, b: torch.Tensor) -> float:
        return float(np.abs(np.asarray(a) - b.numpy()).max())

    return Parity(
        max(diff(ts_logits, ref_logits), diff(ts_attention, ref_attention)),
        max(diff(onnx_logits, ref_logits), diff(onnx_attention, ref_attention)),
    )


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> tuple[CheckpointMeta, Parity]:
    """Writes fame.ts, fame.onnx and meta.json to ``out_dir`` and checks parity."""
    model, meta = load_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_torchscript(model, out_dir / TORCHSCRIPT_FILE)
    export_onnx(model, out_dir / ONNX_FILE)
    (out_dir / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2))
    return meta, check_parity(model, out_dir)
