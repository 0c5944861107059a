"""The face front end: one video reference in, per-person tracks of aligned face crops out.

fetch (URIs only) -> decode + sample -> detect -> track -> align, timed per stage. `FrontEnd` holds
the detector and is reused across videos (batch jobs); `FrontEndPool` runs the same thing in
sandboxed worker processes (the service), so a hang, crash or memory blow-up costs one video.
Every failure leaves as a `FameError` with a stable code; nothing else escapes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, TypeGuard

import cv2
import numpy as np

from fame.errors import FameError, PoisonError
from fame.faces.align import align_face
from fame.faces.detector import (
    DETECTOR_BACKENDS,
    Detections,
    FaceDetector,
    load_detector,
    runs_on_gpu,
)
from fame.faces.keyframes import interpolate
from fame.faces.tracker import IouTracker, Track, TrackerConfig, TrackStats
from fame.video import decode
from fame.video.ahead import DEPTH as AHEAD_DEPTH
from fame.video.ahead import DecodeAhead
from fame.video.decode import HWACCELS, DecodeLimits, SamplingPolicy, Video, VideoInfo
from fame.video.fetch import FetchPolicy, fetch
from fame.video.sandbox import SandboxPool
from schemas.errors import ErrorCode

STAGES = ("fetch", "decode", "detect", "track", "align")
MAX_DETECT_BATCH = 32  # frames waiting for their batch are held decoded: bound the memory
# key frames per detector call where detect_batch is 0 (auto) and the detector runs on a GPU:
# on the lent H200, 16 workers detecting 8 frames a call served 1.43x the events/s of frame by
# frame (GPU 57 % busy, not 93 %); 16 and 32 showed no trend past the bursts' noise, and hold
# more frames (docs/benchmarks.md). On a CPU batching was 0.74-1.14x, so auto is 1 there.
GPU_DETECT_BATCH = 8
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrontEndConfig:
    """Everything a worker needs to turn a reference into tracks (picklable: crosses processes).

    ``detector_path`` None means the usual search (see `fame.faces.detector`). ``det_size`` is
    the long side of the detector's input (frames keep their aspect): 640 is what the shipped
    checkpoint was evaluated with; 320 detects about 3x faster and misses more small faces.
    """

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    detector_path: str | None = None
    det_size: int = 640
    det_thresh: float = 0.4  # at 0.5 a turned head drops out of 1/3 of driving_d14's frames
    allow_fallback_detector: bool = True
    providers: tuple[str, ...] | None = None
    detector_backend: str = "auto"  # onnxruntime, torch, or auto (see fame.faces.detector)
    hwaccel: str = "none"  # "cuda": decode on the GPU's NVDEC (see fame.video.decode)
    crop_size_px: int = 112
    detect_every: int = 1  # detect on every k-th sampled frame, interpolate between (keyframes)
    # key frames per detector call: one network call for several frames (for a GPU, where the
    # workers' detections share the device); 0: auto, `GPU_DETECT_BATCH` where the detector
    # runs on a GPU, else 1. Frames wait for their batch, so a worker holds up to
    # detect_batch x detect_every decoded frames waiting and max(AHEAD_DEPTH, that) ahead
    detect_batch: int = 0
    # CPU threads for the detector (ONNX Runtime's intra-op threads) and for the decoder; 0: one
    # per core for a lone FrontEnd, and the CPUs divided among the workers in a FrontEndPool
    # (whose parallelism is its processes)
    detector_threads: int = 0
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if not 0 <= self.detect_batch <= MAX_DETECT_BATCH:
            raise ValueError(
                f"detect_batch must be in 0 (auto)..{MAX_DETECT_BATCH}, got {self.detect_batch}"
            )
        if self.detector_threads < 0:
            raise ValueError(f"detector_threads must be >= 0, got {self.detector_threads}")
        if self.hwaccel not in HWACCELS:
            raise ValueError(f"hwaccel must be one of {HWACCELS}, got {self.hwaccel!r}")
        if self.detector_backend not in DETECTOR_BACKENDS:
            raise ValueError(
                f"detector_backend must be one of {DETECTOR_BACKENDS}, "
                f"got {self.detector_backend!r}"
            )


@dataclass
class FaceTrack:
    """One person's face over time; row ``i`` of every array belongs to the same sampled frame."""

    track_id: int
    crops: np.ndarray  # uint8 [N, S, S, 3] RGB
    frame_indices: np.ndarray  # int64 [N], index among all decoded frames
    timestamps_s: np.ndarray  # float64 [N]
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2 in displayed-frame pixels
    scores: np.ndarray  # float32 [N]
    stats: TrackStats


