"""Train one face-swap generator: shared encoder, one decoder per identity, reconstruction loss.

Every step draws a batch of warped faces per identity and reconstructs each through that
identity's decoder (L1 + DSSIM, as Faceswap's default). Seeded numpy draws plus deterministic
torch make two runs with the same seed, device and thread count give the same weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fame.synth.generators import FaceSwapModel
from fame.synth.presets import SynthPreset
from fame.synth.warp import random_warp

SSIM_WINDOW_PX = 7
DSSIM_WEIGHT = 1.0
ADAM_BETAS = (0.5, 0.999)


@dataclass
class TrainingLog:
    epoch_losses: list[float]
    steps: int


def dssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 with a uniform window, averaged over pixels and channels."""
    c1, c2 = 0.01**2, 0.03**2

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, SSIM_WINDOW_PX, stride=1)

    mu_p, mu_t = pool(prediction), pool(target)
    var_p = pool(prediction * prediction) - mu_p**2
    var_t = pool(target * target) - mu_t**2
    covariance = pool(prediction * target) - mu_p * mu_t
    ssim = ((2 * mu_p * mu_t + c1) * (2 * covariance + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )
    return ((1.0 - ssim) / 2.0).mean()


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int | None) -> Iterator[None]:
    """Seeded, deterministic kernels and (optionally) a fixed thread count; restored after."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def to_model_input(faces: np.ndarray, size_px: int, device: torch.device) -> torch.Tensor:
    """float [B, S, S, 3] in [0, 1] (or uint8) -> [B, 3, size_px, size_px] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2)
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    tensor = tensor.to(device)
    if tensor.shape[-1] != size_px:
        tensor = F.interpolate(tensor, size=(size_px, size_px), mode="area")
    return tensor


def train_generator(
    model: FaceSwapModel,
    faces_by_identity: Sequence[np.ndarray],
    preset: SynthPreset,
    rng: np.random.Generator,
    device: torch.device,
) -> TrainingLog:
    """Trains ``model`` in place on uint8 crops [N_k, S, S, 3] per identity."""
    if len(faces_by_identity) != model.identities:
        raise ValueError(
            f"{len(faces_by_identity)} identities of faces for a {model.identities}-way model"
        )
    for k, faces in enumerate(faces_by_identity):
        if len(faces) == 0:
            raise ValueError(f"identity {k} has no faces to train on")
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.learning_rate, betas=ADAM_BETAS)
    epoch_losses: list[float] = []
    running: list[float] = []
    bar = tqdm(range(preset.train_steps), desc=f"train {model.spec.name}", unit="step")
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        for k, faces in enumerate(faces_by_identity):
            batch = faces[rng.integers(0, len(faces), size=preset.batch_size)]
            warped, target = random_warp(batch, rng)
            prediction = model(to_model_input(warped, model.input_px, device), k)
            expected = to_model_input(target, model.output_px, device)
            loss = (
                loss + F.l1_loss(prediction, expected) + DSSIM_WEIGHT * dssim(prediction, expected)
            )
        loss = loss / len(faces_by_identity)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        running.append(float(loss.detach()))
        if (step + 1) % preset.epoch_steps == 0 or step + 1 == preset.train_steps:
            epoch_losses.append(float(np.mean(running)))
            running = []
            bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
    model.eval()
    return TrainingLog(epoch_losses=epoch_losses, steps=preset.train_steps)


@torch.no_grad()
def render_identity(
    model: FaceSwapModel, crops: np.ndarray, identity: int, device: torch.device, batch: int = 64
) -> np.ndarray:
    """uint8 crops [N, S, S, 3] re-rendered as ``identity``, uint8 [N, S, S, 3] (same S)."""
    size_px = crops.shape[1]
    out = []
    for start in range(0, len(crops), batch):
        faces = to_model_input(crops[start : start + batch], model.input_px, device)
        generated = model(faces, identity)
        if generated.shape[-1] != size_px:
            generated = F.interpolate(
                generated, size=(size_px, size_px), mode="bilinear", align_corners=False
            )
        pixels = (generated.clamp(0, 1) * 255.0).round().to(torch.uint8)
        out.append(pixels.permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros_like(crops)
