"""GPU-only probe: can NVDEC (``FAME_HWACCEL=cuda``) decode in a process where PyTorch already
holds the GPU, and how fast is it against software decoding, one process, frames back on the
host. Why: libav shares the device's primary CUDA context (``primary_ctx``) only with the flags
it sets itself (blocking sync); once PyTorch has made that context active with its own flags,
libav refuses it ("Operation not supported"). One JSON line per step; run on a lent GPU with
``python3 -m bench.probe_nvdec`` (seconds; needs driving_d11 and source_s32 under
``$FAME_SHARED_DIR/data/faces``). Output of 2026-11-26:
``bench/results/gpu-h200-2026-11-26-s8-nvdec-probe.txt``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import av
import av.codec.hwaccel
import numpy as np

from bench.frontend import _decode
from fame.faces.frontend import FrontEndConfig
from fame.video.decode import Video, hwaccel_unavailable


def main() -> None:
    shared = Path(os.environ.get("FAME_SHARED_DIR", "../shared"))
    videos = [shared / "data/faces/driving_d11.mp4", shared / "data/faces/source_s32.mp4"]
    _emit(stage="before torch", reason=hwaccel_unavailable("cuda"), no_primary=_open({}))
    for path in videos:
        _decode_fps(path, "none")  # warm the file cache
        software, nvdec = _decode_fps(path, "none"), _decode_fps(path, "cuda")
        _emit(stage="before torch", video=path.name, software=software, nvdec=nvdec)
    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    # `reason` below is the first line's answer, cached (the probe runs once per process);
    # `primary` is what the service's workers meet: its options, after PyTorch took the GPU
    cached, primary = hwaccel_unavailable("cuda"), _open({"primary_ctx": "1"})
    _emit(stage="after torch cuda init", reason=cached, no_primary=_open({}), primary=primary)
    for path in videos:
        software, nvdec = _decode_fps(path, "none"), _decode_fps(path, "cuda")
        _emit(stage="after torch", video=path.name, software=software, nvdec=nvdec)
    from fame.faces.detector import ScrfdDetector

    detector = ScrfdDetector(shared / "models/scrfd_500m_bnkps.onnx")
    detector.detect(np.zeros((512, 512, 3), np.uint8))
    _emit(stage="after detector", name=detector.name, reason=cached, no_primary=_open({}))
    for path in videos:
        _emit(stage="after detector", video=path.name, nvdec=_decode_fps(path, "cuda"))


def _open(options: dict[str, object]) -> str | None:
    """Why the CUDA device cannot be created with these options, or None."""
    try:
        hwaccel = av.codec.hwaccel.HWAccel("cuda", allow_software_fallback=True, options=options)
        hwaccel.create(av.codec.Codec("h264", "r"))
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def _decode_fps(path: Path, hwaccel: str) -> dict[str, Any]:
    config = dataclasses.replace(FrontEndConfig(), hwaccel=hwaccel)
    try:
        seconds, sampled = _decode(path, config, None)
        with Video(path, config.limits, hwaccel) as video:
            next(video.frames(config.sampling))
            hardware = video.hardware_decoding
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    return {"fps": round(sampled / seconds, 1), "hardware": hardware}


def _emit(**fields: Any) -> None:
    print("PROBE " + json.dumps(fields, default=str), flush=True)


if __name__ == "__main__":
    main()
