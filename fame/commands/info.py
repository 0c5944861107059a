"""`fame info`: what this installation can run on (versions, ONNX Runtime providers, CUDA,
NVDEC)."""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "info",
        help="print versions, ONNX Runtime distribution/providers, CUDA and NVDEC availability",
        description="Print what this installation can run on, as JSON.",
    )
    parser.set_defaults(func=run)


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, object]:
    """Facts about the runtime, used by `fame info` and the service's startup log."""
    import onnxruntime
    import torch

    from fame.video.decode import hwaccel_unavailable

    nvdec_unavailable = hwaccel_unavailable("cuda")
    return {
        "python": platform.python_version(),
        "fame_stream": _dist_version("fame-stream"),
        "torch": torch.__version__,
        "torch_cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "onnxruntime_distributions": {
            name: _dist_version(name)
            for name in ("onnxruntime", "onnxruntime-gpu")
            if _dist_version(name) is not None
        },
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "av": _dist_version("av"),
        # FAME_HWACCEL=cuda: null when this process can open NVDEC, else why not
        "nvdec_unavailable": nvdec_unavailable,
        "nvdec_hint": nvdec_hint(nvdec_unavailable),
        "insightface": _dist_version("insightface"),
    }


def nvdec_hint(unavailable: str | None) -> str:
    """What ``nvdec_unavailable`` means for the user, in one sentence."""
    if unavailable is None:
        return (
            "hardware decoding (NVDEC) works here: FAME_HWACCEL=cuda decodes on the GPU, unless "
            "the detector runs on CUDA through PyTorch (libav cannot share PyTorch's CUDA "
            "context, so workers fall back to software); measured slower than software decoding "
            "on a 16-core H200 host (docs/benchmarks.md)"
        )
    return (
        "hardware decoding (NVDEC) is unavailable to this process (nvdec_unavailable says why): "
        "FAME_HWACCEL=cuda would fall back to software decoding"
    )


def run(args: argparse.Namespace) -> int:
    print(json.dumps(collect(), indent=2))
    return 0
