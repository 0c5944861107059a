"""SCRFD's ONNX graph run by PyTorch, behind the few methods of an ONNX Runtime session.

Why: the detector should run on the GPU wherever the model does, and PyTorch is the CUDA stack
every GPU deployment of this service already has. ONNX Runtime's CUDA provider needs
onnxruntime-gpu built for the same CUDA as the driver, which a machine may lack (the lent GPU
image has the CPU build only). It offers what InsightFace's SCRFD adapter reads of a session
(``get_inputs``/``get_outputs``/``run``), and `run_image`, which takes the letterboxed uint8 image
and builds the blob on the device (`fame.faces.scrfd_frame` does the rest of the frame's work).

This is an interpreter for the operators SCRFD's exports use, not a general ONNX runtime: a
graph with any other operator, or an attribute outside what is checked below, is refused when it
is loaded (`UnsupportedGraphError`), never half-run. Node order is the graph's, which ONNX
requires to be topological.

On CUDA each input size is captured once as a CUDA graph and replayed: SCRFD-500M is ~130 small
kernels, and launching them one by one from Python costs more CPU than the GPU spends on them,
in front-end workers whose CPU is what bounds the service. Up to `MAX_CUDA_GRAPHS` input shapes
are kept (frames are fitted to a few sizes, see `fame.faces.detector.fit_input_size`, and
batches padded to powers of two, see `ScrfdDetector._padded`); others, and everything when a
capture fails (logged once), run eagerly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Value = torch.Tensor
log = logging.getLogger(__name__)

# input shapes captured, per session: input sizes x batch sizes (1, 2, 4, 8 with
# FAME_DETECT_BATCH=8). Cheap to keep: the graphs share one memory pool (replays never overlap),
# each keeping only its input and outputs; a shape past it runs eagerly (~130 kernel launches)
MAX_CUDA_GRAPHS = 64
# inputs that are parameters of an operator, not data: read on the host (a device tensor read
# there would synchronise, which a CUDA graph capture forbids)
_HOST_INPUTS = {"Resize": 1, "Reshape": 1, "Slice": 1, "Unsqueeze": 1, "Gather": 1}
# How a worker waits for its detection on the GPU: False, CUDA's default (a process with no more
# CUDA contexts than cores spins a core at its next synchronisation), or True, sleeping on a
# blocking-sync event until the GPU is done. Why it may matter: 16 workers whose detections take
# turns on one GPU spend their wait spinning, on the cores their decoders need. Measured once
# on the lent H200 (bench/probe_cuda_wait.py sets it in the workers): 1.11x the front-end
# ceiling at 8 frames per call, 0.90x frame by frame, both within the runs' spread, so the
# default stays CUDA's (docs/benchmarks.md, third GPU session).
BLOCKING_WAIT = False


class UnsupportedGraphError(ValueError):
    """The graph uses an operator or attribute this interpreter does not implement."""


@dataclass(frozen=True)
class ValueInfo:
    """What ``session.get_inputs()`` / ``get_outputs()`` items carry (name and shape)."""

    name: str
    shape: list[int | str | None]
    type: str = "tensor(float)"


@dataclass(frozen=True)
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


class TorchSession:
    """``onnxruntime.InferenceSession``'s interface over a float32 graph run in PyTorch."""

    def __init__(
        self, graph: bytes, device: str | torch.device = "cpu", cuda_graphs: bool = True
    ) -> None:
        import onnx
        from onnx import helper, numpy_helper

        model = onnx.load_from_string(graph)
        self.device = torch.device(device)
        self._nodes = [
            _Node(
                node.op_type,
                tuple(node.input),
                tuple(node.output),
                {a.name: _plain(helper.get_attribute_value(a)) for a in node.attribute},
            )
            for node in model.graph.node
        ]
        for node in self._nodes:
            _check_node(node)
        host = {
            name
            for node in self._nodes
            if node.op in _HOST_INPUTS
            for name in node.inputs[_HOST_INPUTS[node.op] :]
        }
        self._constants: dict[str, Value] = {}
        for tensor in model.graph.initializer:
            array = numpy_helper.to_array(tensor)
            value = torch.from_numpy(array.copy())
            on_device = array.dtype.kind == "f" and tensor.name not in host
            self._constants[tensor.name] = (
                value.to(self.device, torch.float32) if on_device else value
            )
        initialised = set(self._constants)
        self._inputs = [_info(v) for v in model.graph.input if v.name not in initialised]
        self._outputs = [_info(v) for v in model.graph.output]
        if len(self._inputs) != 1:
            raise UnsupportedGraphError(f"expected one graph input, got {len(self._inputs)}")
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._captured: dict[tuple[object, ...], _Captured] = {}
        self._pool: Any = None  # one memory pool for every captured size (replays never overlap)

    def get_inputs(self) -> list[ValueInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[ValueInfo]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [f"torch:{self.device.type}"]

    def run(
        self, output_names: Sequence[str] | None, feed: dict[str, np.ndarray]
    ) -> list[np.ndarray]:
        """Outputs as float32 numpy arrays, in the order of ``output_names`` (None: all)."""
        names = list(output_names) if output_names else [o.name for o in self._outputs]
        (array,) = feed.values()
        blob = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        outputs = self._run(("blob",), self.forward, blob)
        return [outputs[name].float().cpu().numpy() for name in names]

    def run_image(self, image: np.ndarray, mean: float, std: float) -> dict[str, Value]:
        """The outputs, left on the device, for one uint8 [H, W, 3] image or a batch of them
        [B, H, W, 3]: the blob (channels first, ``(x - mean) / std``, the float operations of
        ``cv2.dnn.blobFromImage``) is built on the device, inside the CUDA graph, from a quarter
        of its bytes. Replayed outputs are overwritten by the next call: read them first."""
        return self._run(
            ("image", mean, std), self._image_program(mean, std), torch.from_numpy(image)
        )

    def run_frame(
        self,
        rgb: np.ndarray,
        size: tuple[int, int],
        fitted: tuple[int, int],
        mean: float,
        std: float,
    ) -> dict[str, Value]:
        """As `run_image`, for the uint8 frame as decoded (or a batch of frames of one shape):
        it is resized into the top-left ``fitted`` (width, height) of a ``size`` (width, height)
        image on the device.

        Why: a frame smaller than its letterbox crosses to the device in fewer bytes, and the
        worker's CPU skips the upscale (0.19-0.26 ms a frame for 176x144 to 512x512 frames on the
        bench's CPU: most of the host work left around a detector on the GPU). On a CPU this
        path is slower than OpenCV's resize (PyTorch there is for checks). The resize is
        OpenCV's ``INTER_LINEAR`` (half-pixel centres, no antialiasing) in float, rounded to
        uint8: within one grey level of ``cv2.resize``, whose weights are fixed-point."""
        with torch.inference_mode():
            rgb = np.ascontiguousarray(rgb)  # torch takes no reversed views (BGR -> RGB)
            frame = torch.from_numpy(rgb).to(self.device)
            image = letterbox_tensor(frame, size, fitted)
        return self._run(("image", mean, std), self._image_program(mean, std), image)

    def _image_program(self, mean: float, std: float) -> Callable[[Value], dict[str, Value]]:
        def program(pixels: Value) -> dict[str, Value]:
            x = pixels.reshape(-1, *pixels.shape[-3:]).permute(0, 3, 1, 2).float()
            return self.forward(x.sub(mean).mul(1.0 / std).contiguous())

        return program

    def forward(self, x: Value) -> dict[str, Value]:
        """The graph's outputs by name, for an input already on the device (eager)."""
        values = dict(self._constants)
        values[self._inputs[0].name] = x
        with _full_fp32_convolutions() if self.device.type == "cuda" else nullcontext():
            for node in self._nodes:
                args = [values[name] if name else None for name in node.inputs]
                values.update(zip(node.outputs, _OPS[node.op](node, args), strict=True))
        return {o.name: values[o.name] for o in self._outputs}

    def _run(
        self, kind: tuple[object, ...], program: Callable[[Value], dict[str, Value]], host: Value
    ) -> dict[str, Value]:
        with torch.inference_mode():
            outputs = self._replay(kind, program, host) if self.cuda_graphs else None
            if outputs is None:
                outputs = program(host.to(self.device))
            if BLOCKING_WAIT and self.device.type == "cuda":
                done = torch.cuda.Event(blocking=True)  # type: ignore[no-untyped-call]
                done.record()
                done.synchronize()
            return outputs

    def _replay(
        self, kind: tuple[object, ...], program: Callable[[Value], dict[str, Value]], host: Value
    ) -> dict[str, Value] | None:
        """The outputs by replaying the CUDA graph of this program and input size (captured on
        first sight), or None to run eagerly: too many graphs, or capture does not work here."""
        key = (*kind, tuple(host.shape))
        captured = self._captured.get(key)
        if captured is None:
            if len(self._captured) >= MAX_CUDA_GRAPHS:
                return None
            try:
                captured = self._capture(program, host)
            except Exception as e:  # a driver or allocator that cannot capture: eager for good
                log.warning("detector: CUDA graph capture failed (%s); runs eagerly", e)
                self.cuda_graphs = False
                return None
            self._captured[key] = captured
        captured.input.copy_(host)
        captured.graph.replay()
        return captured.outputs

    def _capture(self, program: Callable[[Value], dict[str, Value]], host: Value) -> _Captured:
        static = host.to(self.device, copy=True)  # never the caller's tensor: replays overwrite it
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        # warm-up off the capturing stream, as capture requires
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                program(static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the worker's decode thread may use CUDA meanwhile (NVDEC), legitimately
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            outputs = program(static)
        if self._pool is None:
            self._pool = graph.pool()
        return _Captured(graph, static, outputs)


@contextmanager
def _full_fp32_convolutions() -> Iterator[None]:
    """cuDNN convolutions in full fp32 while the detector runs (and is captured), not in TF32,
    PyTorch's default on Ampere and later. Why: TF32 moved SCRFD-500M's outputs by up to 9e-3
    from ONNX Runtime's (5.7e-6 in full fp32; H200, 2026-11-26), enough to move boxes of frames
    shrunk to the detector input past 0.05 px, and it bought no speed: the graph replays in
    1.13-1.31 ms in full fp32 against 1.22-1.46 ms in TF32 (its ~130 kernels are small). The flag
    is process-wide: a front-end worker runs no other convolutions meanwhile (its decode thread
    has none); elsewhere a concurrent fp32 convolution is only made exact."""
    cudnn = torch.backends.cudnn
    before, cudnn.allow_tf32 = cudnn.allow_tf32, False
    try:
        yield
    finally:
        cudnn.allow_tf32 = before


def letterbox_tensor(frame: Value, size: tuple[int, int], fitted: tuple[int, int]) -> Value:
    """`fame.faces.scrfd_frame.letterbox` for a uint8 [H, W, 3] tensor (or [B, H, W, 3]), on its
    device: resized to ``fitted`` (width, height) in the top-left corner of a zero ``size``
    (width, height) image."""
    width, height = size
    new_width, new_height = fitted
    x = frame.reshape(-1, *frame.shape[-3:]).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(new_height, new_width), mode="bilinear", align_corners=False)
    x = F.pad(x.round_().clamp_(0, 255), (0, width - new_width, 0, height - new_height))
    boxed = x.permute(0, 2, 3, 1).to(torch.uint8).contiguous()
    return boxed.reshape(*frame.shape[:-3], height, width, 3)


@dataclass(frozen=True)
class _Captured:
    """One input size's CUDA graph: copy into ``input``, replay, read ``outputs``."""

    graph: Any  # torch.cuda.CUDAGraph
    input: Value
    outputs: dict[str, Value]


def _info(value: Any) -> ValueInfo:
    dims = value.type.tensor_type.shape.dim
    return ValueInfo(value.name, [d.dim_value or d.dim_param or None for d in dims])


def _plain(value: Any) -> Any:
    """Attribute values as Python: bytes become str, repeated fields lists."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check_node(node: _Node) -> None:
    """Refuse, at load time, what `_OPS` would compute wrongly or not at all."""
    if node.op not in _OPS:
        raise UnsupportedGraphError(f"operator {node.op} is not implemented")
    attrs = node.attrs
    if attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise UnsupportedGraphError(f"{node.op}: auto_pad={attrs['auto_pad']}")
    if node.op == "Resize" and (
        attrs.get("mode") != "nearest"
        or attrs.get("coordinate_transformation_mode", "half_pixel") != "asymmetric"
        or attrs.get("nearest_mode", "round_prefer_floor") != "floor"
    ):
        raise UnsupportedGraphError(f"Resize {attrs}: only nearest/asymmetric/floor")
    if node.op in ("MaxPool", "AveragePool") and (
        any(d != 1 for d in attrs.get("dilations", [1]))
        or attrs.get("storage_order", 0)
        or attrs.get("count_include_pad", 0)
    ):
        raise UnsupportedGraphError(f"{node.op} {attrs}")


def _padded(args: list[Value | None], count: int) -> list[Value | None]:
    """The node's inputs with the optional trailing ones it left out as None."""
    return [*args, *[None] * (count - len(args))][:count]


def _pads(attrs: dict[str, Any], spatial: int) -> tuple[list[int], list[int]]:
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    return pads[:spatial], pads[spatial:]


def _conv(node: _Node, args: list[Value | None]) -> list[Value]:
    x, weight, bias = _padded(args, 3)
    assert x is not None and weight is not None
    begin, end = _pads(node.attrs, 2)
    if begin != end:
        x = F.pad(x, [begin[1], end[1], begin[0], end[0]])
        begin = [0, 0]
    out = F.conv2d(
        x,
        weight,
        bias,
        stride=node.attrs.get("strides", [1, 1]),
        padding=begin,
        dilation=node.attrs.get("dilations", [1, 1]),
        groups=node.attrs.get("group", 1),
    )
    return [out]


def _pool(node: _Node, args: list[Value | None]) -> list[Value]:
    x = args[0]
    assert x is not None
    begin, end = _pads(node.attrs, 2)
    if begin != end:
        raise UnsupportedGraphError(f"{node.op} with asymmetric pads {node.attrs['pads']}")
    common = {
        "kernel_size": node.attrs["kernel_shape"],
        "stride": node.attrs.get("strides", node.attrs["kernel_shape"]),
        "padding": begin,
        "ceil_mode": bool(node.attrs.get("ceil_mode", 0)),
    }
    if node.op == "MaxPool":
        return [F.max_pool2d(x, **common)]
    # ONNX's count_include_pad=0 (checked at load): windows cut by ceil_mode average what they hold
    return [F.avg_pool2d(x, count_include_pad=False, **common)]


def _resize(node: _Node, args: list[Value | None]) -> list[Value]:
    x, _roi, scales, sizes = _padded(args, 4)
    assert x is not None
    if sizes is not None and sizes.numel():
        size = [int(s) for s in sizes.tolist()]
        if size[:2] != list(x.shape[:2]):
            raise UnsupportedGraphError(f"Resize of batch or channels: {size}")
        return [F.interpolate(x, size=size[2:], mode="nearest")]
    assert scales is not None
    factors = [float(s) for s in scales.tolist()]
    if factors[:2] != [1.0, 1.0] or any(f != round(f) or f < 1 for f in factors[2:]):
        raise UnsupportedGraphError(f"Resize by {factors}: only whole upscales")
    size = [x.shape[2 + i] * int(f) for i, f in enumerate(factors[2:])]
    return [F.interpolate(x, size=size, mode="nearest")]


def _reshape(node: _Node, args: list[Value | None]) -> list[Value]:
    x, shape = args
    assert x is not None and shape is not None
    target = [int(s) for s in shape.tolist()]
    # ONNX: 0 copies the input's dimension (allowzero is not set by SCRFD)
    target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return [x.reshape(target)]


def _shape(node: _Node, args: list[Value | None]) -> list[Value]:
    assert args[0] is not None
    return [torch.tensor(list(args[0].shape), dtype=torch.int64)]


def _gather(node: _Node, args: list[Value | None]) -> list[Value]:
    x, indices = args
    assert x is not None and indices is not None
    axis = node.attrs.get("axis", 0)
    picked = torch.index_select(x, axis, indices.reshape(-1).to(x.device) % x.shape[axis])
    return [picked.reshape([*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]])]


