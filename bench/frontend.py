"""Front-end speed per video: decode only, decode + detect, the full front end; and the ceiling.

All three stages use the service's sampling (8 fps by default), so "sampled frames/s" compares
like with like: decode-only still decodes every frame and keeps the sampled ones. The full front
end then runs once per lever in `LEVERS` (detecting on every 2nd sampled frame,
`FAME_DETECT_EVERY`; a 320-px detector input, `FAME_DETECT_SIZE`; both; 8 frames per detector
call, `FAME_DETECT_BATCH`: its crops are the default's) and once on the detector
runtime that `auto` did not choose (`FAME_DETECTOR_BACKEND`: PyTorch on a CPU, where it is slower;
on a GPU machine whichever of ONNX Runtime and PyTorch `auto` left out), with how far its crops
move from the default settings. `detector_network` times SCRFD's network alone per runtime
(ONNX Runtime on the CPU, PyTorch eager, and on CUDA PyTorch with CUDA graphs); `detector_host`
the CPU that detection costs around the network, per frame. The ceiling is
`FrontEndPool` (the service's worker processes) over a list of videos at once: the events/s the
service could reach if everything after the front end were free.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.machine import GpuBusy
from bench.stats import median, ratio, time_calls
from fame.errors import FameError
from fame.faces.detector import FaceDetector
from fame.faces.frontend import (
    FaceTrack,
    FrontEnd,
    FrontEndConfig,
    FrontEndPool,
    FrontEndResult,
    available_cpus,
)
from fame.video.decode import Video, hwaccel_unavailable


class Lever(NamedTuple):
    """Front-end settings that trade detection for speed (the defaults: no trade)."""

    detect_every: int = 1  # FAME_DETECT_EVERY
    det_size: int = 640  # FAME_DETECT_SIZE
    detector_backend: str = "auto"  # FAME_DETECTOR_BACKEND
    hwaccel: str = "none"  # FAME_HWACCEL
    detect_batch: int = 1  # FAME_DETECT_BATCH


LEVERS = {
    "detect_every_2": Lever(detect_every=2),
    "detect_size_320": Lever(det_size=320),
    "detect_every_2_size_320": Lever(detect_every=2, det_size=320),
    "detect_batch_8": Lever(detect_batch=8),
}


def other_backend(detector_name: str) -> str:
    """The detector runtime `auto` did not choose, judged by the loaded detector's name."""
    return "onnxruntime" if "@torch:" in detector_name else "torch"


def frontend_config(detector_path: Path) -> FrontEndConfig:
    """The service's front-end settings with the benchmark's detector (no fallback)."""
    return FrontEndConfig(detector_path=str(detector_path), allow_fallback_detector=False)


def run(videos: list[Path], detector_path: Path, backend: str = "auto") -> dict[str, Any]:
    """Per video and stage: sampled frames/s, plus the front end's own per-stage timings.
    ``backend``: the detector runtime of the default front end (`FAME_DETECTOR_BACKEND`)."""
    config = dataclasses.replace(frontend_config(detector_path), detector_backend=backend)
    detectors: dict[tuple[int, str], FaceDetector] = {}

    def build(settings: Lever) -> FrontEnd:
        """A front end with these settings, sharing one loaded detector per size and runtime."""
        lever = dataclasses.replace(config, **settings._asdict())
        key = (lever.det_size, lever.detector_backend)
        frontend = FrontEnd(lever, detector=detectors.get(key))
        detectors.setdefault(key, frontend.detector)
        return frontend

    frontend = build(Lever(detector_backend=backend))
    other = other_backend(frontend.detector.name)
    settings_of = {name: lever._replace(detector_backend=backend) for name, lever in LEVERS.items()}
    settings_of[f"detector_backend_{other}"] = Lever(detector_backend=other)
    nvdec_unavailable = hwaccel_unavailable("cuda")
    nvdec = nvdec_unavailable is None
    if nvdec:
        settings_of["hwaccel_cuda"] = Lever(detector_backend=backend, hwaccel="cuda")
    levers = {name: build(settings) for name, settings in settings_of.items()}
    _warm_detectors(videos, config, list(detectors.values()))
    rows = []
    for path in videos:
        decode_s, sampled = _decode(path, config, None)
        detect_s, _ = _decode(path, config, frontend.detector)
        result, full_s = _timed(frontend, path)
        info = result.video
        full_fps = ratio(result.sampled_frames, full_s)
        row: dict[str, Any] = {
            "video": path.name,
            "resolution": f"{info.width}x{info.height}",
            "decoded_frames": info.frame_count,
            "sampled_frames": sampled,
            "decode_only_fps": ratio(sampled, decode_s),
            "decode_detect_fps": ratio(sampled, detect_s),
            **(_nvdec_decode(path, config, sampled, decode_s) if nvdec else {}),
            "full_fps": full_fps,
            "full_stage_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
            "tracks": len(result.tracks),
            "levers": {},
        }
        for name, lever in levers.items():
            try:
                lever_result, lever_s = _timed(lever, path)
            except FameError as e:  # NVDEC is only ever tried where a GPU is lent: keep the rest
                row["levers"][name] = {"settings": settings_of[name]._asdict(), "error": str(e)}
                continue
            fps = ratio(lever_result.sampled_frames, lever_s)
            row["levers"][name] = {
                "settings": settings_of[name]._asdict(),
                "detector": lever.detector.name,
                "hardware_decoding": lever_result.hardware_decoding,
                "full_fps": fps,
                "speedup": ratio(fps, full_fps),
                "detect_ms": round(lever_result.timings_ms["detect"], 1),
                "crop_mad": _crop_difference(result.tracks, lever_result.tracks),
            }
        rows.append(row)
    return {
        "detector": frontend.detector.name,
        "nvdec_unavailable": nvdec_unavailable,
        "videos": rows,
        "detector_network": detector_network(detector_path),
        "detector_host": detector_host(videos, frontend.detector),
    }


