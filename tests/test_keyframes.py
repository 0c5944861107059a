"""Detect on key frames, interpolate between: the interpolation itself, and the front end with
the real detector on a real face video (every frame still gets its face, with fewer detector
calls, and the crops stay close to detecting everywhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fame.faces.detector import Detections
from fame.faces.frontend import FrontEnd, FrontEndConfig
from fame.faces.keyframes import interpolate, match_faces
from tests.detectors import CountingDetector


def _faces(boxes: list[list[float]], keypoints: bool = True) -> Detections:
    array = np.asarray(boxes, np.float32).reshape(-1, 4)
    points = None
    if keypoints:
        # five landmarks at the box's corners and centre, so they move with the box
        x1, y1, x2, y2 = (array[:, i : i + 1] for i in range(4))
        points = np.stack(
            [
                np.hstack([x1, y1]),
                np.hstack([x2, y1]),
                np.hstack([(x1 + x2) / 2, (y1 + y2) / 2]),
                np.hstack([x1, y2]),
                np.hstack([x2, y2]),
            ],
            axis=1,
        ).astype(np.float32)
    return Detections(
        boxes=array, scores=np.linspace(0.9, 0.6, len(array), dtype=np.float32), keypoints=points
    )


def test_faces_move_linearly_between_key_frames() -> None:
    a = _faces([[10, 10, 50, 50], [200, 100, 260, 160]])
    b = _faces([[206, 104, 266, 164], [14, 12, 54, 52]])  # same two faces, listed the other way
    assert match_faces(a, b, 0.3) == [(0, 1), (1, 0)]
    half = interpolate(a, b, 0.5)
    np.testing.assert_allclose(half.boxes, [[12, 11, 52, 51], [203, 102, 263, 162]])
    assert half.keypoints is not None
    np.testing.assert_allclose(half.keypoints[0, 2], [32, 31])  # the centre landmark
    np.testing.assert_allclose(
        half.scores, [min(a.scores[0], b.scores[1]), min(a.scores[1], b.scores[0])]
    )


def test_a_face_in_only_one_key_frame_is_not_interpolated() -> None:
    a = _faces([[10, 10, 50, 50], [300, 300, 340, 340]], keypoints=False)
    b = _faces([[12, 10, 52, 50], [500, 10, 540, 50]], keypoints=False)  # one leaves, one enters
    between = interpolate(a, b, 0.25)
    np.testing.assert_allclose(between.boxes, [[10.5, 10, 50.5, 50]])
    assert between.keypoints is None
    assert len(interpolate(a, _faces([]), 0.5)) == 0


@given(
    box=st.tuples(*[st.floats(0, 500) for _ in range(2)]).map(
        lambda p: [p[0], p[1], p[0] + 40, p[1] + 40]
    ),
    shift=st.floats(-10, 10),
    fraction=st.floats(0, 1),
)
def test_interpolation_stays_between_its_ends(
    box: list[float], shift: float, fraction: float
) -> None:
    a = _faces([box])
    b = _faces([[c + shift for c in box]])
    between = interpolate(a, b, fraction)
    low, high = np.minimum(a.boxes, b.boxes), np.maximum(a.boxes, b.boxes)
    assert np.all(between.boxes >= low - 1e-3) and np.all(between.boxes <= high + 1e-3)
    np.testing.assert_allclose(interpolate(a, b, 0.0).boxes, a.boxes, atol=1e-4)
    np.testing.assert_allclose(interpolate(a, b, 1.0).boxes, b.boxes, atol=1e-4)


def test_fraction_outside_the_key_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        interpolate(_faces([]), _faces([]), 1.5)


def test_detect_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="detect_every"):
        FrontEndConfig(detect_every=0)


@pytest.mark.parametrize("every", [2, 3])
def test_front_end_with_key_frames_matches_detecting_everywhere(shared: Path, every: int) -> None:
    video = shared / "data/faces/driving_d18.mp4"
    detector = CountingDetector(shared / "models/scrfd_500m_bnkps.onnx")
    full = FrontEnd(FrontEndConfig(), detector=detector).process(video)
    full_calls, detector.batch_sizes = sum(detector.batch_sizes), []
    keyed = FrontEnd(FrontEndConfig(detect_every=every), detector=detector).process(video)

    assert full_calls == full.sampled_frames
    # every k-th sampled frame (the first included) and the last one
    assert sum(detector.batch_sizes) == -(-(keyed.sampled_frames - 1) // every) + 1
    assert keyed.sampled_frames == full.sampled_frames
    a, b = full.tracks[0], keyed.tracks[0]
    np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
    # key frames give identical crops; in between the face is where it is to within a few px
    assert np.abs(a.boxes - b.boxes).max() < 0.08 * (a.boxes[:, 2] - a.boxes[:, 0]).mean()
    difference = np.abs(a.crops.astype(np.float32) - b.crops.astype(np.float32)).mean()
    assert difference < 4.0, f"mean crop difference {difference:.1f} grey levels"
    np.testing.assert_array_equal(a.crops[::every], b.crops[::every])
