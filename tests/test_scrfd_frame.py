"""SCRFD's per-frame work (`fame.faces.scrfd_frame`, used by `ScrfdDetector.detect`): the same
faces as InsightFace's ``SCRFD.detect``, bit for bit, at a fraction of its host CPU."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fame.faces.detector import ScrfdDetector
from fame.faces.scrfd_frame import AnchorTables, ScrfdLayout, blob, letterbox
from tests.media import sampled_frames

# a square frame upscaled, a wide and a tall one, a tiny one, and six faces in a photo
MEDIA = [
    "faces/driving_d10.mp4",
    "samples/bigbuckbunny.mp4",
    "faces/driving_d13.mp4",
    "samples/carphone_pristine.mp4",
    "samples/group_t1.jpg",
]


@pytest.fixture(scope="module")
def onnx_detector(detector: Path) -> ScrfdDetector:
    return ScrfdDetector(detector, det_thresh=0.4, backend="onnxruntime", threads=1)


@pytest.mark.parametrize("media", MEDIA)
def test_faces_are_insightfaces_bit_for_bit(
    shared: Path, onnx_detector: ScrfdDetector, media: str
) -> None:
    adapter = onnx_detector._model
    adapter.prepare(0, det_thresh=onnx_detector.det_thresh)
    found = 0
    for rgb in sampled_frames(shared / "data" / media, 3):
        size = onnx_detector.input_size(*rgb.shape[:2])
        want, want_points = adapter.detect(np.ascontiguousarray(rgb[:, :, ::-1]), input_size=size)
        got = onnx_detector.detect(rgb)
        assert np.array_equal(got.boxes, want[:, :4])
        assert np.array_equal(got.scores, want[:, 4])
        assert got.keypoints is not None
        assert np.array_equal(got.keypoints, want_points.reshape(-1, 5, 2))
        assert got.boxes.dtype == got.scores.dtype == got.keypoints.dtype == np.float32
        found += len(got)
    assert found >= 1  # something to compare: a face in at least one of the frames


def test_a_frame_without_faces_gives_empty_arrays(onnx_detector: ScrfdDetector) -> None:
    got = onnx_detector.detect(np.zeros((360, 640, 3), np.uint8))
    assert len(got) == 0
    assert got.boxes.shape == (0, 4) and got.scores.shape == (0,)
    assert got.keypoints is not None and got.keypoints.shape == (0, 5, 2)


@pytest.mark.parametrize(
    ("frame", "size", "resized"),
    [
        ((720, 1280), (640, 384), (360, 640)),  # wide: full width, padded below
        ((1280, 720), (384, 640), (640, 360)),  # tall: full height, padded right
        ((144, 176), (640, 544), (523, 640)),  # small: upscaled
        ((4, 1000), (640, 32), (2, 640)),  # a sliver keeps at least one row
    ],
)
def test_letterbox_fits_the_frame_top_left(
    frame: tuple[int, int], size: tuple[int, int], resized: tuple[int, int]
) -> None:
    rgb = np.random.default_rng(0).integers(1, 255, (*frame, 3), dtype=np.uint8)
    boxed = letterbox(rgb, size)
    height, width = resized
    assert boxed.image.shape == (size[1], size[0], 3)
    assert np.array_equal(boxed.image[:height, :width], cv2.resize(rgb, (width, height)))
    assert not boxed.image[height:].any() and not boxed.image[:, width:].any()
    assert boxed.scale == pytest.approx(height / frame[0])


def test_blob_is_blob_from_image() -> None:
    image = np.random.default_rng(1).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    want = cv2.dnn.blobFromImage(image, 1.0 / 128.0, (160, 96), (127.5, 127.5, 127.5))
    got = blob(image, 127.5, 128.0)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_anchor_table_rows_follow_the_outputs(onnx_detector: ScrfdDetector) -> None:
    """One row per anchor in output order: stride by stride, cells row-major, 2 anchors a cell."""
    layout = onnx_detector._layout
    assert layout == ScrfdLayout.of(onnx_detector._model)
    assert layout.strides == (8, 16, 32) and layout.anchors_per_cell == 2 and layout.keypoints
    centres, strides = AnchorTables(layout).get(64, 96)
    cells = [(64 // s) * (96 // s) for s in layout.strides]
    assert len(centres) == len(strides) == 2 * sum(cells)
    assert centres[:4].tolist() == [[0, 0], [0, 0], [8, 0], [8, 0]]
    assert centres[2 * 12 * 1].tolist() == [0, 8]  # second row of stride 8 (12 cells a row)
    first_16 = 2 * cells[0]
    assert strides[first_16 - 1] == 8 and strides[first_16] == 16
    assert centres[-1].tolist() == [64, 32]  # last cell of stride 32: (2, 1) * 32