@dataclass
class FrontEndResult:
    tracks: list[FaceTrack]  # longest first
    sampled_frames: int
    video: VideoInfo
    timings_ms: dict[str, float]
    detector: str  # e.g. scrfd:scrfd_500m_bnkps.onnx@torch:cuda
    hardware_decoding: bool = False  # the decoder ran on NVDEC (FAME_HWACCEL=cuda)

    @property
    def dominant_track(self) -> FaceTrack | None:
        return self.tracks[0] if self.tracks else None


class FrontEnd:
    """Holds one loaded detector; `process` may be called for many videos, one at a time.
    Its ``config`` says what runs: ``detect_batch`` 0 (auto) is resolved for the detector."""

    def __init__(self, config: FrontEndConfig, detector: FaceDetector | None = None) -> None:
        if config.detector_threads > 0:
            # OpenCV (letterbox, blob, alignment) would start a thread per core in every
            # front-end worker process: the workers are the parallelism
            cv2.setNumThreads(config.detector_threads)
        self.detector = detector or load_detector(
            config.detector_path,
            det_size=config.det_size,
            det_thresh=config.det_thresh,
            allow_fallback=config.allow_fallback_detector,
            providers=config.providers,
            threads=config.detector_threads,
            backend=config.detector_backend,
        )
        if config.detect_batch == 0:
            batch = GPU_DETECT_BATCH if runs_on_gpu(self.detector.name) else 1
            config = replace(config, detect_batch=batch)
        self.config = config

    def process(
        self, source: str | Path, sha256: str | None = None, work_dir: Path | None = None
    ) -> FrontEndResult:
        """``source``: a URI (fetched under ``config.fetch`` into a temporary folder under
        ``work_dir``, default ``config.work_dir``) or a trusted local path.

        A video that fails as a corrupt stream on NVDEC is decoded again in software before it
        is called corrupt: a device that fails (out of memory, a stream it half supports) must
        not send a good video to the dead letters."""
        try:
            try:
                return self._process(source, sha256, self.config.hwaccel, work_dir)
            except PoisonError as e:
                tried_hardware = self.config.hwaccel != "none" and (
                    decode.hwaccel_unavailable(self.config.hwaccel) is None
                )
                if not tried_hardware or e.code != ErrorCode.CORRUPT_STREAM:
                    raise
                log.warning("%s on %s; decoding it in software", e.message, self.config.hwaccel)
                return self._process(source, sha256, "none", work_dir)
        except FameError:
            raise
        except MemoryError as e:
            raise PoisonError(f"out of memory on {source}", code=ErrorCode.DECODE_CRASHED) from e
        except Exception as e:
            raise FameError(
                f"front end failed on {source}: {e!r}", code=ErrorCode.INTERNAL_ERROR
            ) from e

    def _process(
        self, source: str | Path, sha256: str | None, hwaccel: str, work_dir: Path | None
    ) -> FrontEndResult:
        timings_ms = dict.fromkeys(STAGES, 0.0)
        with (
            _local_file(source, sha256, self.config, work_dir, timings_ms) as path,
            Video(
                path,
                self.config.limits,
                hwaccel,
                self.config.detector_threads,
                name=str(source) if is_uri(source) else None,  # not the fetched copy's name
            ) as video,
        ):
            run = _TrackingRun(self.detector, self.config, timings_ms)
            # "decode" is the decoding thread's own time, overlapped with detection; it keeps
            # decoding the next batch's frames while one batch is detected
            frames_per_batch = self.config.detect_batch * self.config.detect_every
            with DecodeAhead(
                video.frames(self.config.sampling),
                timings_ms,
                "decode",
                depth=max(AHEAD_DEPTH, frames_per_batch),
            ) as frames:
                for frame in frames:
                    run.add(frame.rgb, frame.index, frame.timestamp_s)
            run.finish()
            info = video.info
            hardware = video.hardware_decoding
        return FrontEndResult(
            tracks=run.tracks(),
            sampled_frames=len(run.frame_indices),
            video=info,
            timings_ms=timings_ms,
            detector=self.detector.name,
            hardware_decoding=hardware,
        )


