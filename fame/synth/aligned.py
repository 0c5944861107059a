"""The pre-processing every generator shares: decode, detect the largest face, align it.

Each frame's face is mapped by a similarity transform onto the ArcFace 5-point template, shrunk
by `FACE_SCALE` so the crop keeps some forehead, cheeks and chin around the face (what a
face swap replaces). The transform is kept per frame so the generated face can be warped back.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from fame.errors import PoisonError
from fame.faces.align import similarity_matrix
from fame.faces.detector import FaceDetector
from fame.video.decode import DecodeLimits, SamplingPolicy, Video
from schemas.errors import ErrorCode

CROP_PX = 128
FACE_SCALE = 0.75
_TEMPLATE_PX = 112.0


@dataclass
class AlignedVideo:
    """Row ``i`` of every array belongs to decoded frame ``i`` (consecutive, from the start)."""

    frames: np.ndarray  # uint8 [N, H, W, 3] RGB, H and W even (H.264 4:2:0 needs that)
    crops: np.ndarray  # uint8 [N, CROP_PX, CROP_PX, 3]; black where has_face is False
    matrices: np.ndarray  # float64 [N, 2, 3], frame pixels -> crop pixels
    has_face: np.ndarray  # bool [N]
    fps: Fraction

    @property
    def face_crops(self) -> np.ndarray:
        faces: np.ndarray = self.crops[self.has_face]
        return faces


def crop_template() -> np.ndarray:
    """The 5 landmark positions (eyes, nose, mouth corners) in a `CROP_PX` crop, float64 [5, 2]."""
    from insightface.utils.face_align import arcface_dst

    unit = np.asarray(arcface_dst, dtype=np.float64) / _TEMPLATE_PX
    template: np.ndarray = ((unit - 0.5) * FACE_SCALE + 0.5) * CROP_PX
    return template


def align_video(
    path: Path, detector: FaceDetector, max_frames: int, max_side_px: int | None
) -> AlignedVideo:
    """The first ``max_frames`` frames of ``path``, downscaled to ``max_side_px`` (if set).

    Frames without a face with keypoints keep ``has_face`` False (rendered unchanged).
    """
    frames: list[np.ndarray] = []
    with Video(path, DecodeLimits()) as video:
        sampling = SamplingPolicy(target_fps=None, max_sampled_frames=max_frames)
        frames.extend(_resized(f.rgb, max_side_px) for f in video.frames(sampling))
        fps = Fraction(video.info.fps).limit_denominator(1001) if video.info.fps > 0 else None
    if fps is None:
        raise PoisonError(f"{path.name} has no frame rate", code=ErrorCode.CORRUPT_STREAM)
    template = crop_template()
    crops = np.zeros((len(frames), CROP_PX, CROP_PX, 3), np.uint8)
    matrices = np.zeros((len(frames), 2, 3), np.float64)
    has_face = np.zeros(len(frames), bool)
    for i, rgb in enumerate(frames):
        keypoints = _largest_face_keypoints(detector, rgb)
        if keypoints is None:
            continue
        matrix = similarity_matrix(keypoints, template)
        if matrix is None:
            continue
        matrices[i], has_face[i] = matrix, True
        crops[i] = cv2.warpAffine(rgb, matrix, (CROP_PX, CROP_PX), flags=cv2.INTER_AREA)
    return AlignedVideo(np.stack(frames), crops, matrices, has_face, fps)


def _resized(rgb: np.ndarray, max_side_px: int | None) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = 1.0 if max_side_px is None else min(1.0, max_side_px / max(height, width))
    new_w, new_h = (round(width * scale) // 2 * 2, round(height * scale) // 2 * 2)
    if (new_w, new_h) == (width, height):
        return rgb
    if scale == 1.0:
        return np.ascontiguousarray(rgb[:new_h, :new_w])
    return cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)


def _largest_face_keypoints(detector: FaceDetector, rgb: np.ndarray) -> np.ndarray | None:
    detections = detector.detect(rgb)
    if len(detections) == 0 or detections.keypoints is None:
        return None
    boxes = detections.boxes
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(detections.keypoints[int(np.argmax(areas))], dtype=np.float64)
