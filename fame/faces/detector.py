"""Face detectors behind one small interface: InsightFace SCRFD (ONNX), or a weak fallback.

Where the SCRFD model comes from, in order: the explicit path (``--detector``), then
``$FAME_DETECTOR_MODEL``, then ``$FAME_SHARED_DIR/models/scrfd_500m_bnkps.onnx`` (default
``../shared`` beside the repository root, or beside the working directory), then an InsightFace
pack under ``~/.insightface/models/`` (``buffalo_s``, ``buffalo_l``). Nothing is ever downloaded.
An explicitly named model that is missing is a `ModelMissingError`; only when nothing was named
and nothing was found does the fallback (scikit-image's LBP cascade; OpenCV 5 ships no cascades)
load, with a loud warning: it misses small and non-frontal faces.

Which runtime runs SCRFD (``backend``): ``onnxruntime`` (its CUDA provider where it really runs,
else the CPU), ``torch`` (`fame.faces.torch_session`: the same graph in PyTorch, on CUDA when
PyTorch sees a GPU), or ``auto``: ONNX Runtime, unless only PyTorch can reach the GPU (the
onnxruntime CPU build, or onnxruntime-gpu without the CUDA libraries it was built for). On a CPU,
ONNX Runtime runs SCRFD-500M's network 3-5x faster than PyTorch (docs/benchmarks.md), so
``torch`` there is for checks.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fame.errors import FameError, ModelMissingError
from fame.faces.scrfd_frame import (
    AnchorTables,
    Candidates,
    Fit,
    ScrfdLayout,
    blob,
    candidates_numpy,
    candidates_torch,
    decode,
    fit,
    letterbox_frames,
)
from fame.faces.scrfd_graph import STRIDE, batches, detector_graph
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

DEFAULT_SHARED_MODEL = Path("models") / "scrfd_500m_bnkps.onnx"
INSIGHTFACE_PACKS = ("buffalo_s", "buffalo_l")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
CASCADE_SCORE = 0.5
DETECTOR_BACKENDS = ("auto", "onnxruntime", "torch")


@dataclass(frozen=True)
class Detections:
    """Faces in one frame, in pixel coordinates of that frame: boxes x1,y1,x2,y2."""

    boxes: np.ndarray  # float32 [K, 4]
    scores: np.ndarray  # float32 [K]
    keypoints: np.ndarray | None  # float32 [K, 5, 2] (eyes, nose, mouth corners) or None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> Detections:
        """Faces in an RGB uint8 [H, W, 3] frame."""
        ...

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in each frame: what `detect` finds in it, in fewer runtime calls where the
        detector can (SCRFD: one network call for frames of one shape)."""
        ...