def process_video(
    source: str | Path, config: FrontEndConfig | None = None, sha256: str | None = None
) -> FrontEndResult:
    """One-off convenience (loads the detector each call); reuse a `FrontEnd` for many videos."""
    return FrontEnd(config or FrontEndConfig()).process(source, sha256)


class _Sampled(NamedTuple):
    rgb: np.ndarray
    frame_index: int
    timestamp_s: float
    key: bool  # detected (else placed between the key frames around it)


class _TrackingRun:
    """Detect, track and align one video's sampled frames, keeping crops per track id.

    Key frames are every ``detect_every``-th sampled frame from the first, and the last. They
    are detected ``detect_batch`` at a time, in one detector call; the frames wait in order
    until their batch is detected, then go through the tracker in order, those between two key
    frames with faces interpolated between them."""

    def __init__(
        self, detector: FaceDetector, config: FrontEndConfig, timings_ms: dict[str, float]
    ) -> None:
        self._detector = detector
        self._config = config
        self._timings_ms = timings_ms
        self._tracker = IouTracker(config.tracker)
        self._crops: dict[int, list[np.ndarray]] = {}
        self._pending: list[_Sampled] = []
        self._keys_pending = 0
        self._last_key: Detections | None = None
        self.frame_indices: list[int] = []
        self.timestamps_s: list[float] = []

    def add(self, rgb: np.ndarray, frame_index: int, timestamp_s: float) -> None:
        sampled = len(self.frame_indices) + len(self._pending)
        key = sampled % self._config.detect_every == 0
        self._pending.append(_Sampled(rgb, frame_index, timestamp_s, key))
        self._keys_pending += key
        if self._keys_pending >= self._config.detect_batch:
            self._flush()

    def _flush(self) -> None:
        """Detect the pending key frames in one call; place the frames between them."""
        if not self._pending:
            return
        if not self._pending[-1].key:  # the last frame (`finish`) is a key frame too
            self._pending[-1] = self._pending[-1]._replace(key=True)
        started = time.perf_counter()
        found = self._detector.detect_batch([frame.rgb for frame in self._pending if frame.key])
        self._timings_ms["detect"] += _ms_since(started)
        keys = iter(found)
        between: list[_Sampled] = []
        for frame in self._pending:
            if not frame.key:
                between.append(frame)
                continue
            key = next(keys)
            for position, older in enumerate(between):
                assert self._last_key is not None  # the first frame is always a key frame
                started = time.perf_counter()
                fraction = (position + 1) / (len(between) + 1)
                detections = interpolate(
                    self._last_key, key, fraction, self._config.tracker.iou_threshold
                )
                self._timings_ms["track"] += _ms_since(started)
                self._track_and_align(older, detections)
            self._track_and_align(frame, key)
            self._last_key = key
            between = []
        self._pending = []
        self._keys_pending = 0

    def _track_and_align(self, frame: _Sampled, detections: Detections) -> None:
        rgb = frame.rgb
        started = time.perf_counter()
        ids = self._tracker.update(detections.boxes, detections.scores)
        self._timings_ms["track"] += _ms_since(started)
        started = time.perf_counter()
        for det, track_id in enumerate(ids):
            if track_id < 0:
                continue
            keypoints = None if detections.keypoints is None else detections.keypoints[det]
            crop = align_face(rgb, detections.boxes[det], keypoints, self._config.crop_size_px)
            self._crops.setdefault(int(track_id), []).append(crop)
        self._timings_ms["align"] += _ms_since(started)
        self.frame_indices.append(frame.frame_index)
        self.timestamps_s.append(frame.timestamp_s)

    def finish(self) -> None:
        """Detects the last batch: the frames after the last full one, the final frame a key."""
        self._flush()

    def tracks(self) -> list[FaceTrack]:
        # A one-frame input (an image) can only give one-frame tracks.
        min_length = min(self._config.tracker.min_track_length, max(len(self.frame_indices), 1))
        return [self._face_track(t) for t in self._tracker.finished_tracks(min_length)]

    def _face_track(self, track: Track) -> FaceTrack:
        steps = np.asarray(track.steps, dtype=np.int64)
        return FaceTrack(
            track_id=track.track_id,
            crops=np.stack(self._crops[track.track_id]).astype(np.uint8, copy=False),
            frame_indices=np.asarray(self.frame_indices, dtype=np.int64)[steps],
            timestamps_s=np.asarray(self.timestamps_s, dtype=np.float64)[steps],
            boxes=np.stack(track.boxes).astype(np.float32),
            scores=np.asarray(track.scores, dtype=np.float32),
            stats=track.stats(len(self.frame_indices)),
        )


