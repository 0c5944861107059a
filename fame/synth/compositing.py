"""The post-processing every generator shares: mask, colour matching, warping back, blending.

Only pixels under the feathered face mask change; everything outside it is the original frame,
as in Faceswap's convert step.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from fame.synth.aligned import CROP_PX, crop_template

FEATHER_PX = 9


@lru_cache(maxsize=1)
def face_mask() -> np.ndarray:
    """float32 [CROP_PX, CROP_PX] in [0, 1]: an ellipse from the brows to the chin around the
    template landmarks, feathered with a Gaussian so the seam is not a hard edge."""
    points = crop_template()
    eyes_y = points[:2, 1].mean()
    mouth_y = points[3:, 1].mean()
    centre_x = points[:, 0].mean()
    half_width = 1.15 * (points[1, 0] - points[0, 0])
    top, bottom = eyes_y - 0.75 * (mouth_y - eyes_y), mouth_y + 0.6 * (mouth_y - eyes_y)
    mask: np.ndarray = np.zeros((CROP_PX, CROP_PX), np.float32)
    centre = (round(centre_x), round((top + bottom) / 2))
    axes = (round(half_width), round((bottom - top) / 2))
    cv2.ellipse(mask, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    # Erode before blurring so the feathered edge stays inside the ellipse.
    kernel = np.ones((FEATHER_PX, FEATHER_PX), np.uint8)
    mask = cv2.erode(mask, kernel)
    blurred = cv2.GaussianBlur(mask, (2 * FEATHER_PX + 1, 2 * FEATHER_PX + 1), 0)
    blurred[blurred < 1e-3] = 0.0
    return blurred


def match_colour(generated: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift ``generated``'s per-channel LAB mean/std under ``mask`` to ``target``'s (uint8 RGB
    crops), so the swapped face takes the scene's lighting and skin tone."""
    weights = mask.reshape(-1) > 0.5
    gen_lab = cv2.cvtColor(generated, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
    tgt_lab = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
    gen_mean, gen_std = gen_lab[weights].mean(0), gen_lab[weights].std(0) + 1e-3
    tgt_mean, tgt_std = tgt_lab[weights].mean(0), tgt_lab[weights].std(0)
    matched = (gen_lab - gen_mean) * (tgt_std / gen_std) + tgt_mean
    lab = np.clip(np.rint(matched), 0, 255).astype(np.uint8).reshape(generated.shape)
    return np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), dtype=np.uint8)


def paste_face(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``face`` (a crop whose frame->crop transform is ``matrix``) blended into a copy of
    ``frame`` under the warped-back face mask."""
    height, width = frame.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    warped = cv2.warpAffine(face, inverse, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(face_mask(), inverse, (width, height), flags=cv2.INTER_LINEAR)
    alpha = alpha[:, :, None]
    blended = frame.astype(np.float32) * (1.0 - alpha) + warped.astype(np.float32) * alpha
    out: np.ndarray = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    # Pixels the mask does not touch stay bit-exact (float round trip included).
    untouched = alpha[:, :, 0] <= 0.0
    out[untouched] = frame[untouched]
    return out


def mask_in_frame(shape: tuple[int, ...], matrix: np.ndarray) -> np.ndarray:
    """The face mask warped into frame pixels, float32 [H, W]; where a swap may change pixels."""
    inverse = cv2.invertAffineTransform(matrix)
    warped = cv2.warpAffine(face_mask(), inverse, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
    return np.asarray(warped, dtype=np.float32)