class ScrfdDetector:
    """SCRFD on the GPU when one is reachable (see ``backend`` above). InsightFace's adapter
    reads the graph (output layout, normalisation) and does the NMS; the per-frame work around
    the network is `fame.faces.scrfd_frame`'s, which gives the adapter's faces for less CPU.

    The input is the frame fitted into ``det_size`` x ``det_size`` with its aspect kept, each
    side rounded up to a multiple of 32: a 1280x720 frame runs at 640x384, not padded to
    640x640. ``det_size`` is the long side: smaller is faster and misses more small faces.
    Graphs exported at a fixed size are freed first (`fame.faces.scrfd_graph`); one that cannot
    be freed runs at its native size whatever ``det_size`` says.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        det_size: int = 640,
        det_thresh: float = 0.5,
        providers: tuple[str, ...] | None = None,
        threads: int = 0,
        backend: str = "auto",
    ) -> None:
        if backend not in DETECTOR_BACKENDS:
            raise ValueError(f"backend must be one of {DETECTOR_BACKENDS}, got {backend!r}")
        if not 0.0 < det_thresh < 1.0:
            raise ValueError(f"det_thresh must be in (0, 1), got {det_thresh}")
        if det_size <= 0 or det_size % STRIDE:
            raise ValueError(f"det_size must be a positive multiple of 32, got {det_size}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.model_file = _onnx_file(Path(model_path))
        requested = providers if providers is not None else _preferred_providers()
        self._model = _load_scrfd(self.model_file, requested, threads, backend)
        self._layout = ScrfdLayout.of(self._model)
        self._anchors = AnchorTables(self._layout)
        self.det_thresh = det_thresh
        self.native_size: tuple[int, int] | None = self._model.static_input_size
        self.det_size = det_size
        active = self._model.session.get_providers()
        self._on_torch = active[0].startswith("torch:")
        # whether one network call takes several frames (see `detector_graph`)
        self.batches = batches(self._model.session)
        self.provider = active[0] if self._on_torch else _check_providers(active, requested)
        self.name = f"scrfd:{self.model_file.name}@{self.provider}"

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) of the detector input for a frame of this size."""
        if self.native_size is not None:
            return self.native_size
        return fit_input_size(height, width, self.det_size)

    def detect(self, rgb: np.ndarray) -> Detections:
        (found,) = self.detect_batch([rgb])
        return found

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One network call for frames of one shape, where the graph takes batches; else one
        call per frame. Same faces as `detect` frame by frame (tested)."""
        if not frames:
            return []
        if not self.batches or any(f.shape != frames[0].shape for f in frames):
            return [face for rgb in frames for face in self._detect_same_shape([rgb])]
        return self._detect_same_shape(frames)

    def _detect_same_shape(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        shape = frames[0].shape
        size = self.input_size(*shape[:2])
        try:
            placed = fit(shape, size)
            if self.letterboxes_on_device(shape):
                found = self._candidates_of_frames(frames, size, placed)
            else:
                found = self._candidates(letterbox_frames(frames, size))
            anchors = self._anchors.get(size[1], size[0])
            return [self._faces(one, anchors, placed.scale) for one in found]
        except Exception as e:
            raise FameError(
                f"SCRFD failed on {len(frames)} {shape} frame(s) at {size}: {e}",
                code=ErrorCode.MODEL_ERROR,
            ) from e

    def _faces(
        self, found: Candidates, anchors: tuple[np.ndarray, np.ndarray], scale: float
    ) -> Detections:
        pre_det, points = decode(found, anchors, scale)
        keep = self._model.nms(pre_det)
        return Detections(
            boxes=np.ascontiguousarray(pre_det[keep, :4]).reshape(-1, 4),
            scores=np.ascontiguousarray(pre_det[keep, 4]).reshape(-1),
            keypoints=None if points is None else np.ascontiguousarray(points[keep]),
        )

    def letterboxes_on_device(self, frame_shape: tuple[int, ...]) -> bool:
        """Whether a frame of this shape is letterboxed on PyTorch's device (`run_frame`): where
        PyTorch runs the network and the frame is smaller than its letterbox, so it crosses to
        the device in fewer bytes and the worker's CPU skips the upscale."""
        size = self.input_size(*frame_shape[:2])
        return self._on_torch and fit(frame_shape, size).enlarges(frame_shape)

    def _candidates_of_frames(
        self, frames: Sequence[np.ndarray], size: tuple[int, int], placed: Fit
    ) -> list[Candidates]:
        """As `_candidates`, PyTorch only, letterboxing the frames on its device."""
        import torch

        layout = self._layout
        # contiguous: torch takes no reversed views (a BGR -> RGB flip)
        batch = np.ascontiguousarray(frames[0])[None] if len(frames) == 1 else np.stack(frames)
        padded = self._padded(batch)
        with torch.inference_mode():
            outputs = self._model.session.run_frame(
                padded, size, (placed.width, placed.height), layout.mean, layout.std
            )
            return self._chosen_on_device(outputs, len(padded), len(batch))

    def _candidates(self, images: np.ndarray) -> list[Candidates]:
        """Anchors above the threshold in each letterboxed uint8 image of [B, H, W, 3], from the
        runtime's outputs (kept on the device under PyTorch until they are chosen)."""
        session = self._model.session
        layout = self._layout
        count = len(images)
        if self._on_torch:  # a fame.faces.torch_session.TorchSession
            import torch  # imported here: an ONNX Runtime worker need not load it

            padded = self._padded(images)
            with torch.inference_mode():
                outputs = session.run_image(padded, layout.mean, layout.std)
                return self._chosen_on_device(outputs, len(padded), count)
        feed = {self._model.input_name: blob(images, layout.mean, layout.std)}
        outputs = session.run(list(layout.output_names), feed)
        return candidates_numpy(layout, outputs, self.det_thresh, count)

    def _padded(self, batch: np.ndarray) -> np.ndarray:
        """A batch for PyTorch, padded (repeating its last frame) to a power of two where CUDA
        graphs replay: each batch size is a graph to capture per input size, and a video's last,
        shorter batch would otherwise add one for every remainder."""
        missing = (1 << (len(batch) - 1).bit_length()) - len(batch)
        if not missing or not self._model.session.cuda_graphs:
            return batch
        return np.concatenate([batch, np.repeat(batch[-1:], missing, axis=0)])

    def _chosen_on_device(
        self, outputs: dict[str, Any], frames: int, keep: int
    ) -> list[Candidates]:
        """Candidates of the first ``keep`` of ``frames`` from PyTorch's outputs by name, chosen
        on its device (before the next call overwrites a replayed graph's outputs)."""
        ordered = [outputs[name] for name in self._layout.output_names]
        return candidates_torch(self._layout, ordered, self.det_thresh, frames, keep)


