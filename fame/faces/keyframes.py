"""Faces between key frames: detect on every k-th sampled frame and interpolate the rest.

Why: SCRFD is the front end's largest stage (about a third of the service's time on a CPU, see
docs/benchmarks.md), and at 8 sampled frames/s a talking face moves a few pixels between frames.
A face found in both key frames around a frame moves linearly between them (box and landmarks);
a face found in only one of them is left out of the frames in between (it is entering or
leaving, and the tracker bridges short gaps). Only faces that the detector really found are
ever interpolated, so no face is invented.
"""

from __future__ import annotations

import numpy as np

from fame.faces.detector import Detections
from fame.faces.tracker import greedy_pairs, iou_matrix


def match_faces(a: Detections, b: Detections, iou_threshold: float) -> list[tuple[int, int]]:
    """(index in ``a``, index in ``b``) pairs of the same face: greedy by highest IoU, each face
    used once, pairs below ``iou_threshold`` dropped."""
    return sorted(greedy_pairs(iou_matrix(a.boxes, b.boxes), iou_threshold))


def interpolate(
    a: Detections, b: Detections, fraction: float, iou_threshold: float = 0.3
) -> Detections:
    """The faces present in both key frames, ``fraction`` (0 to 1) of the way from ``a`` to
    ``b``; scores are the lower of the two."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    pairs = match_faces(a, b, iou_threshold)
    ia = np.array([i for i, _ in pairs], dtype=np.int64)
    ib = np.array([j for _, j in pairs], dtype=np.int64)
    boxes = (1.0 - fraction) * a.boxes[ia] + fraction * b.boxes[ib]
    scores = np.minimum(a.scores[ia], b.scores[ib])
    keypoints = None
    if a.keypoints is not None and b.keypoints is not None:
        keypoints = ((1.0 - fraction) * a.keypoints[ia] + fraction * b.keypoints[ib]).astype(
            np.float32
        )
    return Detections(
        boxes=boxes.astype(np.float32).reshape(-1, 4),
        scores=scores.astype(np.float32).reshape(-1),
        keypoints=keypoints,
    )