def _unsqueeze(node: _Node, args: list[Value | None]) -> list[Value]:
    x = args[0]
    assert x is not None
    axes = node.attrs.get("axes")
    if axes is None:  # opset 13: axes is an input
        assert args[1] is not None
        axes = [int(a) for a in args[1].tolist()]
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return [x]


def _slice(node: _Node, args: list[Value | None]) -> list[Value]:
    x, starts, ends, axes, steps = _padded(args, 5)
    assert x is not None and starts is not None and ends is not None
    axis_list = axes.tolist() if axes is not None else list(range(len(starts)))
    step_list = steps.tolist() if steps is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, step in zip(
        starts.tolist(), ends.tolist(), axis_list, step_list, strict=True
    ):
        if step != 1:
            raise UnsupportedGraphError(f"Slice with step {step}")
        index[axis] = slice(start, end)  # Python clamps out-of-range bounds as ONNX does
    return [x[tuple(index)]]


def _concat(node: _Node, args: list[Value | None]) -> list[Value]:
    parts = [a for a in args if a is not None]
    return [torch.cat(parts, dim=node.attrs["axis"])]


def _unary(
    function: Callable[[Value], Value],
) -> Callable[[_Node, list[Value | None]], list[Value]]:
    def run(node: _Node, args: list[Value | None]) -> list[Value]:
        assert args[0] is not None
        return [function(args[0])]

    return run


def _binary(
    function: Callable[[Value, Value], Value],
) -> Callable[[_Node, list[Value | None]], list[Value]]:
    def run(node: _Node, args: list[Value | None]) -> list[Value]:
        a, b = args
        assert a is not None and b is not None
        return [function(a, b)]

    return run


def _transpose(node: _Node, args: list[Value | None]) -> list[Value]:
    x = args[0]
    assert x is not None
    perm = node.attrs.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*perm)]


_OPS: dict[str, Callable[[_Node, list[Value | None]], list[Value]]] = {
    "Conv": _conv,
    "Relu": _unary(torch.relu),
    "Sigmoid": _unary(torch.sigmoid),
    "Add": _binary(torch.add),
    "Mul": _binary(torch.mul),
    "MaxPool": _pool,
    "AveragePool": _pool,
    "Resize": _resize,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Concat": _concat,
}
