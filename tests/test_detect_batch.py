"""Batched detection (`FAME_DETECT_BATCH`): several frames in one call of SCRFD's network find
the faces each frame finds alone, on either runtime, and the front end gives the same tracks
with fewer detector calls. What the graph must do for that (a batch's outputs are its frames'
outputs, frame after frame) is checked when it is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from fame.faces.detector import Detections, ScrfdDetector
from fame.faces.frontend import GPU_DETECT_BATCH, MAX_DETECT_BATCH, FrontEnd, FrontEndConfig
from fame.faces.scrfd_graph import batches, detector_graph
from tests.detectors import CountingDetector
from tests.media import sampled_frames

# frames letterboxed on PyTorch's device (176x144, enlarged) and on the host (1280x720, shrunk)
VIDEOS = ["samples/carphone_pristine.mp4", "faces/source_s32.mp4"]
BACKENDS = ["onnxruntime", "torch"]


def _assert_same_faces(got: Detections, want: Detections, atol: float) -> None:
    assert len(got) == len(want)
    np.testing.assert_allclose(got.boxes, want.boxes, atol=atol)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    assert got.keypoints is not None and want.keypoints is not None
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=atol)


@pytest.mark.parametrize(
    ("name", "takes_batches"),
    # 2.5G transposes its heads to [H, W, B, C]: a batch's rows would interleave its frames
    [("scrfd_500m_bnkps.onnx", True), ("scrfd_2.5g.onnx", False)],
)
def test_which_shared_detectors_take_batches(shared: Path, name: str, takes_batches: bool) -> None:
    path = shared / "models" / name
    if not path.exists():
        pytest.skip(f"{path} not in the shared folder")
    batch = onnx.load_from_string(detector_graph(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert (batch.dim_param == "batch") == takes_batches
    assert batch.dim_value == (0 if takes_batches else 1)
    scrfd = ScrfdDetector(path, det_thresh=0.4, backend="onnxruntime", threads=1)
    assert scrfd.batches == takes_batches
    frames = sampled_frames(shared / "data" / VIDEOS[1], 3)
    for got, rgb in zip(scrfd.detect_batch(frames), frames, strict=True):
        _assert_same_faces(got, scrfd.detect(rgb), atol=1e-3)


def _heads_model(path: Path, batch_major: bool) -> Path:
    """A size-free graph shaped like one SCRFD head: one row per position (Reshape to
    [1, -1, 1]), after a transpose that keeps the batch first (as SCRFD's heads do) or not."""
    perm = [0, 2, 3, 1] if batch_major else [1, 2, 3, 0]
    rows = helper.make_tensor("rows", TensorProto.INT64, [3], [1, -1, 1])
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=perm),
        helper.make_node("Reshape", ["t", "rows"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "rows", 1])],
        initializer=[rows],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("batch_major", [True, False])
def test_a_batch_is_freed_only_where_it_splits_frame_by_frame(
    tmp_path: Path, batch_major: bool
) -> None:
    import onnxruntime

    graph = detector_graph(_heads_model(tmp_path / "head.onnx", batch_major))
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    assert batches(session) == batch_major
    assert session.get_inputs()[0].shape[0] == ("batch" if batch_major else 1)


@pytest.fixture(scope="module", params=BACKENDS)
def scrfd(request: pytest.FixtureRequest, detector: Path) -> ScrfdDetector:
    """On a CPU, PyTorch runs eagerly; on a GPU machine on CUDA, with CUDA graphs."""
    return ScrfdDetector(detector, det_thresh=0.4, backend=request.param, threads=1)


@pytest.mark.parametrize("video", VIDEOS)
def test_a_batch_finds_what_each_frame_finds_alone(
    shared: Path, scrfd: ScrfdDetector, video: str
) -> None:
    frames = sampled_frames(shared / "data" / video, 5)
    assert scrfd.batches
    alone = [scrfd.detect(rgb) for rgb in frames]
    for count in (5, 3):  # 3: padded to 4 where CUDA graphs replay
        together = scrfd.detect_batch(frames[:count])
        assert len(together) == count
        for got, want in zip(together, alone, strict=False):
            _assert_same_faces(got, want, atol=1e-3)
    assert sum(len(found) for found in alone) >= 5  # faces to compare: one in each frame


