"""SCRFD in PyTorch (`fame.faces.torch_session`): the same outputs and faces as ONNX Runtime, and
a clear refusal of graphs it cannot run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from fame.errors import FameError
from fame.faces import scrfd_frame
from fame.faces.detector import ScrfdDetector, load_detector
from fame.faces.frontend import FrontEnd, FrontEndConfig
from fame.faces.scrfd_graph import free_size_graph
from fame.faces.torch_session import TorchSession, UnsupportedGraphError, letterbox_tensor
from schemas.errors import ErrorCode
from tests.media import sampled_frames

CPU = ["CPUExecutionProvider"]


def _both(graph: bytes, feed: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    want = onnxruntime.InferenceSession(graph, providers=CPU).run(None, feed)
    got = TorchSession(graph).run(None, feed)
    return want, got


@pytest.mark.parametrize("model", ["scrfd_500m_bnkps.onnx", "scrfd_2.5g.onnx"])
@pytest.mark.parametrize("size", [(640, 640), (384, 640), (224, 320)])
def test_scrfd_graphs_give_onnx_runtime_outputs(
    shared: Path, model: str, size: tuple[int, int]
) -> None:
    path = shared / "models" / model
    if not path.exists():
        pytest.skip(f"{path} not in the shared folder")
    graph = free_size_graph(path)
    assert graph is not None
    blob = np.random.default_rng(1).standard_normal((1, 3, *size), dtype=np.float32)
    want, got = _both(graph, {"input.1": blob})
    assert len(want) == len(got) == 9
    for a, b in zip(want, got, strict=True):
        assert a.shape == b.shape and b.dtype == np.float32
        np.testing.assert_allclose(b, a, atol=1e-4)


def test_session_interface_is_what_insightface_reads(detector: Path) -> None:
    graph = free_size_graph(detector)
    assert graph is not None
    session = TorchSession(graph)
    (given,) = session.get_inputs()
    assert given.name == "input.1" and given.shape[:2] == [1, 3]
    assert isinstance(given.shape[2], str)  # free size: the adapter reads no fixed input
    names = [o.name for o in session.get_outputs()]
    assert names[:3] == ["score_8", "score_16", "score_32"]
    assert session.get_providers() == ["torch:cpu"]
    blob = np.zeros((1, 3, 64, 96), np.float32)
    picked = session.run(["kps_8", "score_32"], {"input.1": blob})
    assert [p.shape for p in picked] == [(1, 8 * 12 * 2, 10), (1, 2 * 3 * 2, 1)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_matches_eager_at_every_size(detector: Path) -> None:
    graph = free_size_graph(detector)
    assert graph is not None
    eager = TorchSession(graph, "cuda", cuda_graphs=False)
    replayed = TorchSession(graph, "cuda")
    rng = np.random.default_rng(5)  # new inputs every call: a replay must read its input
    for size in [(384, 640), (640, 640), (384, 640)]:  # a size seen again replays its graph
        blob = rng.standard_normal((1, 3, *size), dtype=np.float32)
        want, got = eager.run(None, {"input.1": blob}), replayed.run(None, {"input.1": blob})
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-5)
    assert replayed.cuda_graphs and len(replayed._captured) == 2
    for _ in range(2):  # captured, then replayed
        frame = rng.integers(0, 256, (144, 176, 3), dtype=np.uint8)
        want_frame = eager.run_frame(frame, (640, 544), (640, 523), 127.5, 128.0)
        want_frame = {name: value.cpu().numpy() for name, value in want_frame.items()}
        got_frame = replayed.run_frame(frame, (640, 544), (640, 523), 127.5, 128.0)
        for name, value in want_frame.items():
            np.testing.assert_allclose(got_frame[name].cpu().numpy(), value, atol=1e-5)
    assert len(replayed._captured) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_blocking_wait_gives_the_same_outputs(
    detector: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`BLOCKING_WAIT` (bench/probe_cuda_wait.py's variant) only changes how the host waits."""
    from fame.faces import torch_session

    graph = free_size_graph(detector)
    assert graph is not None
    session = TorchSession(graph, "cuda")
    blob = np.random.default_rng(6).standard_normal((1, 3, 384, 640), dtype=np.float32)
    want = session.run(None, {"input.1": blob})
    monkeypatch.setattr(torch_session, "BLOCKING_WAIT", True)
    for _ in range(2):  # captured, then replayed
        for a, b in zip(want, session.run(None, {"input.1": blob}), strict=True):
            np.testing.assert_array_equal(b, a)


def test_cuda_graphs_are_off_on_a_cpu(detector: Path) -> None:
    graph = free_size_graph(detector)
    assert graph is not None
    assert not TorchSession(graph, "cpu", cuda_graphs=True).cuda_graphs


