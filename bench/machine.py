"""What the numbers were measured on, and the device's peak FLOP/s they are compared against.

Absolute speeds on a shared CPU are only indicative, so every result file carries the machine,
the library versions and the command, and every fraction of peak names the peak it divides by.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

# Vendor dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device name.
GPU_BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(dev: torch.device) -> None:
    """Wait for queued kernels so that wall-clock timings cover the work."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def nominal_cpu_peak_flops() -> float | None:
    """fp32 upper bound: cores x clock x FLOP/cycle from the vector ISA (two FMA pipes).

    An estimate from /proc/cpuinfo (the clock there is the base clock; 512-bit FMA is assumed to
    run at full width, true of Zen 5 and server Intel, half of that on Zen 4)."""
    mhz = cpu_mhz()
    if mhz is None:
        return None
    flags = cpu_flags()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    flop_per_cycle = 2 * 2 * lanes  # two FMA pipes, an FMA is two FLOPs
    return (os.cpu_count() or 1) * mhz * 1e6 * flop_per_cycle


def measured_matmul_flops(dev: torch.device, size: int, repeats: int = 3) -> float:
    """Best-of-`repeats` dense matmul FLOP/s (fp32 on CPU, bf16 on CUDA): the practical peak."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    a @ b
    synchronize(dev)
    best = float("inf")
    inner = 20 if dev.type == "cuda" else 1
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(inner):
            a @ b
        synchronize(dev)
        best = min(best, (time.perf_counter() - started) / inner)
    return 2.0 * size**3 / best


def peak_flops(dev: torch.device, quick: bool) -> dict[str, Any]:
    """The denominators for "fraction of peak": measured matmul, and the nominal figure."""
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        nominal = next((v for k, v in GPU_BF16_PEAK_FLOPS.items() if k in name), None)
        measured = measured_matmul_flops(dev, 4096 if quick else 8192)
        return {
            "precision": "bf16",
            "measured_matmul_flops": measured,
            "nominal_flops": nominal,
            "nominal_source": "vendor dense bf16 spec" if nominal else None,
        }
    return {
        "precision": "fp32",
        "measured_matmul_flops": measured_matmul_flops(dev, 1536 if quick else 3072),
        "nominal_flops": nominal_cpu_peak_flops(),
        "nominal_source": "estimate: cores x cpuinfo MHz x FMA FLOP/cycle",
    }


def machine_info(command: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_mhz": cpu_mhz(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "command": " ".join(command),
    }
    try:  # the media stack is absent on a bare GPU image, where only the model section runs
        import av
        import onnxruntime

        info |= {
            "onnxruntime": onnxruntime.__version__,
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "pyav": av.__version__,
        }
    except ImportError as error:
        info["missing"] = str(error)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


class GpuBusy:
    """How busy GPU 0 was while a block ran: NVML's utilisation (the share of each sampling
    period in which a kernel ran, any process's), read every `interval_s`. Why: it says whether
    several front-end processes' detections take turns on one GPU (near 100 %) or leave it idle.
    ``result()`` is None where NVML is missing (no NVIDIA driver, or no nvidia-ml-py)."""

    def __init__(self, interval_s: float = 0.05, read: Callable[[], int] | None = None) -> None:
        self._interval_s = interval_s
        self._read = read if read is not None else _nvml_utilisation()
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        if self._read is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> dict[str, float] | None:
        if not self._samples:
            return None
        return {
            "mean_percent": sum(self._samples) / len(self._samples),
            "max_percent": float(max(self._samples)),
            "samples": float(len(self._samples)),
        }

    def _sample(self) -> None:
        assert self._read is not None
        while not self._stop.is_set():
            self._samples.append(self._read())
            self._stop.wait(self._interval_s)


def _nvml_utilisation() -> Callable[[], int] | None:
    try:
        import pynvml  # nvidia-ml-py: in the lent GPU image, not a dependency of ours

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no module, no driver, no device: nothing to read
        return None
    return lambda: int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
