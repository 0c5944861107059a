"""Sliding-window state of one video, carried across the segments that deliver it.

A long or live video arrives as several events (segment 0..n). Each face track keeps, between
segments, only what the next window needs: the per-frame embeddings (float16) of its last T-1
frames (`kept_from`), plus running evidence (sum of window probabilities, window count, the most
salient frames). Tracks of a new segment are linked to the previous
segment's tracks by box overlap. Everything here is pure and serialisable; the service persists
it between segments (Redis, or memory in the embedded mode).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fame.faces.tracker import iou_matrix

MAX_SALIENT = 16
LINK_MIN_IOU = 0.3


@dataclass
class TrackState:
    """One face track of a video, across segments (`track_id` is per video, stable)."""

    track_id: int
    last_box: list[float]
    first_frame: int
    last_frame: int
    start_s: float
    end_s: float
    frames: int = 0
    score_sum: float = 0.0
    windows: int = 0
    prob_sum: list[float] = field(default_factory=list)
    salient: list[tuple[float, int, float]] = field(default_factory=list)  # (weight, frame, s)
    next_window_start: int = 0  # position (in this track's frame sequence) of the next window
    positions: int = 0  # frames seen so far in this track
    tail_frames: list[int] = field(default_factory=list)  # global frame index per tail row
    tail_times: list[float] = field(default_factory=list)
    tail: NDArray[np.float16] = field(default_factory=lambda: np.zeros((0, 0), np.float16))

    def add_window(
        self,
        probs: NDArray[np.float32],
        attention: NDArray[np.float32],
        frames: list[int],
        times: list[float],
    ) -> None:
        """Fold one window's class probabilities and attention into the running evidence."""
        if not self.prob_sum:
            self.prob_sum = [0.0] * len(probs)
        self.prob_sum = [a + float(b) for a, b in zip(self.prob_sum, probs, strict=True)]
        self.windows += 1
        best = {frame: (weight, frame, t) for weight, frame, t in self.salient}
        for weight, frame, t in zip(attention.tolist(), frames, times, strict=True):
            if weight > 0 and weight > best.get(frame, (-1.0, 0, 0.0))[0]:
                best[frame] = (float(weight), int(frame), float(t))
        self.salient = sorted(best.values(), key=lambda x: (-x[0], x[1]))[:MAX_SALIENT]

    def mean_probs(self) -> NDArray[np.float64]:
        return np.asarray(self.prob_sum, np.float64) / max(self.windows, 1)


@dataclass
class VideoState:
    """Everything carried between the segments of one video."""

    video_id: str
    segments_seen: int = 0
    next_segment: int = 0
    next_track_id: int = 0
    frame_offset: int = 0
    time_offset_s: float = 0.0
    tracks: dict[int, TrackState] = field(default_factory=dict)

    def to_fields(self) -> dict[str, bytes]:
        """Serialise to hash fields: one JSON header, one float16 blob per track tail."""
        header: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "tracks"}
        header["tracks"] = {
            tid: {k: v for k, v in asdict(t).items() if k != "tail"}
            | {"tail_shape": list(t.tail.shape)}
            for tid, t in self.tracks.items()
        }
        fields = {"header": json.dumps(header).encode()}
        for tid, track in self.tracks.items():
            fields[f"tail:{tid}"] = np.ascontiguousarray(track.tail, np.float16).tobytes()
        return fields

    @classmethod
    def from_fields(cls, video_id: str, fields: dict[bytes, bytes]) -> VideoState:
        if not fields:
            return cls(video_id=video_id)
        header = json.loads(fields[b"header"])
        tracks: dict[int, TrackState] = {}
        for tid_text, data in header.pop("tracks").items():
            shape = tuple(data.pop("tail_shape"))
            blob = fields.get(f"tail:{tid_text}".encode(), b"")
            data["salient"] = [tuple(s) for s in data["salient"]]
            tail = np.frombuffer(blob, np.float16).reshape(shape).copy()
            tracks[int(tid_text)] = TrackState(**data, tail=tail)
        header["video_id"] = video_id
        return cls(**header, tracks=tracks)


def link_tracks(state: VideoState, first_boxes: list[NDArray[np.float32]]) -> list[int]:
    """Video-level track id for each new segment track: greedy best-IoU match against the
    previous segment's open tracks (their last box), else a fresh id."""
    old_ids = list(state.tracks)
    overlaps = iou_matrix(
        np.asarray(first_boxes, np.float32).reshape(-1, 4),
        np.asarray([state.tracks[tid].last_box for tid in old_ids], np.float32).reshape(-1, 4),
    )
    candidates = [
        (float(overlaps[new, k]), new, tid)
        for new in range(len(first_boxes))
        for k, tid in enumerate(old_ids)
    ]
    assigned: dict[int, int] = {}
    used: set[int] = set()
    for overlap, new, tid in sorted(candidates, reverse=True):
        if overlap < LINK_MIN_IOU or new in assigned or tid in used:
            continue
        assigned[new] = tid
        used.add(tid)
    ids = []
    for new in range(len(first_boxes)):
        if new not in assigned:
            assigned[new] = state.next_track_id
            state.next_track_id += 1
        ids.append(assigned[new])
    return ids


def kept_from(positions: int, clip_len: int, final: bool) -> int:
    """The first frame position a track keeps once its windows are scored: the last T-1 frames,
    every frame of every later full window (those start after ``positions - T``). The final tail
    window ends at the last frame and spans T frames; when the last segment brings the track no
    frame it would start at ``positions - T``, one frame before what is kept, and is scored on
    the T-1 frames kept (masked). One more frame per track measured 29.7 instead of 25.7 KiB of
    Redis per track (docs/service.md), for one context frame of one window in that case. A
    closed track keeps nothing."""
    return positions if final else max(0, positions - clip_len + 1)


def window_stride(clip_len: int, stride: int | None) -> int:
    """The windows' stride in frames: as given, else half a clip. A stride beyond the clip length
    would leave frames between windows unscored, so it is refused (as the service refuses
    ``FAME_WINDOW_STRIDE``), before anything is loaded or run."""
    if stride is None:
        return max(1, clip_len // 2)
    if not 1 <= stride <= clip_len:
        raise ValueError(f"stride must be in 1..{clip_len} (the clip length), got {stride}")
    return stride


def plan_windows(
    positions: int, next_start: int, clip_len: int, stride: int, final: bool, has_windows: bool
) -> tuple[list[tuple[int, int]], int]:
    """Windows [start, end) over a track's frame positions that can be evaluated now.

    Full windows start at ``next_start, next_start + stride, ...`` while they fit. On the final
    segment a track that never got a full window gets one masked (short) window over what it has,
    and the frames after the last full window get one tail window ending at the last frame.
    Returns the windows and the next start position.
    """
    if clip_len < 1 or not 1 <= stride <= clip_len:
        raise ValueError(
            f"need clip_len >= 1 and 1 <= stride <= clip_len, got {clip_len}, {stride}"
        )
    windows: list[tuple[int, int]] = []
    start = next_start
    while start + clip_len <= positions:
        windows.append((start, start + clip_len))
        start += stride
    if final and positions > 0:
        covered_to = (
            windows[-1][1] if windows else (start - stride + clip_len if has_windows else 0)
        )
        if (not windows and not has_windows) or covered_to < positions:
            windows.append((max(0, positions - clip_len), positions))
    return windows, start
