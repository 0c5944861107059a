"""The similarity fit behind every aligned crop (no media needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from insightface.utils.face_align import arcface_dst
from skimage.transform import SimilarityTransform

from fame.faces.align import align_face, similarity_matrix, square_box_crop

TEMPLATE = np.asarray(arcface_dst, dtype=np.float64)


def _keypoints(scale: float, angle: float, shift: tuple[float, float], noise: float, seed: int):
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    jitter = np.random.default_rng(seed).normal(0.0, noise, (5, 2))
    return TEMPLATE @ rotation.T + np.asarray(shift) + jitter


@settings(max_examples=200, deadline=None)
@given(
    scale=st.floats(0.2, 8.0),
    angle=st.floats(-np.pi, np.pi),
    shift=st.tuples(st.floats(-50, 1900), st.floats(-50, 1100)),
    noise=st.floats(0.0, 15.0),
    mirrored=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fit_is_umeyamas(scale, angle, shift, noise, mirrored, seed) -> None:
    """The crops were first made with skimage's estimate (Umeyama, no reflection); the closed
    form must give the same matrix, for mirrored points too (best proper fit)."""
    points = _keypoints(scale, angle, shift, noise, seed)
    if mirrored:
        points[:, 0] = 2000.0 - points[:, 0]
    points = points.astype(np.float32)  # as the detector gives them
    reference = SimilarityTransform.from_estimate(points.astype(np.float64), TEMPLATE).params[:2]
    matrix = similarity_matrix(points, TEMPLATE)
    assert matrix is not None
    np.testing.assert_allclose(matrix, reference, rtol=1e-9, atol=1e-9 * np.abs(reference).max())


def test_exact_similarity_is_recovered() -> None:
    points = _keypoints(2.5, 0.3, (400.0, 250.0), 0.0, 0)
    matrix = similarity_matrix(points, TEMPLATE)
    assert matrix is not None
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE, atol=1e-9)


@pytest.mark.parametrize(
    "points",
    [
        np.full((5, 2), 300.0),
        np.full((5, 2), np.nan),
        np.array([[1.0, 2.0]] * 4 + [[np.inf, 0]]),
        np.array([[1e30, 0], [0, 1e30], [1e30, 1e30], [0, 0], [5e29, 5e29]]),
    ],
    ids=["one-place", "nan", "inf", "huge"],
)
def test_no_fit_falls_back_to_the_detectors_box(points: np.ndarray) -> None:
    assert similarity_matrix(points, TEMPLATE) is None
    rgb = np.random.default_rng(3).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    box = np.array([50, 40, 150, 160], np.float32)
    crop = align_face(rgb, box, points.astype(np.float32), 112)
    np.testing.assert_array_equal(crop, square_box_crop(rgb, box, 112))
    assert crop.mean() > 50  # the face's pixels, not the black outside the frame
