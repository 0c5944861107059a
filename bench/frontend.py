"""Front-end speed per video: decode only, decode + detect, the full front end; and the ceiling.

All three stages use the service's sampling (8 fps by default), so "sampled frames/s" compares
like with like: decode-only still decodes every frame and keeps the sampled ones. The full front
end runs a second time detecting on every `KEYFRAME_EVERY`-th sampled frame only
(`FAME_DETECT_EVERY`), with how far its crops move from detecting everywhere. The ceiling is
`FrontEndPool` (the service's worker processes) over a list of videos at once: the events/s the
service could reach if everything after the front end were free.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import ratio
from fame.faces.detector import FaceDetector, load_detector
from fame.faces.frontend import FaceTrack, FrontEnd, FrontEndConfig, FrontEndPool

KEYFRAME_EVERY = 2


def frontend_config(detector_path: Path) -> FrontEndConfig:
    """The service's front-end settings with the benchmark's detector (no fallback)."""
    return FrontEndConfig(detector_path=str(detector_path), allow_fallback_detector=False)


def run(videos: list[Path], detector_path: Path) -> dict[str, Any]:
    """Per video and stage: sampled frames/s, plus the front end's own per-stage timings."""
    config = frontend_config(detector_path)
    detector = load_detector(
        config.detector_path,
        det_size=config.det_size,
        det_thresh=config.det_thresh,
        allow_fallback=False,
        providers=config.providers,
    )
    frontend = FrontEnd(config, detector=detector)
    keyed = FrontEnd(dataclasses.replace(config, detect_every=KEYFRAME_EVERY), detector=detector)
    rows = []
    for path in videos:
        decode_s, sampled = _decode(path, config, None)
        detect_s, _ = _decode(path, config, detector)
        started = time.perf_counter()
        result = frontend.process(path)
        full_s = time.perf_counter() - started
        started = time.perf_counter()
        keyed_result = keyed.process(path)
        keyed_s = time.perf_counter() - started
        info = result.video
        rows.append(
            {
                "video": path.name,
                "resolution": f"{info.width}x{info.height}",
                "decoded_frames": info.frame_count,
                "sampled_frames": sampled,
                "decode_only_fps": ratio(sampled, decode_s),
                "decode_detect_fps": ratio(sampled, detect_s),
                "full_fps": ratio(result.sampled_frames, full_s),
                "full_stage_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
                "tracks": len(result.tracks),
                "keyframes_every": KEYFRAME_EVERY,
                "keyframes_fps": ratio(keyed_result.sampled_frames, keyed_s),
                "keyframes_detect_ms": round(keyed_result.timings_ms["detect"], 1),
                "keyframes_crop_mad": _crop_difference(result.tracks, keyed_result.tracks),
            }
        )
    return {"detector": frontend.detector.name, "videos": rows}


def _crop_difference(full: list[FaceTrack], keyed: list[FaceTrack]) -> float | None:
    """Mean absolute difference (grey levels) between the dominant tracks' crops."""
    if not full or not keyed or len(full[0].crops) != len(keyed[0].crops):
        return None
    return float(np.abs(full[0].crops.astype(np.float32) - keyed[0].crops).mean())


def _decode(path: Path, config: FrontEndConfig, detector: FaceDetector | None) -> tuple[float, int]:
    """Seconds to decode (and detect on, when given a detector) every sampled frame."""
    from fame.video.decode import Video

    started = time.perf_counter()
    sampled = 0
    with Video(path, config.limits) as video:
        for frame in video.frames(config.sampling):
            if detector is not None:
                detector.detect(frame.rgb)
            sampled += 1
    return time.perf_counter() - started, sampled


def ceiling(videos: list[Path], detector_path: Path, workers: int) -> dict[str, Any]:
    """Events/s of `FrontEndPool(workers)` alone over `videos` submitted at once (detector
    loading excluded: the pool is warmed by one video first)."""
    config = frontend_config(detector_path)
    with FrontEndPool(config, workers=workers) as pool:
        for warm in [pool.submit(videos[0]) for _ in range(workers)]:
            warm.result()
        started = time.perf_counter()
        results = [f.result() for f in [pool.submit(path) for path in videos]]
        seconds = time.perf_counter() - started
    frames = sum(r.sampled_frames for r in results)
    return {
        "workers": workers,
        "videos": len(videos),
        "seconds": seconds,
        "events_per_s": len(videos) / seconds,
        "sampled_frames_per_s": frames / seconds,
    }
