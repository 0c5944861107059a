"""Faceswap's training augmentation: a random similarity transform, then a smooth random warp.

The network sees the warped face and must reproduce the unwarped one, so it learns faces, not
pixel positions; without it the autoencoder copies its input and a swap changes nothing.
"""

from __future__ import annotations

import cv2
import numpy as np

ROTATION_DEG = 10.0
ZOOM = 0.05
SHIFT = 0.05
FLIP_PROBABILITY = 0.4
WARP_GRID = 5
WARP_STRENGTH = 0.025


def random_warp(crops: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [B, S, S, 3] -> (warped input, transformed target), both float32 [B, S, S, 3] in
    [0, 1]; the target has the same pose change as the input but no warp."""
    warped, targets = [], []
    for crop in crops:
        target = _random_transform(crop, rng)
        warped.append(_random_grid_warp(target, rng))
        targets.append(target)
    return (
        np.stack(warped).astype(np.float32) / 255.0,
        np.stack(targets).astype(np.float32) / 255.0,
    )


def _random_transform(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = crop.shape[0]
    angle = rng.uniform(-ROTATION_DEG, ROTATION_DEG)
    scale = rng.uniform(1.0 - ZOOM, 1.0 + ZOOM)
    shift = rng.uniform(-SHIFT, SHIFT, size=2) * size
    matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, scale)
    matrix[:, 2] += shift
    out = cv2.warpAffine(crop, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
    return out[:, ::-1].copy() if rng.random() < FLIP_PROBABILITY else out


def _random_grid_warp(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Jitter a coarse grid of control points and interpolate it into a dense remap field."""
    size = image.shape[0]
    offsets = rng.normal(0.0, WARP_STRENGTH * size, size=(2, WARP_GRID, WARP_GRID))
    offsets[:, [0, -1], :] = 0.0
    offsets[:, :, [0, -1]] = 0.0
    dense = [
        cv2.resize(o.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        for o in offsets
    ]
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    return cv2.remap(
        image,
        grid_x + dense[0],
        grid_y + dense[1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
