"""IoU tracker: stable ids through gaps, size and length filters, and properties on random boxes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fame.faces.tracker import IouTracker, TrackerConfig, iou_matrix


def _box(x: float, y: float, side: float = 50.0) -> np.ndarray:
    return np.array([[x, y, x + side, y + side]], np.float32)


def test_moving_face_keeps_one_id_through_a_gap() -> None:
    tracker = IouTracker(TrackerConfig(max_lost_steps=3))
    ids = []
    for step in range(20):
        if step in (7, 8):  # a blink: two frames without detection
            tracker.update(np.zeros((0, 4)), np.zeros(0))
            continue
        ids.append(int(tracker.update(_box(10 + 2 * step, 20), np.array([0.9]))[0]))
    assert set(ids) == {0}
    (track,) = tracker.finished_tracks()
    assert track.stats(tracker.steps).coverage == pytest.approx(18 / 20)
    assert track.stats(tracker.steps).mean_box_px == pytest.approx(50.0)


def test_long_gap_starts_a_new_track_and_filters_apply() -> None:
    tracker = IouTracker(TrackerConfig(max_lost_steps=1, min_track_length=2, min_face_px=30))
    tracker.update(_box(0, 0), np.array([0.9]))
    tracker.update(_box(0, 0), np.array([0.9]))
    for _ in range(3):
        tracker.update(np.zeros((0, 4)), np.zeros(0))
    assert tracker.update(_box(0, 0), np.array([0.9]))[0] == 1
    assert tracker.update(_box(200, 0, side=10), np.array([0.9]))[0] == -1
    assert [t.track_id for t in tracker.finished_tracks()] == [0]
    assert [t.track_id for t in tracker.finished_tracks(min_length=1)] == [0, 1]


def test_two_faces_do_not_swap() -> None:
    tracker = IouTracker()
    for step in range(10):
        boxes = np.concatenate([_box(10 + step, 10), _box(300 - step, 10)])
        order = [1, 0] if step % 2 else [0, 1]
        ids = tracker.update(boxes[order], np.array([0.9, 0.8]))
        assert list(ids) == order


boxes_strategy = st.lists(
    st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(1, 200), st.floats(1, 200)).map(
        lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    ),
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(boxes_strategy, min_size=1, max_size=12))
def test_ids_are_unique_per_frame_and_tracks_consistent(frames: list[list[list[float]]]) -> None:
    tracker = IouTracker(TrackerConfig(min_track_length=1, min_face_px=0))
    seen = 0
    for boxes in frames:
        arr = np.array(boxes, np.float32).reshape(-1, 4)
        ids = tracker.update(arr, np.full(len(arr), 0.9))
        assigned = ids[ids >= 0]
        assert len(set(assigned.tolist())) == len(assigned)
        seen += len(assigned)
    tracks = tracker.finished_tracks()
    assert sum(len(t.steps) for t in tracks) == seen
    for t in tracks:
        assert t.steps == sorted(set(t.steps))


@given(boxes=boxes_strategy)
def test_iou_is_symmetric_and_bounded(boxes: list[list[float]]) -> None:
    arr = np.array(boxes, np.float64).reshape(-1, 4)
    ious = iou_matrix(arr, arr)
    assert np.allclose(ious, ious.T)
    assert np.all((ious >= 0) & (ious <= 1 + 1e-9))
    assert np.allclose(np.diag(ious), 1.0)
