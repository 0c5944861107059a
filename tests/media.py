"""Small real videos for tests, cut from the shared face videos with PyAV."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fame.video.decode import DecodeLimits, SamplingPolicy, Video


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


def write_video(
    path: Path, frames: list[np.ndarray], fps: float, crf: int = 18, first_pts: int = 0
) -> Path:
    """H.264 (even dimensions) from RGB frames, in the container the suffix names; timestamps
    start at ``first_pts`` frames (a segment cut from a longer video keeps its own)."""
    height, width = (d - d % 2 for d in frames[0].shape[:2])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]))
            if first_pts:
                frame.pts, frame.time_base = first_pts + i, Fraction(1, round(fps))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def split_video(
    source: Path,
    out_dir: Path,
    parts: int,
    limit: int | None = None,
    suffix: str = ".mp4",
    keep_timestamps: bool = False,
) -> list[Path]:
    """Cut a video into `parts` consecutive segment files; with ``keep_timestamps`` each keeps
    the timestamps it had in the whole video, as a stream cut without re-timing does."""
    frames, fps = read_frames(source, limit)
    size = -(-len(frames) // parts)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_video(
            out_dir / f"{source.stem}_part{i}{suffix}",
            frames[i * size : (i + 1) * size],
            fps,
            first_pts=i * size if keep_timestamps else 0,
        )
        for i in range(parts)
    ]


def sampled_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames at the service's sampling (an image has one); skips the test
    when the file is missing (the GPU run carries only a few of the shared files)."""
    if not path.exists():
        pytest.skip(f"{path} not in the shared folder")
    with Video(path, DecodeLimits()) as video:
        return [frame.rgb for frame in itertools.islice(video.frames(SamplingPolicy()), count)]
