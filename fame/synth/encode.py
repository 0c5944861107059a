"""H.264 encoding at a fixed CRF through PyAV's libx264, as DFDM compressed its videos.

CRF 0 is x264's lossless mode; 10 and 23 are DFDM's light and default compression. The stream is
4:2:0 like ordinary H.264 video. x264 output is deterministic for the same input and settings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_h264(
    path: Path, frames: Iterable[np.ndarray], fps: Fraction, crf: int, x264_preset: str
) -> None:
    """RGB uint8 frames [H, W, 3] (H, W even) -> an H.264 mp4 at ``path``."""
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": x264_preset}
        opened = False
        for rgb in frames:
            if not opened:
                stream.height, stream.width = rgb.shape[:2]
                opened = True
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            container.mux(stream.encode(frame))
        if not opened:
            raise ValueError(f"no frames to encode into {path}")
        container.mux(stream.encode(None))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
