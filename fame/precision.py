"""Which arithmetic the model runs in: one rule for the service, `fame attribute` and evaluation.

``auto`` is bf16 autocast on CUDA. On a CPU it is ``int8`` where the checkpoint has an int8
encoder (`fame.quantize`: the VGG encoder on ONNX Runtime's integer kernels, the rest in fp32),
else bf16 autocast on CPUs that compute bf16 in hardware (AVX512-BF16 or AMX), else fp32, where
emulated bf16 would be slower than fp32. ``int8`` is a CPU precision: on CUDA bf16 is faster.
On the 2-core AVX512-BF16 machine the VGG encoder ran 1.8x faster in bf16 than in fp32, with
embeddings within 0.3% (relative L2), and int8 2.3x faster than bf16: docs/benchmarks.md.
Depends on torch alone, so the model benchmark runs where nothing else is installed."""

from __future__ import annotations

from typing import Literal, cast

import torch

Precision = Literal["auto", "fp32", "bf16", "int8"]
Resolved = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device, int8_encoder: bool = False) -> Resolved:
    """``auto`` -> bf16 on CUDA; on a CPU int8 if ``int8_encoder`` (one exists for the
    checkpoint), else bf16 with native bf16, else fp32. Others as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("precision int8 runs the encoder on the CPU; on CUDA use bf16 or auto")
    if precision != "auto":
        return cast(Resolved, precision)
    if device.type == "cpu" and int8_encoder:
        return "int8"
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"