def test_frames_of_different_shapes_are_detected_one_by_one(
    shared: Path, scrfd: ScrfdDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = sampled_frames(shared / "data" / VIDEOS[0], 2)
    wide = sampled_frames(shared / "data" / VIDEOS[1], 1)
    frames = [small[0], wide[0], small[1]]
    alone = [scrfd.detect(rgb) for rgb in frames]
    sizes: list[int] = []
    real = scrfd._detect_same_shape

    def spy(batch: Sequence[np.ndarray]) -> list[Detections]:
        sizes.append(len(batch))
        return real(batch)

    monkeypatch.setattr(scrfd, "_detect_same_shape", spy)
    for got, want in zip(scrfd.detect_batch(frames), alone, strict=True):
        _assert_same_faces(got, want, atol=1e-3)
    assert sizes == [1, 1, 1]
    assert scrfd.detect_batch([]) == []


def test_a_batch_is_padded_to_a_power_of_two_where_cuda_graphs_replay(
    shared: Path, detector: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU the replay is stood in for by the eager run: what is checked is the padding,
    and that the padded frames' faces are dropped."""
    scrfd = ScrfdDetector(detector, det_thresh=0.4, backend="torch", threads=1)
    session = scrfd._model.session
    frames = sampled_frames(shared / "data" / VIDEOS[0], 3)
    alone = [scrfd.detect(rgb) for rgb in frames]
    shapes: list[tuple[int, ...]] = []
    real_run_frame = session.run_frame

    def run_frame(rgb: np.ndarray, *args: Any) -> dict[str, Any]:
        shapes.append(rgb.shape)
        return real_run_frame(rgb, *args)

    if not session.cuda_graphs:
        monkeypatch.setattr(session, "cuda_graphs", True)
        monkeypatch.setattr(session, "_replay", lambda *_: None)  # eager, as a failed capture
    monkeypatch.setattr(session, "run_frame", run_frame)
    together = scrfd.detect_batch(frames)
    assert [shape[0] for shape in shapes] == [4]
    assert len(together) == 3
    for got, want in zip(together, alone, strict=True):
        _assert_same_faces(got, want, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_replay_one_graph_per_power_of_two(shared: Path, detector: Path) -> None:
    scrfd = ScrfdDetector(detector, det_thresh=0.4, backend="torch")
    frames = sampled_frames(shared / "data" / VIDEOS[0], 8)
    alone = [scrfd.detect(rgb) for rgb in frames]
    for count in (8, 7, 5, 3, 8):
        for got, want in zip(scrfd.detect_batch(frames[:count]), alone, strict=False):
            _assert_same_faces(got, want, atol=1e-3)
    # batches of 1, 2 (none here), 4 and 8 frames at one input size
    assert sorted(key[-1][0] for key in scrfd._model.session._captured) == [1, 4, 8]


@pytest.mark.parametrize(("batch", "every"), [(4, 1), (3, 2)])
def test_the_front_end_detects_in_batches_and_tracks_as_before(
    shared: Path, detector: Path, batch: int, every: int
) -> None:
    video = shared / "data/faces/driving_d18.mp4"
    counting = CountingDetector(detector, backend="onnxruntime")
    one = FrontEnd(FrontEndConfig(detect_every=every), detector=counting).process(video)
    one_calls, counting.batch_sizes = counting.batch_sizes, []
    batched = FrontEnd(
        FrontEndConfig(detect_every=every, detect_batch=batch), detector=counting
    ).process(video)

    keys = sum(one_calls)
    assert set(one_calls) == {1}
    assert sum(counting.batch_sizes) == keys  # the same key frames, in fewer calls
    assert counting.batch_sizes == [batch] * (keys // batch) + (
        [keys % batch] if keys % batch else []
    )
    assert batched.sampled_frames == one.sampled_frames
    assert len(batched.tracks) == len(one.tracks) >= 1
    for a, b in zip(one.tracks, batched.tracks, strict=True):
        np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        assert np.abs(a.crops.astype(np.int16) - b.crops.astype(np.int16)).max() <= 1


@pytest.mark.parametrize("batch", [-1, MAX_DETECT_BATCH + 1])
def test_detect_batch_is_bounded(batch: int) -> None:
    with pytest.raises(ValueError, match="detect_batch"):
        FrontEndConfig(detect_batch=batch)


class _NamedDetector:
    """Only a name: what `runs_on_gpu` judges (nothing is detected here)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def detect(self, rgb: np.ndarray) -> Detections:
        raise AssertionError("not called")

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        raise AssertionError("not called")


@pytest.mark.parametrize(
    ("detector", "auto"),
    [
        ("scrfd:scrfd_500m_bnkps.onnx@torch:cuda", GPU_DETECT_BATCH),
        ("scrfd:scrfd_500m_bnkps.onnx@CUDAExecutionProvider", GPU_DETECT_BATCH),
        ("scrfd:scrfd_500m_bnkps.onnx@torch:cpu", 1),
        ("scrfd:scrfd_500m_bnkps.onnx@CPUExecutionProvider", 1),
        ("lbp-cascade(skimage)", 1),
    ],
)
def test_the_default_batches_where_the_detector_runs_on_a_gpu(detector: str, auto: int) -> None:
    """detect_batch 0 (the default, auto) is resolved for the loaded detector; a number is kept."""
    named = _NamedDetector(detector)
    assert FrontEndConfig().detect_batch == 0
    assert FrontEnd(FrontEndConfig(), detector=named).config.detect_batch == auto
    assert FrontEnd(FrontEndConfig(detect_batch=4), detector=named).config.detect_batch == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_default_batches_with_scrfd_on_cuda(detector: Path) -> None:
    front = FrontEnd(FrontEndConfig(detector_path=str(detector), detector_backend="torch"))
    assert front.detector.name.endswith("@torch:cuda")
    assert front.config.detect_batch == GPU_DETECT_BATCH