@pytest.mark.parametrize(
    ("video", "faces"),
    [
        ("faces/driving_d11.mp4", 1),
        ("samples/carphone_pristine.mp4", 1),
        ("faces/source_s32.mp4", 1),
        ("samples/group_t1.jpg", 6),
    ],
)
def test_detector_finds_the_same_faces_on_either_backend(
    shared: Path, detector: Path, video: str, faces: int
) -> None:
    """PyTorch gets the letterboxed uint8 image and chooses candidates on its device; ONNX
    Runtime gets the float blob: the same faces (the runtimes' convolutions differ in the last
    bits). Frames smaller than the detector input (the first two) are letterboxed on PyTorch's
    device, within a grey level of OpenCV's resize: measured up to 0.3 px on driving_d11's boxes,
    so they get 0.5 px. On a GPU machine this is PyTorch on CUDA, with CUDA graphs."""
    onnx_runtime = ScrfdDetector(detector, det_thresh=0.4, backend="onnxruntime")
    torch_backend = ScrfdDetector(detector, det_thresh=0.4, backend="torch")
    assert onnx_runtime.name.endswith("@CPUExecutionProvider")
    assert torch_backend.name.endswith(("@torch:cpu", "@torch:cuda"))
    for rgb in sampled_frames(shared / "data" / video, 4):
        fitted = scrfd_frame.fit(rgb.shape, torch_backend.input_size(*rgb.shape[:2]))
        px, score = (0.5, 5e-3) if fitted.enlarges(rgb.shape) else (0.05, 1e-4)
        want, got = onnx_runtime.detect(rgb), torch_backend.detect(rgb)
        assert len(got) == len(want) == faces
        np.testing.assert_allclose(got.boxes, want.boxes, atol=px)
        np.testing.assert_allclose(got.scores, want.scores, atol=score)
        assert got.keypoints is not None and want.keypoints is not None
        np.testing.assert_allclose(got.keypoints, want.keypoints, atol=px)


@pytest.mark.parametrize(
    "frame", [(144, 176), (480, 480), (512, 300), (720, 1280), (37, 641), (1, 1)], ids=str
)
@pytest.mark.parametrize("size", [(640, 640), (640, 384), (320, 320)], ids=str)
def test_letterbox_on_the_device_is_opencvs_within_a_grey_level(
    frame: tuple[int, int], size: tuple[int, int]
) -> None:
    rgb = np.random.default_rng(sum(frame)).integers(0, 256, (*frame, 3), dtype=np.uint8)
    rgb = cv2.GaussianBlur(rgb, (5, 5), 2.0)  # smooth like a picture, with sharp noise left
    want = scrfd_frame.letterbox(rgb, size).image
    placed = scrfd_frame.fit(rgb.shape, size)
    got = letterbox_tensor(torch.from_numpy(rgb), size, (placed.width, placed.height)).numpy()
    assert got.shape == want.shape and got.dtype == np.uint8
    difference = np.abs(got.astype(np.int16) - want)
    assert difference.max() <= 1 and difference.mean() < 0.2
    assert not got[placed.height :].any() and not got[:, placed.width :].any()


def test_a_reversed_view_is_letterboxed_on_the_device_like_its_copy(
    shared: Path, detector: Path
) -> None:
    """A caller's BGR -> RGB view (negative strides), which torch cannot wrap as it is."""
    (rgb,) = sampled_frames(shared / "data" / "samples" / "carphone_pristine.mp4", 1)
    view = np.ascontiguousarray(rgb[:, :, ::-1])[:, :, ::-1]
    assert view.strides[2] < 0
    torch_backend = ScrfdDetector(detector, det_thresh=0.4, backend="torch")
    assert torch_backend.letterboxes_on_device(view.shape)
    want, got = torch_backend.detect(rgb), torch_backend.detect(view)
    assert len(want) == 1
    np.testing.assert_array_equal(got.boxes, want.boxes)


def test_only_frames_smaller_than_the_input_are_letterboxed_on_the_device(detector: Path) -> None:
    """A frame larger than the input goes over the bus letterboxed (fewer bytes); a smaller one
    goes as decoded. (That the faces then match ONNX Runtime's: the backend comparison above.)"""
    torch_backend = ScrfdDetector(detector, det_thresh=0.4, backend="torch")
    session = torch_backend._model.session
    calls: list[str] = []
    for name in ("run_image", "run_frame"):
        method = getattr(session, name)
        setattr(session, name, lambda *a, _m=method, _n=name: calls.append(_n) or _m(*a))
    torch_backend.detect(np.zeros((720, 1280, 3), np.uint8))
    torch_backend.detect(np.zeros((144, 176, 3), np.uint8))
    assert calls == ["run_image", "run_frame"]


