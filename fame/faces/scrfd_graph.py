"""Free SCRFD's input size, so the detector can run at the size a frame needs.

InsightFace's SCRFD exports (the shared ``scrfd_500m_bnkps.onnx`` among them) fix the input at
1x3x640x640: the FPN's two nearest-neighbour ``Resize`` nodes carry constant output sizes
(40x40, 80x80), and everything else is already size-free (convolutions, and ``Reshape`` to
``[1, -1, k]``). Swapping those sizes for the scale they imply (2x) and marking the input's
height and width free gives a graph that runs at any multiple of 32. That lets a 16:9 frame run
at 640x384 instead of being padded to 640x640, and lets ``det_size`` trade detection of small
faces for speed.

The rewrite is checked before it is used: at the native size it must reproduce the original
outputs, and at another size it must return one row per anchor. A graph that fails either keeps
its native size (and says so).

`detector_graph` also frees the batch dimension where a batch's outputs are its frames' outputs
one after the other (SCRFD's heads transpose to channels-last, then reshape to ``[1, -1, C]``):
several frames then run in one call (`FAME_DETECT_BATCH`), and each frame's rows are cut out of
the batch's. That is checked too; a graph whose batch does not split so runs one frame a call.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STRIDE = 32  # the coarsest FPN level: every input side must be a multiple of it
_CHECK_ATOL = 1e-4


# (height, width) of the batch check where the graph's input size is free: small, and a multiple
# of every level's stride
_BATCH_PROBE = (192, 256)


def detector_graph(model_file: Path) -> bytes:
    """The graph the detector runs: its input size freed where `free_size_graph` can, its batch
    dimension free where a batch splits into its frames' outputs (`batches`), else fixed at 1."""
    import onnx

    freed = free_size_graph(model_file)
    model = onnx.load_from_string(freed) if freed is not None else onnx.load(str(model_file))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:  # not NCHW: free_size_graph kept it as it is
        unchanged: bytes = model.SerializeToString()
        return unchanged
    native = (dims[2].dim_value, dims[3].dim_value)
    shape = (dims[1].dim_value or 3, *(native if all(native) else _BATCH_PROBE))
    dims[0].dim_param = dims[0].dim_param or "batch"
    graph: bytes = model.SerializeToString()
    problem = _batch_problem(graph, shape)
    if problem is None:
        return graph
    log.warning("%s: %s; the detector runs one frame per call", model_file.name, problem)
    dims[0].dim_value = 1  # clears the dim_param (one of)
    fixed: bytes = model.SerializeToString()
    return fixed


def batches(session: Any) -> bool:
    """Whether a session of a `detector_graph` takes several frames per call."""
    return isinstance(session.get_inputs()[0].shape[0], str)


def split_rows(output: Any, frames: int) -> Any:
    """One output of a batch of ``frames`` as ``[frames, rows per frame, ...]``: its rows come
    frame after frame (what `detector_graph` checked), whether it is ``[1, N, C]`` or
    ``[N, C]`` (numpy array or torch tensor alike)."""
    return output.reshape(frames, -1, output.shape[-1])


def free_size_graph(model_file: Path) -> bytes | None:
    """The serialised graph with free input height/width, or None to keep the native size."""
    import onnx

    model = onnx.load(str(model_file))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        log.warning("%s: input is not NCHW; the detector keeps its native size", model_file.name)
        return None
    native = (dims[2].dim_value, dims[3].dim_value)  # 0 where already free
    if not all(native):
        already_free: bytes = model.SerializeToString()
        return already_free
    if min(native) <= 4 * STRIDE:
        log.warning("%s: native input %s is too small to free", model_file.name, native)
        return None
    try:
        _sizes_to_scales(model)
    except ValueError as e:
        log.warning("%s: %s; the detector keeps its native size", model_file.name, e)
        return None
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:  # rows (one per anchor) follow the input size
        output.type.tensor_type.shape.dim[-2].dim_param = f"{output.name}_anchors"
    del model.graph.value_info[:]  # shapes inferred at 640x640 no longer hold
    graph: bytes = model.SerializeToString()
    problem = _check(model_file, graph, native)
    if problem:
        log.warning(
            "%s: free-size rewrite rejected (%s); keeps its native size", model_file, problem
        )
        return None
    return graph