NETWORK_SIZES = ((640, 384), (640, 640))  # (width, height): a 16:9 frame's input, a square one
# frames per call of SCRFD's network on CUDA: whether a batch costs about one frame's GPU time,
# the premise of batching detections across a worker's decoded frames
NETWORK_BATCHES = (4, 8)


def detector_network(detector_path: Path, repeats: int = 20) -> list[dict[str, Any]]:
    """SCRFD's network alone (no resize, anchors or NMS) on a random blob per input size: ms per
    call (median, outputs back on the host) for each runtime, and the largest output difference
    from ONNX Runtime on the CPU (the reference every other runtime must reproduce). On CUDA,
    also the CUDA-graph replay of `NETWORK_BATCHES` frames per call (`network_batch_row`)."""
    import onnxruntime
    import torch

    from fame.faces.scrfd_graph import free_size_graph
    from fame.faces.torch_session import TorchSession

    graph = free_size_graph(detector_path)
    if graph is None:
        return []
    reference = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runtimes: dict[str, Any] = {
        "onnxruntime:cpu": reference,
        f"torch:{device} eager": TorchSession(graph, device, cuda_graphs=False),
    }
    if device == "cuda":
        runtimes["torch:cuda graphs"] = TorchSession(graph, device)
    name = reference.get_inputs()[0].name
    rows = []
    for width, height in NETWORK_SIZES:
        feed = {name: np.random.default_rng(0).standard_normal((1, 3, height, width), np.float32)}
        want = reference.run(None, feed)
        for runtime, session in runtimes.items():
            got = session.run(None, feed)
            seconds = time_calls(functools.partial(session.run, None, feed), repeats)
            rows.append(
                {
                    "runtime": runtime,
                    "input": f"{width}x{height}",
                    "ms": 1000 * median(seconds),
                    "max_abs_diff": _max_difference(want, got),
                }
            )
        if device == "cuda":
            for batch in NETWORK_BATCHES:
                graphs = runtimes["torch:cuda graphs"]
                row = network_batch_row(graphs, reference, batch, (width, height), repeats)
                rows.append({"runtime": "torch:cuda graphs", **row})
    return rows


def network_batch_row(
    session: Any, reference: Any, batch: int, size: tuple[int, int], repeats: int
) -> dict[str, Any]:
    """`batch` random frames in one call of `session`: ms per call and per frame, and the
    largest difference from `reference` run on each frame alone. SCRFD's heads reshape to
    ``[1, -1, C]`` after a channels-last transpose, so a batch's rows come frame after frame:
    the frames' outputs, concatenated in order, are the batch's."""
    width, height = size
    name = reference.get_inputs()[0].name
    blob = np.random.default_rng(batch).standard_normal((batch, 3, height, width), np.float32)
    alone = [reference.run(None, {name: blob[i : i + 1]}) for i in range(batch)]
    want = [np.concatenate(outputs, axis=1) for outputs in zip(*alone, strict=True)]
    got = session.run(None, {name: blob})
    ms = 1000 * median(time_calls(functools.partial(session.run, None, {name: blob}), repeats))
    return {
        "input": f"{width}x{height}",
        "batch": batch,
        "ms": ms,
        "ms_per_frame": ms / batch,
        "max_abs_diff": _max_difference(want, got),
    }