def fit_input_size(height: int, width: int, det_size: int) -> tuple[int, int]:
    """(width, height): the frame scaled so its long side is ``det_size``, sides rounded up to
    multiples of 32 (the padding SCRFD needs, and no more)."""
    scale = det_size / max(height, width, 1)
    return (
        max(STRIDE, math.ceil(width * scale / STRIDE) * STRIDE),
        max(STRIDE, math.ceil(height * scale / STRIDE) * STRIDE),
    )


class LbpCascadeDetector:
    """scikit-image's multi-block LBP frontal-face cascade: no keypoints and no confidence, so
    every box gets the constant score `CASCADE_SCORE` (choose ``det_thresh`` below it)."""

    name = "lbp-cascade(skimage)"

    def __init__(self, *, min_face_px: int = 24, min_neighbors: int = 4) -> None:
        import skimage.data
        from skimage.feature import Cascade

        self._cascade = Cascade(skimage.data.lbp_frontal_face_cascade_filename())  # type: ignore[no-untyped-call]
        self._min_face_px = min_face_px
        self._min_neighbors = min_neighbors

    def detect(self, rgb: np.ndarray) -> Detections:
        from skimage.color import rgb2gray

        gray = rgb2gray(rgb)
        side = min(gray.shape)
        found = self._cascade.detect_multi_scale(
            img=gray,
            scale_factor=1.2,
            step_ratio=1,
            min_size=(self._min_face_px, self._min_face_px),
            max_size=(side, side),
            min_neighbor_number=self._min_neighbors,
        )
        boxes = np.array(
            [[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in found],
            dtype=np.float32,
        ).reshape(-1, 4)
        scores = np.full(len(boxes), CASCADE_SCORE, np.float32)
        return Detections(boxes=boxes, scores=scores, keypoints=None)

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect(rgb) for rgb in frames]


def runs_on_gpu(detector_name: str) -> bool:
    """Whether a detector, by its ``name`` (as results report it), runs its network on a GPU
    (``...@torch:cuda`` or ``...@CUDAExecutionProvider``): where one call for several frames
    pays (`fame.faces.frontend.GPU_DETECT_BATCH`)."""
    return detector_name.rpartition("@")[2] in ("torch:cuda", _CUDA)


def shared_dir() -> Path:
    """`$FAME_SHARED_DIR`, else ``../shared`` beside the repository root (or the cwd)."""
    env = os.environ.get("FAME_SHARED_DIR")
    if env:
        return Path(env)
    beside_repo = _REPO_ROOT.parent / "shared"
    return beside_repo if beside_repo.is_dir() else Path.cwd().parent / "shared"


def resolve_detector_path(explicit: str | Path | None = None) -> Path | None:
    """The SCRFD model (file or pack) to load, or None when none exists (fallback time).

    A path the user named (argument or ``FAME_DETECTOR_MODEL``) must exist.
    """
    named = explicit if explicit not in (None, "") else os.environ.get("FAME_DETECTOR_MODEL")
    if named:
        path = Path(named).expanduser()
        if not path.exists():
            raise ModelMissingError(f"detector model not found: {path}")
        return path
    candidates = [shared_dir() / DEFAULT_SHARED_MODEL]
    candidates += [Path.home() / ".insightface" / "models" / pack for pack in INSIGHTFACE_PACKS]
    return next((path for path in candidates if path.exists()), None)