def is_uri(source: str | Path) -> TypeGuard[str]:
    """A URI to fetch (``scheme://...``), not a local path: how every caller tells them apart."""
    return isinstance(source, str) and "://" in source


@contextlib.contextmanager
def _local_file(
    source: str | Path,
    sha256: str | None,
    config: FrontEndConfig,
    work_dir: Path | None,
    timings_ms: dict[str, float],
) -> Iterator[Path]:
    """The local file to decode; a URI is fetched into a temp dir that is removed on the way
    out (a process killed meanwhile cannot: `FrontEndPool` removes its task folders itself)."""
    if not is_uri(source):
        yield Path(source)
        return
    with tempfile.TemporaryDirectory(prefix="fame-fetch-", dir=work_dir or config.work_dir) as tmp:
        started = time.perf_counter()
        path = fetch(source, Path(tmp), config.fetch, sha256)
        timings_ms["fetch"] += _ms_since(started)
        yield path


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; a CPU quota is not visible here)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _worker_init(setup: tuple[FrontEndConfig, Callable[[], object] | None]) -> FrontEnd:
    config, prepare = setup
    if prepare is not None:
        prepare()
    return FrontEnd(config)


def _worker_run(
    frontend: FrontEnd, task: tuple[str | Path, str | None, Path | None]
) -> FrontEndResult:
    source, sha256, work_dir = task
    return frontend.process(source, sha256, work_dir)


class FrontEndPool:
    """`FrontEnd` in ``workers`` sandboxed processes, each loading the detector once.

    `submit` never blocks. A task past ``task_timeout_s`` gets its worker killed and replaced and
    fails with ``decode_timeout``; a worker that dies (segfault, or memory beyond
    ``memory_limit_mb`` of headroom over its loaded size) fails its task with ``decode_crashed``.
    Errors raised inside a worker arrive with their class and code. ``worker_setup`` (picklable)
    runs first in every worker: the service passes its log configuration, so what a worker logs
    (which runtime its detector got, a decoder falling back to software) reads like the rest.
    """

    def __init__(
        self,
        config: FrontEndConfig,
        workers: int = 2,
        task_timeout_s: float = 120.0,
        memory_limit_mb: int | None = None,
        worker_setup: Callable[[], object] | None = None,
    ) -> None:
        if config.detector_threads == 0:  # workers * threads = CPUs: no oversubscription
            threads = max(1, available_cpus() // workers)
            config = replace(config, detector_threads=threads)
        self.config = config
        self._pool = SandboxPool(
            init=_worker_init,
            init_arg=(config, worker_setup),
            run=_worker_run,
            workers=workers,
            task_timeout_s=task_timeout_s,
            memory_limit_mb=memory_limit_mb,
        )

    def submit(self, source: str | Path, sha256: str | None = None) -> Future[FrontEndResult]:
        """A URI is fetched into a folder this process creates and removes once the task ends,
        however it ends: a worker killed for time or memory leaves its download behind, and
        hundreds of MB per task would fill the pod's scratch space."""
        if not is_uri(source):
            return self._pool.submit((source, sha256, None))
        work_dir = Path(tempfile.mkdtemp(prefix="fame-task-", dir=self.config.work_dir))
        future = self._pool.submit((source, sha256, work_dir))
        future.add_done_callback(lambda _: shutil.rmtree(work_dir, ignore_errors=True))
        return future

    @property
    def healthy(self) -> bool:
        """False when the pool cannot run tasks: see `SandboxPool.healthy`."""
        return self._pool.healthy

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> FrontEndPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