def _sizes_to_scales(model) -> None:  # type: ignore[no-untyped-def]
    """Replace each Resize's constant output ``sizes`` with the integer scale it implies."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*inferred.graph.value_info, *inferred.graph.input]
    }
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
        if node.input[3] not in initializers or not shapes.get(node.input[0]):
            raise ValueError(f"Resize {node.name} has sizes that are not a constant")
        sizes = numpy_helper.to_array(initializers[node.input[3]]).astype(np.int64)
        scales = sizes / np.asarray(shapes[node.input[0]], np.float64)
        if not np.all(scales == np.round(scales)) or np.any(scales[:2] != 1):
            raise ValueError(f"Resize {node.name} scales {scales.tolist()} are not whole")
        name = f"{node.name}_free_scales"
        model.graph.initializer.append(numpy_helper.from_array(scales.astype(np.float32), name))
        node.input[2] = name
        del node.input[3]
    used = {name for node in model.graph.node for name in node.input}
    unused = [tensor for tensor in model.graph.initializer if tensor.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)


def _batch_problem(graph: bytes, shape: tuple[int, int, int]) -> str | None:
    """Why a batch of two frames of ``shape`` (channels, height, width) does not give each
    frame's outputs, rows frame after frame (or does not run), or None when it does. Exports
    that transpose the batch behind the positions (InsightFace's SCRFD-2.5G: ``[H, W, B, C]``)
    interleave the frames' rows."""
    import onnxruntime

    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pair = np.random.default_rng(1).standard_normal((2, *shape), dtype=np.float32)
    try:
        together = session.run(None, {name: pair})
    except Exception as e:
        return f"a batch of two frames does not run: {e}"
    alone = [session.run(None, {name: pair[i : i + 1]}) for i in range(2)]
    for output, first, second in zip(together, *alone, strict=True):
        columns = output.shape[-1]
        rows = output.reshape(-1, columns)
        want = np.concatenate([first.reshape(-1, columns), second.reshape(-1, columns)])
        if rows.shape != want.shape or not np.allclose(rows, want, atol=_CHECK_ATOL):
            return "a batch's outputs are not its frames' outputs, frame after frame"
    return None


def _check(model_file: Path, graph: bytes, native: tuple[int, int]) -> str | None:
    """Why the rewritten graph cannot stand in for the original, or None when it can."""
    import onnxruntime

    cpu = ["CPUExecutionProvider"]
    original = onnxruntime.InferenceSession(str(model_file), providers=cpu)
    free = onnxruntime.InferenceSession(graph, providers=cpu)
    name = original.get_inputs()[0].name
    blob = np.random.default_rng(0).standard_normal((1, 3, *native), dtype=np.float32)
    want = original.run(None, {name: blob})
    got = free.run(None, {name: blob})
    if len(want) != len(got) or any(
        a.shape != b.shape or not np.allclose(a, b, atol=_CHECK_ATOL)
        for a, b in zip(want, got, strict=True)
    ):
        return "outputs differ from the original at its native size"
    # 128 px narrower stays a multiple of every level's stride (8 to 128) when the native is
    height, width = native[0], native[1] - 4 * STRIDE
    try:
        smaller = free.run(None, {name: np.ascontiguousarray(blob[..., :width])})
    except Exception as e:  # a size the graph still hard-codes somewhere
        return f"does not run at {width}x{height}: {e}"
    if any(
        b.shape[-2] * native[1] != a.shape[-2] * width for a, b in zip(want, smaller, strict=True)
    ):
        return f"at {width}x{height} the outputs do not cover the anchors"
    return None
