"""Link per-frame face boxes into tracks by box overlap (IoU), in pure numpy.

Frames are the SAMPLED frames, counted by `IouTracker.update` calls ("steps"). A track survives
``max_lost_steps`` steps without a detection (a blink, a turned head), so one person keeps one id.
Matching is greedy by highest IoU, which equals optimal assignment when faces do not overlap, the
normal case for faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrackerConfig:
    iou_threshold: float = 0.3
    max_lost_steps: int = 8
    min_track_length: int = 3
    min_face_px: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_lost_steps < 0:
            raise ValueError(f"max_lost_steps must be >= 0, got {self.max_lost_steps}")
        if self.min_track_length < 1:
            raise ValueError(f"min_track_length must be >= 1, got {self.min_track_length}")
        if self.min_face_px < 0:
            raise ValueError(f"min_face_px must be >= 0, got {self.min_face_px}")


@dataclass(frozen=True)
class TrackStats:
    """Quality of one track: ``coverage`` is the share of all steps with this face detected."""

    length: int
    mean_score: float
    mean_box_px: float
    coverage: float


@dataclass
class Track:
    track_id: int
    steps: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def last_box(self) -> np.ndarray:
        return self.boxes[-1]

    def stats(self, total_steps: int) -> TrackStats:
        boxes = np.stack(self.boxes)
        sides = np.sqrt(
            np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
            * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        )
        return TrackStats(
            length=len(self.steps),
            mean_score=float(np.mean(self.scores)),
            mean_box_px=float(np.mean(sides)),
            coverage=len(self.steps) / max(total_steps, 1),
        )


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] (x1, y1, x2, y2)."""
    a = a.reshape(-1, 4).astype(np.float64)
    b = b.reshape(-1, 4).astype(np.float64)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    ious: np.ndarray = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return ious


def greedy_pairs(ious: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs of an IoU matrix, highest IoU first, each row and column used once,
    none below ``threshold``: optimal when faces do not overlap (see the module docstring)."""
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_columns: set[int] = set()
    for flat in np.argsort(-ious, axis=None, kind="stable"):
        row, column = divmod(int(flat), ious.shape[1])
        if ious[row, column] < threshold:
            break
        if row in used_rows or column in used_columns:
            continue
        used_rows.add(row)
        used_columns.add(column)
        pairs.append((row, column))
    return pairs


class IouTracker:
    """Feed one frame's detections per `update`; read the kept tracks with `finished_tracks`."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[Track] = []
        self._active: list[Track] = []
        self._step = 0

    @property
    def steps(self) -> int:
        return self._step

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Track id for each detection (int64 [K]); -1 for a face smaller than ``min_face_px``."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if boxes.shape[0] != scores.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
        ids = np.full(boxes.shape[0], -1, dtype=np.int64)
        candidates = np.flatnonzero(self._big_enough(boxes))
        matches = self._match(boxes[candidates])
        for det_pos, track in matches.items():
            self._extend(track, int(candidates[det_pos]), boxes, scores, ids)
        for det_pos, det in enumerate(candidates):
            if det_pos not in matches:
                track = Track(track_id=len(self._tracks))
                self._tracks.append(track)
                self._active.append(track)
                self._extend(track, int(det), boxes, scores, ids)
        self._active = [
            t for t in self._active if self._step - t.steps[-1] <= self.config.max_lost_steps
        ]
        self._step += 1
        return ids

    def finished_tracks(self, min_length: int | None = None) -> list[Track]:
        """Tracks with at least ``min_length`` (default ``min_track_length``) detections, longest
        first, then by id."""
        min_length = self.config.min_track_length if min_length is None else min_length
        kept = [t for t in self._tracks if len(t.steps) >= min_length]
        return sorted(kept, key=lambda t: (-len(t.steps), t.track_id))

    def _big_enough(self, boxes: np.ndarray) -> np.ndarray:
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big: np.ndarray = sides >= self.config.min_face_px
        return big

    def _match(self, boxes: np.ndarray) -> dict[int, Track]:
        if not self._active or boxes.shape[0] == 0:
            return {}
        ious = iou_matrix(np.stack([t.last_box for t in self._active]), boxes)
        pairs = greedy_pairs(ious, self.config.iou_threshold)
        return {det_pos: self._active[track_pos] for track_pos, det_pos in pairs}

    def _extend(
        self, track: Track, det: int, boxes: np.ndarray, scores: np.ndarray, ids: np.ndarray
    ) -> None:
        track.steps.append(self._step)
        track.boxes.append(boxes[det].copy())
        track.scores.append(float(scores[det]))
        ids[det] = track.track_id
