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
    """uint8 [size_px, size_px, 3] crop; pixels outside the frame are black. Keypoints that
    give no similarity fit (not finite, or all in one place) fall back to the box crop."""
    if size_px <= 0:
        raise ValueError(f"size_px must be positive, got {size_px}")
    if keypoints is not None:
        from insightface.utils.face_align import arcface_dst

        # The template is defined for 112 px; scaling it serves any output size.
        target = np.asarray(arcface_dst, dtype=np.float64) * (size_px / _TEMPLATE_SIZE_PX)
        matrix = similarity_matrix(np.asarray(keypoints, dtype=np.float32), target)
        if matrix is not None:
            return cv2.warpAffine(
                rgb, matrix, (size_px, size_px), flags=cv2.INTER_LINEAR, borderValue=0.0
            )
    return square_box_crop(rgb, np.asarray(box, dtype=np.float32).reshape(4), size_px)


def similarity_matrix(points: np.ndarray, template: np.ndarray) -> np.ndarray | None:
    """The 2x3 rotation + uniform scale + shift that maps ``points`` onto ``template`` best in
    least squares, or None when the points are not finite, all in one place, or so far apart that
    the fit shrinks them to a point.

    Points as complex numbers z, w: the fit w = a z + b is linear in the complex a and b, so its
    least-squares solution is closed form. It is Umeyama's (skimage's `SimilarityTransform`
    estimate, which the crops were first made with) to rounding, at 16.5 instead of 42 us a face
    (docs/benchmarks.md), and a worker aligns every face of every sampled frame."""
    src = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(template, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(src).all():
        return None
    z = src[:, 0] + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    z_mean, w_mean = z.mean(), w.mean()
    z_centred = z - z_mean
    spread = float(np.sum(z_centred.real**2 + z_centred.imag**2))
    if spread <= 1e-12 * max(1.0, float(np.abs(z_mean)) ** 2):
        return None
    a = np.sum((w - w_mean) * z_centred.conj()) / spread
    b = w_mean - a * z_mean
    matrix = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)
    # a face millions of pixels wide, or arithmetic that overflowed: no fit either
    return matrix if abs(a) > 1e-6 and np.isfinite(matrix).all() else None


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
