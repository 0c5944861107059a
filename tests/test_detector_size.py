"""The detector's settings: input size (SCRFD's fixed 640x640 graph freed, frames fitted with
their aspect) and threads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fame.errors import FameError
from fame.faces import scrfd_graph
from fame.faces.detector import ScrfdDetector, fit_input_size
from fame.faces.frontend import FrontEnd, FrontEndConfig, FrontEndPool
from fame.faces.scrfd_graph import free_size_graph
from schemas.errors import ErrorCode
from tests.media import sampled_frames


@pytest.mark.parametrize(
    ("height", "width", "det_size", "expected"),
    [
        (512, 512, 640, (640, 640)),
        (720, 1280, 640, (640, 384)),  # 16:9 runs at 640x384, not padded to 640x640
        (1280, 720, 640, (384, 640)),
        (144, 176, 640, (640, 544)),  # small frames are still scaled up to det_size
        (720, 1280, 320, (320, 192)),
        (16, 4000, 640, (640, 32)),  # never below one stride
    ],
)
def test_fit_input_size(height: int, width: int, det_size: int, expected: tuple[int, int]) -> None:
    assert fit_input_size(height, width, det_size) == expected


def _original(detector: Path):  # type: ignore[no-untyped-def]
    """InsightFace's adapter on the unmodified graph, as the front end ran it before."""
    import onnxruntime
    from insightface.model_zoo.scrfd import SCRFD

    session = onnxruntime.InferenceSession(str(detector), providers=["CPUExecutionProvider"])
    model = SCRFD(model_file=None, session=session)
    model.prepare(0, det_thresh=0.4)
    return model


def _max_box_change(shared: Path, detector: Path, video: str, det_size: int = 640) -> float:
    original, freed = (
        _original(detector),
        # ONNX Runtime on both sides: this checks the freed graph, not a runtime (on a GPU
        # machine `auto` is PyTorch, compared with ONNX Runtime in tests/test_torch_session.py)
        ScrfdDetector(detector, det_thresh=0.4, det_size=det_size, backend="onnxruntime"),
    )
    change = 0.0
    for rgb in sampled_frames(shared / "data" / video, 6):
        boxes, _ = original.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        found = freed.detect(rgb)
        assert len(found) == len(boxes) == 1
        change = max(change, float(np.abs(found.boxes - boxes[:, :4]).max()))
    return change


def test_square_frames_detect_as_before(shared: Path, detector: Path) -> None:
    """512x512 runs at 640x640 on the freed graph: the same numbers as the original graph."""
    assert _max_box_change(shared, detector, "faces/driving_d11.mp4") < 1e-3


def test_wide_frames_run_unpadded_and_find_the_same_face(shared: Path, detector: Path) -> None:
    freed = ScrfdDetector(detector, det_thresh=0.4)
    assert freed.native_size is None
    assert freed.input_size(720, 1280) == (640, 384)
    assert _max_box_change(shared, detector, "faces/source_s32.mp4") < 2.0


def test_smaller_input_still_finds_the_face(shared: Path, detector: Path) -> None:
    """det_size 320 on a 512x512 talking head: the same face, boxes within a few px."""
    assert _max_box_change(shared, detector, "faces/driving_d11.mp4", det_size=320) < 12.0


def test_a_graph_that_cannot_be_freed_keeps_its_native_size(
    detector: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scrfd_graph, "free_size_graph", lambda _path: None)
    fixed = ScrfdDetector(detector, det_thresh=0.4, det_size=320)
    assert fixed.native_size == (640, 640)
    assert fixed.input_size(720, 1280) == (640, 640)
    assert len(fixed.detect(np.zeros((720, 1280, 3), np.uint8))) == 0


def _resize_model(path: Path, scale: float) -> Path:
    """A static 1x3x256x256 graph shaped like SCRFD's heads: a Resize with constant output
    sizes, then one row per position (Reshape to [1, -1, 1])."""
    side = int(256 * scale)
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 3, side, side])
    roi = helper.make_tensor("roi", TensorProto.FLOAT, [0], [])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [0], [])
    rows = helper.make_tensor("rows", TensorProto.INT64, [3], [1, -1, 1])
    nodes = [
        helper.make_node("Resize", ["x", "roi", "scales", "sizes"], ["up"], mode="nearest"),
        helper.make_node("Reshape", ["up", "rows"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 256, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3 * side * side, 1])],
        initializer=[sizes, roi, scales, rows],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def test_resize_to_a_fractional_scale_is_not_freed(tmp_path: Path) -> None:
    assert free_size_graph(_resize_model(tmp_path / "x1.5.onnx", 1.5)) is None
    assert free_size_graph(_resize_model(tmp_path / "x2.onnx", 2.0)) is not None


def test_a_graph_that_is_not_scrfd_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(FameError) as info:
        ScrfdDetector(_resize_model(tmp_path / "x2.onnx", 2.0))
    assert info.value.code == ErrorCode.MODEL_ERROR


def test_detector_threads_reach_the_session(detector: Path) -> None:
    single = ScrfdDetector(detector, threads=1, backend="onnxruntime")  # auto: PyTorch on a GPU
    assert single._model.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads"):
        ScrfdDetector(detector, threads=-1)


def test_a_pool_divides_the_cpus_among_its_workers(
    detector: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers are the parallelism: each gets CPUs / workers detector threads (at least 1), unless
    the threads were set. (ONNX Runtime: on a GPU machine `auto` would give every worker a CUDA
    context, which this split does not need.)"""
    from fame.faces import frontend

    config = FrontEndConfig(detector_path=str(detector), detector_backend="onnxruntime")
    for cpus, threads in [(8, 4), (7, 3), (1, 1)]:
        monkeypatch.setattr(frontend, "available_cpus", lambda cpus=cpus: cpus)
        with FrontEndPool(config, workers=2) as pool:
            assert pool.config.detector_threads == threads
    with FrontEndPool(replace(config, detector_threads=3), workers=2) as pool:
        assert pool.config.detector_threads == 3


def test_a_front_end_with_a_thread_budget_holds_opencv_to_it(
    detector: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV's pool (letterbox, blob, alignment) follows the budget, not the core count."""
    import cv2

    calls: list[int] = []
    monkeypatch.setattr(cv2, "setNumThreads", calls.append)
    FrontEnd(FrontEndConfig(detector_path=str(detector), detector_threads=1))
    FrontEnd(FrontEndConfig(detector_path=str(detector)))  # a lone front end keeps the default
    assert calls == [1]
