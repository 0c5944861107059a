"""Cut one face out of a frame as a square RGB crop of the size the model expects.

With the detector's 5 keypoints the face is warped by a similarity transform onto InsightFace's
ArcFace template (eyes level, same place in every crop), so the model sees faces, not poses.
Without keypoints (the fallback detector) a square of 1.3x the box's longer side is cut and resized.
"""

from __future__ import annotations

import cv2
import numpy as np

BOX_CROP_SCALE = 1.3
_TEMPLATE_SIZE_PX = 112


def align_face(
    rgb: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None, size_px: int = 112
) -> np.ndarray:
    """uint8 [size_px, size_px, 3] crop; pixels outside the frame are black."""
    if size_px <= 0:
        raise ValueError(f"size_px must be positive, got {size_px}")
    if keypoints is not None:
        return _warp_to_template(
            rgb, np.asarray(keypoints, dtype=np.float32).reshape(5, 2), size_px
        )
    return square_box_crop(rgb, np.asarray(box, dtype=np.float32).reshape(4), size_px)


def _warp_to_template(rgb: np.ndarray, keypoints: np.ndarray, size_px: int) -> np.ndarray:
    from insightface.utils.face_align import arcface_dst
    from skimage.transform import SimilarityTransform

    # The template is defined for 112 px; scaling it serves any output size.
    target = np.asarray(arcface_dst, dtype=np.float64) * (size_px / _TEMPLATE_SIZE_PX)
    transform = SimilarityTransform.from_estimate(keypoints.astype(np.float64), target)
    if not transform:
        return square_box_crop(rgb, _box_around(keypoints), size_px)
    matrix = transform.params[:2]
    return cv2.warpAffine(rgb, matrix, (size_px, size_px), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _box_around(points: np.ndarray) -> np.ndarray:
    return np.array([*points.min(axis=0), *points.max(axis=0)], dtype=np.float32)


def square_box_crop(rgb: np.ndarray, box: np.ndarray, size_px: int) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    side = BOX_CROP_SCALE * max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    scale = size_px / side
    # Affine map from the square around the box onto the output; warpAffine pads with black.
    matrix = np.array(
        [[scale, 0.0, size_px / 2.0 - scale * cx], [0.0, scale, size_px / 2.0 - scale * cy]],
        dtype=np.float64,
    )
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, matrix, (size_px, size_px), flags=interpolation, borderValue=0.0)
