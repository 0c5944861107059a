"""Which arithmetic the model runs in: one rule for the service, `fame attribute` and evaluation.

``auto`` is bf16 autocast on CUDA and on CPUs that compute bf16 in hardware (AVX512-BF16 or AMX),
fp32 elsewhere, where emulated bf16 would be slower than fp32. On the 2-core AVX512-BF16 machine
the VGG encoder ran 1.8x faster in bf16 than in fp32, with embeddings within 0.3% (relative L2):
docs/benchmarks.md. Depends on torch alone, so the model benchmark runs where nothing else is
installed.
"""

from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """``auto`` -> bf16 on CUDA and on CPUs with native bf16, else fp32; others as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return "bf16" if precision == "bf16" else "fp32"
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"