def _max_difference(want: list[np.ndarray], got: list[np.ndarray]) -> float:
    """The largest absolute difference between two runs' outputs, output by output."""
    return max(float(np.abs(a - b).max()) for a, b in zip(want, got, strict=True))


def warm_up_videos(videos: list[Path], workers: int) -> list[Path]:
    """Each distinct video once per worker: what every timed run here is warmed with, so that
    each worker has loaded its detector and met each input size (on a GPU, PyTorch captures a
    CUDA graph per detector input size on first sight) before the clock runs."""
    return [video for video in dict.fromkeys(videos) for _ in range(workers)]


def _warm_detectors(
    videos: list[Path], config: FrontEndConfig, detectors: list[FaceDetector]
) -> None:
    """Each detector once on each video's first frame, and on batches of it as `LEVERS` ask,
    untimed: on a GPU PyTorch captures a CUDA graph per input size and batch size (batches are
    padded to powers of two) on first sight, which would land in whichever timed run met it
    first."""
    largest = max(lever.detect_batch for lever in LEVERS.values())
    batch_sizes = [1 << k for k in range(largest.bit_length()) if 1 << k <= largest]
    for path in videos:
        with Video(path, config.limits) as video:
            first = next(video.frames(config.sampling)).rgb
        for detector in detectors:
            for size in batch_sizes:
                detector.detect_batch([first] * size)


def detector_host(
    videos: list[Path], detector: FaceDetector, frames: int = 16, repeats: int = 9
) -> list[dict[str, Any]]:
    """Per video (its first ``frames`` sampled frames): ms per frame of `ScrfdDetector.detect`,
    of its runtime call alone (network and candidate selection: `_candidates` on the letterboxed
    frame, or where PyTorch letterboxes the frame on its device, `_candidates_of_frames` on the
    frame, that resize and the frame's upload included), the difference (``host_ms``: the
    worker's CPU around the network, which is what is left of detection for the worker once the
    network runs on the GPU), and InsightFace's ``SCRFD.detect`` on the same frames (given the
    BGR copy it expects) for comparison. Where the letterbox is on the device, also what the
    host letterbox would cost instead, in the same run: the letterbox alone
    (``letterbox_ms``) and the runtime call on its image (``letterboxed_network_ms``), and
    ``device_letterbox_speedup``, their sum over ``network_ms``."""
    from fame.faces.detector import ScrfdDetector
    from fame.faces.scrfd_frame import fit, letterbox, letterbox_frames

    if not isinstance(detector, ScrfdDetector):
        return []
    config = FrontEndConfig()
    adapter = detector._model
    rows = []
    for path in videos:
        with Video(path, config.limits) as video:
            rgb = [frame.rgb for frame in itertools.islice(video.frames(config.sampling), frames)]
        size = detector.input_size(*rgb[0].shape[:2])
        boxed = [letterbox_frames([frame], size) for frame in rgb]  # batches of one
        adapter.det_thresh = detector.det_thresh
        calls: dict[str, tuple[Any, list[Any]]] = {
            "detect": (detector.detect, rgb),
            "letterboxed_network": (detector._candidates, boxed),
            "insightface_detect": (
                functools.partial(_insightface_detect, adapter, size=size),
                rgb,
            ),
        }
        on_device = detector.letterboxes_on_device(rgb[0].shape)
        if on_device:
            placed = fit(rgb[0].shape, size)
            device_call = functools.partial(
                detector._candidates_of_frames, size=size, placed=placed
            )
            calls["network"] = (device_call, [[frame] for frame in rgb])  # batches of one
            calls["letterbox"] = (functools.partial(letterbox, size=size), rgb)
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):  # interleaved, so a slow spell of the machine hits them all
            for name, (call, inputs) in calls.items():
                seconds[name] += time_calls(functools.partial(_each, call, inputs), 1)
        ms = {name: 1000 * median(values) / len(rgb) for name, values in seconds.items()}
        network = ms.get("network", ms["letterboxed_network"])
        row: dict[str, Any] = {
            "video": path.name,
            "resolution": f"{rgb[0].shape[1]}x{rgb[0].shape[0]}",
            "input": f"{size[0]}x{size[1]}",
            "letterbox_on": "device" if on_device else "host",
            "detect_ms": ms["detect"],
            "network_ms": network,
            "host_ms": ms["detect"] - network,
            "insightface_detect_ms": ms["insightface_detect"],
            "speedup_vs_insightface": ratio(ms["insightface_detect"], ms["detect"]),
        }
        if on_device:
            host_path = ms["letterbox"] + ms["letterboxed_network"]
            row |= {
                "letterbox_ms": ms["letterbox"],
                "letterboxed_network_ms": ms["letterboxed_network"],
                "device_letterbox_speedup": ratio(host_path, network),
            }
        rows.append(row)
    return rows