def load_detector(
    path: str | Path | None = None,
    *,
    det_size: int = 640,
    det_thresh: float = 0.5,
    allow_fallback: bool = True,
    providers: tuple[str, ...] | None = None,
    threads: int = 0,
    backend: str = "auto",
) -> FaceDetector:
    """Load the detector once per process (a session costs ~1 s and tens of MB). ``threads``:
    the runtime's intra-op threads on a CPU, 0 for its default (one per core)."""
    resolved = resolve_detector_path(path)
    if resolved is not None:
        return ScrfdDetector(
            resolved,
            det_size=det_size,
            det_thresh=det_thresh,
            providers=providers,
            threads=threads,
            backend=backend,
        )
    if not allow_fallback:
        raise ModelMissingError(
            "no SCRFD detector: pass --detector, set FAME_DETECTOR_MODEL, FAME_SHARED_DIR, or "
            "install an InsightFace pack under ~/.insightface/models/"
        )
    log.warning(
        "NO SCRFD FACE DETECTOR FOUND (no --detector, FAME_DETECTOR_MODEL, shared model or "
        "~/.insightface pack): falling back to the LBP cascade, which misses many faces"
    )
    return LbpCascadeDetector()


def _onnx_file(path: Path) -> Path:
    """A single ``.onnx`` file, or the ``det_*.onnx`` inside an InsightFace pack directory."""
    if path.is_dir():
        found = sorted(path.glob("det_*.onnx"))
        if not found:
            raise ModelMissingError(f"no det_*.onnx detector in model pack {path}")
        return found[0]
    if not path.is_file():
        raise ModelMissingError(f"detector model not found: {path}")
    return path


def _preferred_providers() -> tuple[str, ...]:
    """CUDA then CPU when a GPU driver is present; asking without one only logs noise."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if _CUDA in available and Path("/dev/nvidiactl").exists():
        return (_CUDA, _CPU)
    return (_CPU,)


def _load_scrfd(model_file: Path, providers: tuple[str, ...], threads: int, backend: str):  # type: ignore[no-untyped-def]
    """InsightFace's SCRFD adapter over our own session: of the freed graph where possible."""
    import onnxruntime
    from insightface.model_zoo.scrfd import SCRFD

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        source = detector_graph(model_file)
        session = (
            None
            if backend == "torch"
            else onnxruntime.InferenceSession(source, options, providers=list(providers))
        )
        if session is None:
            session = _torch_session(source, threads)
        elif backend == "auto" and _only_torch_reaches_gpu(session):
            session = _torch_session_or(session, source, threads)
        outputs = len(session.get_outputs())
        if outputs not in (6, 9, 10, 15):
            raise ValueError(f"{outputs} outputs, SCRFD has 6, 9, 10 or 15")
        # without model_file the adapter runs every input size on this one session
        return SCRFD(model_file=None, session=session)
    except Exception as e:
        raise FameError(
            f"cannot load {model_file} as an SCRFD detector: {e}", code=ErrorCode.MODEL_ERROR
        ) from e


def _only_torch_reaches_gpu(session) -> bool:  # type: ignore[no-untyped-def]
    """A GPU is present, ONNX Runtime does not run on it, and PyTorch can."""
    if session.get_providers()[0] == _CUDA or not Path("/dev/nvidiactl").exists():
        return False
    import torch

    return torch.cuda.is_available()


def _torch_session(graph: bytes, threads: int):  # type: ignore[no-untyped-def]
    """SCRFD's graph in PyTorch, on CUDA when PyTorch sees a GPU."""
    import torch

    from fame.faces.torch_session import TorchSession

    if threads > 0:  # front-end workers are processes of their own: the setting is theirs
        torch.set_num_threads(threads)
    session = TorchSession(graph, "cuda" if torch.cuda.is_available() else "cpu")
    log.info("detector runs on %s", session.get_providers()[0])
    return session


def _torch_session_or(fallback, graph: bytes, threads: int):  # type: ignore[no-untyped-def]
    """``auto`` on a GPU only PyTorch reaches: PyTorch, unless the graph has operators the
    interpreter lacks (then ONNX Runtime on the CPU, with a warning)."""
    from fame.faces.torch_session import UnsupportedGraphError

    try:
        return _torch_session(graph, threads)
    except UnsupportedGraphError as e:
        log.warning("detector stays on ONNX Runtime's CPU provider: PyTorch cannot run it (%s)", e)
        return fallback


def _check_providers(active: list[str], requested: tuple[str, ...]) -> str:
    """ONNX Runtime falls back to CPU silently; say which provider really runs."""
    provider = active[0] if active else _CPU
    if requested and provider != requested[0]:
        log.warning("detector asked for %s but runs on %s", requested[0], provider)
    else:
        log.info("detector runs on %s", provider)
    return provider