def test_front_end_on_torch_gives_the_same_crops(shared: Path, detector: Path) -> None:
    video = shared / "data" / "samples" / "carphone_pristine.mp4"
    tracks = {}
    for backend in ("onnxruntime", "torch"):
        config = FrontEndConfig(
            detector_path=str(detector), detector_backend=backend, allow_fallback_detector=False
        )
        result = FrontEnd(config).process(video)
        assert backend.replace("onnxruntime", "CPUExecutionProvider") in result.detector
        tracks[backend] = result.tracks
    want, got = tracks["onnxruntime"], tracks["torch"]
    assert len(got) == len(want) >= 1
    assert got[0].crops.shape == want[0].crops.shape
    assert np.abs(got[0].crops.astype(np.int16) - want[0].crops).mean() < 0.5


def test_auto_keeps_onnx_runtime_where_no_gpu_needs_pytorch(detector: Path) -> None:
    """On this CPU machine `auto` must not trade ONNX Runtime for the slower PyTorch."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto may rightly choose PyTorch")
    assert load_detector(detector).name.endswith("@CPUExecutionProvider")


def test_unknown_backend_is_refused(detector: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        ScrfdDetector(detector, backend="tensorrt")
    with pytest.raises(ValueError, match="detector_backend"):
        FrontEndConfig(detector_backend="tensorrt")


# --- small graphs: operators at the edges SCRFD's exports do not reach -------------------------


def _graph(
    nodes: list[onnx.NodeProto],
    shape: list[int],
    out_shape: list[int | str],
    initializers: list[onnx.TensorProto] = (),  # type: ignore[assignment]
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("ceil_mode", [0, 1])
@pytest.mark.parametrize(
    "pool",
    [
        {"op_type": "MaxPool", "kernel_shape": [2, 2], "strides": [2, 2]},
        {"op_type": "AveragePool", "kernel_shape": [2, 2], "strides": [2, 2]},
        {"op_type": "AveragePool", "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    ],
)
def test_pooling_on_odd_sizes(pool: dict[str, object], ceil_mode: int) -> None:
    """Windows cut by the border (ceil_mode, padding) average only what they hold, as in ONNX."""
    node = helper.make_node(inputs=["x"], outputs=["y"], ceil_mode=ceil_mode, **pool)  # type: ignore[arg-type]
    blob = np.random.default_rng(2).standard_normal((1, 2, 7, 9), dtype=np.float32)
    want, got = _both(_graph([node], [1, 2, 7, 9], [1, 2, "h", "w"]), {"x": blob})
    assert got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)


def test_shape_arithmetic_and_asymmetric_conv_padding() -> None:
    """Gather with a negative index, Slice past the end, Unsqueeze, Concat of shapes, Resize by
    sizes (the 2.5G graph's pattern), and a convolution padded on one side only."""
    weight = np.random.default_rng(3).standard_normal((3, 2, 3, 3), dtype=np.float32)
    constants = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.array(-1, np.int64), "last"),
        numpy_helper.from_array(np.array(-2, np.int64), "second_last"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([99], np.int64), "far"),
        numpy_helper.from_array(np.zeros(0, np.float32), "empty"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 2, 0], strides=[1, 2]),
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "second_last"], ["h"], axis=0),
        helper.make_node("Gather", ["xs", "last"], ["w_"], axis=0),
        helper.make_node("Unsqueeze", ["h"], ["h1"], axes=[0]),
        helper.make_node("Unsqueeze", ["w_"], ["w1"], axes=[0]),
        helper.make_node("Shape", ["c"], ["cs"]),
        helper.make_node("Slice", ["cs", "zero", "two", "zero"], ["nc"]),
        helper.make_node("Concat", ["nc", "h1", "w1"], ["size"], axis=0),
        helper.make_node(
            "Resize",
            ["c", "empty", "empty", "size"],
            ["r"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("Slice", ["r", "zero", "far", "zero"], ["s"]),
        helper.make_node("Sigmoid", ["s"], ["y"]),
    ]
    blob = np.random.default_rng(4).standard_normal((1, 2, 6, 10), dtype=np.float32)
    want, got = _both(_graph(nodes, [1, 2, 6, 10], [1, 3, 6, 10], constants), {"x": blob})
    assert got[0].shape == want[0].shape == (1, 3, 6, 10)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        (helper.make_node("Softmax", ["x"], ["y"]), "Softmax is not implemented"),
        (
            helper.make_node(
                "Resize",
                ["x", "empty", "scales"],
                ["y"],
                mode="linear",
                coordinate_transformation_mode="asymmetric",
            ),
            "nearest",
        ),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
            "auto_pad",
        ),
    ],
)
def test_graphs_it_cannot_run_are_refused_at_load(node: onnx.NodeProto, reason: str) -> None:
    constants = [
        numpy_helper.from_array(np.zeros(0, np.float32), "empty"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    graph = _graph([node], [1, 1, 4, 4], [1, 1, "h", "w"], constants)
    with pytest.raises(UnsupportedGraphError, match=reason):
        TorchSession(graph)


def test_detector_that_torch_cannot_run_fails_with_model_error(tmp_path: Path) -> None:
    """``backend="torch"`` on such a graph is a typed startup failure, not a half-run model."""
    node = helper.make_node("Softmax", ["x"], ["y"])
    path = tmp_path / "softmax.onnx"
    path.write_bytes(_graph([node], [1, 3, 64, 64], [1, 3, 64, 64]))
    with pytest.raises(FameError) as caught:
        ScrfdDetector(path, backend="torch")
    assert caught.value.code == ErrorCode.MODEL_ERROR
    assert "Softmax" in str(caught.value)


class _ReplayOnCpu:
    """A stand-in for a captured CUDA graph on a CPU: `replay` recomputes into the outputs the
    capture returned, from the static input (what a real graph does on the device)."""

    def __init__(
        self, program: Callable[[torch.Tensor], dict[str, torch.Tensor]], static: torch.Tensor
    ) -> None:
        self.program, self.static, self.replays = program, static, 0
        self.outputs = program(static)

    def replay(self) -> None:
        self.replays += 1
        for name, value in self.program(self.static).items():
            self.outputs[name].copy_(value)


def test_replay_captures_each_size_once_and_falls_back_to_eager(
    detector: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`TorchSession._replay`'s bookkeeping, on a CPU: one capture per input size, replays give
    the eager outputs, sizes past `MAX_CUDA_GRAPHS` run eagerly, and a failed capture turns
    graphs off for good with a warning."""
    from fame.faces import torch_session
    from fame.faces.torch_session import _Captured

    graph = free_size_graph(detector)
    assert graph is not None
    session, eager = TorchSession(graph), TorchSession(graph)
    captures: list[tuple[int, ...]] = []

    def capture(
        program: Callable[[torch.Tensor], dict[str, torch.Tensor]], host: torch.Tensor
    ) -> _Captured:
        captures.append(tuple(host.shape))
        fake = _ReplayOnCpu(program, host.clone())
        return _Captured(fake, fake.static, fake.outputs)

    monkeypatch.setattr(session, "_capture", capture)
    monkeypatch.setattr(torch_session, "MAX_CUDA_GRAPHS", 2)
    session.cuda_graphs = True
    rng = np.random.default_rng(6)
    for size in [(64, 96), (96, 64), (64, 96), (128, 128)]:
        blob = rng.standard_normal((1, 3, *size), dtype=np.float32)
        want = eager.run(None, {"input.1": blob})
        got = session.run(None, {"input.1": blob})
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-6)
    assert captures == [(1, 3, 64, 96), (1, 3, 96, 64)]  # the third size ran eagerly
    assert session._captured[("blob", (1, 3, 64, 96))].graph.replays == 2

    # an image is another program, so a graph of its own; normalised on the device, it gives
    # what its float blob gives
    monkeypatch.setattr(torch_session, "MAX_CUDA_GRAPHS", 3)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    want_image = eager.run(None, {"input.1": scrfd_frame.blob(image, 127.5, 128.0)})
    got_image = session.run_image(image, 127.5, 128.0)
    assert captures[-1] == (64, 96, 3)
    for output, value in zip(session.get_outputs(), want_image, strict=True):
        np.testing.assert_allclose(got_image[output.name].numpy(), value, atol=1e-6)

    # a frame letterboxed on the device replays that image graph (no capture of its own) and
    # gives what its letterbox gives as an image
    frame = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    placed = scrfd_frame.fit(frame.shape, (96, 64))
    fitted = (placed.width, placed.height)
    got_frame = session.run_frame(frame, (96, 64), fitted, 127.5, 128.0)
    assert len(captures) == 3
    boxed = letterbox_tensor(torch.from_numpy(frame), (96, 64), fitted).numpy()
    want_frame = eager.run(None, {"input.1": scrfd_frame.blob(boxed, 127.5, 128.0)})
    for output, value in zip(session.get_outputs(), want_frame, strict=True):
        np.testing.assert_allclose(got_frame[output.name].numpy(), value, atol=1e-6)

    def broken(program: object, host: torch.Tensor) -> _Captured:
        raise RuntimeError("operation not permitted when stream is capturing")

    failing = TorchSession(graph)
    monkeypatch.setattr(failing, "_capture", broken)
    failing.cuda_graphs = True
    blob = rng.standard_normal((1, 3, 64, 64), dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="fame.faces.torch_session"):
        got = failing.run(None, {"input.1": blob})
    assert not failing.cuda_graphs and "capture failed" in caplog.text
    for a, b in zip(eager.run(None, {"input.1": blob}), got, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-6)