def _insightface_detect(adapter: Any, frame: np.ndarray, size: tuple[int, int]) -> Any:
    return adapter.detect(np.ascontiguousarray(frame[:, :, ::-1]), input_size=size)


def _each(call: Any, inputs: list[np.ndarray]) -> None:
    for item in inputs:
        call(item)


def _nvdec_decode(
    path: Path, config: FrontEndConfig, sampled: int, software_s: float
) -> dict[str, Any]:
    """Decode-only on NVDEC: sampled frames/s, its speed-up over software decoding, and whether
    the decoder really ran on the device."""
    nvdec = dataclasses.replace(config, hwaccel="cuda")
    try:
        seconds, _ = _decode(path, nvdec, None)
        with Video(path, nvdec.limits, "cuda") as video:
            next(video.frames(nvdec.sampling))
            hardware = video.hardware_decoding
    except FameError as e:
        return {"nvdec_error": str(e)}
    return {
        "decode_only_nvdec_fps": ratio(sampled, seconds),
        "nvdec_speedup": ratio(software_s, seconds),
        "nvdec_in_hardware": hardware,
    }


def _timed(frontend: FrontEnd, path: Path) -> tuple[FrontEndResult, float]:
    started = time.perf_counter()
    result = frontend.process(path)
    return result, time.perf_counter() - started


def _crop_difference(full: list[FaceTrack], keyed: list[FaceTrack]) -> float | None:
    """Mean absolute difference (grey levels) between the dominant tracks' crops (None when
    the tracks differ in length: then the lever changed which frames have a face)."""
    if not full or not keyed or len(full[0].crops) != len(keyed[0].crops):
        return None
    return float(np.abs(full[0].crops.astype(np.float32) - keyed[0].crops).mean())


def _decode(path: Path, config: FrontEndConfig, detector: FaceDetector | None) -> tuple[float, int]:
    """Seconds to decode (and detect on, when given a detector) every sampled frame."""
    started = time.perf_counter()
    sampled = 0
    with Video(path, config.limits, config.hwaccel, config.detector_threads) as video:
        for frame in video.frames(config.sampling):
            if detector is not None:
                detector.detect(frame.rgb)
            sampled += 1
    return time.perf_counter() - started, sampled


def decode_ceiling(videos: list[Path], workers: int, hwaccel: str = "none") -> dict[str, Any]:
    """Events/s of decoding alone (the service's sampling) in `workers` processes over `videos`
    submitted at once: the rate no front end can beat on this machine (with this decoder).
    Each process decodes with the CPU threads a service worker gets (CPUs / workers)."""
    config = FrontEndConfig(hwaccel=hwaccel, detector_threads=max(1, available_cpus() // workers))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_decode, videos[:workers], [config] * workers, [None] * workers))
        started = time.perf_counter()
        decoded = list(pool.map(_decode, videos, [config] * len(videos), [None] * len(videos)))
        seconds = time.perf_counter() - started
    return {
        "workers": workers,
        "hwaccel": hwaccel,
        "videos": len(videos),
        "seconds": seconds,
        "events_per_s": len(videos) / seconds,
        "sampled_frames_per_s": sum(sampled for _, sampled in decoded) / seconds,
    }


def ceiling(
    videos: list[Path],
    detector_path: Path,
    workers: int,
    detect_batch: int = 0,
    worker_setup: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Events/s of `FrontEndPool(workers)` alone over `videos` submitted at once (detector
    loading excluded: the pool is warmed by one video first), detecting ``detect_batch``
    frames per call (`FAME_DETECT_BATCH`; 0, the service's default: auto). ``worker_setup``
    runs in each worker first (a probe's variant of the front end)."""
    config = dataclasses.replace(frontend_config(detector_path), detect_batch=detect_batch)
    with FrontEndPool(config, workers=workers, worker_setup=worker_setup) as pool:
        for warm in [pool.submit(video) for video in warm_up_videos(videos, workers)]:
            warm.result()
        with GpuBusy() as busy:
            started = time.perf_counter()
            results = [f.result() for f in [pool.submit(path) for path in videos]]
            seconds = time.perf_counter() - started
        threads = pool.config.detector_threads
    frames = sum(r.sampled_frames for r in results)
    return {
        "detector": results[0].detector,
        "workers": workers,
        "detect_batch": detect_batch,
        "detector_threads_per_worker": threads,
        "videos": len(videos),
        "seconds": seconds,
        "events_per_s": len(videos) / seconds,
        "sampled_frames_per_s": frames / seconds,
        "gpu_busy": busy.result(),  # None without an NVIDIA GPU
    }
