"""Small real videos for tests, cut from the shared face videos with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def read_frames(path: Path, limit: int | None = None) -> tuple[list[np.ndarray], float]:
    """RGB frames of a video and its frame rate."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) >= limit:
                break
    return frames, fps


def write_video(path: Path, frames: list[np.ndarray], fps: float, crf: int = 18) -> Path:
    """H.264 mp4 (even dimensions) from RGB frames."""
    height, width = (d - d % 2 for d in frames[0].shape[:2])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def split_video(source: Path, out_dir: Path, parts: int, limit: int | None = None) -> list[Path]:
    """Cut a video into `parts` consecutive segment files."""
    frames, fps = read_frames(source, limit)
    size = -(-len(frames) // parts)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_video(out_dir / f"{source.stem}_part{i}.mp4", frames[i * size : (i + 1) * size], fps)
        for i in range(parts)
    ]
