"""Front-end speed per video: decode only, decode + detect, the full front end; and the ceiling.

All three stages use the service's sampling (8 fps by default), so "sampled frames/s" compares
like with like: decode-only still decodes every frame and keeps the sampled ones. The ceiling is
`FrontEndPool` (the service's worker processes) over a list of videos at once: the events/s the
service could reach if everything after the front end were free.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.stats import ratio
from fame.faces.detector import FaceDetector, load_detector
from fame.faces.frontend import FrontEnd, FrontEndConfig, FrontEndPool


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
    rows = []
    for path in videos:
        decode_s, sampled = _decode(path, config, None)
        detect_s, _ = _decode(path, config, detector)
        started = time.perf_counter()
        result = frontend.process(path)
        full_s = time.perf_counter() - started
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
            }
        )
    return {"detector": frontend.detector.name, "videos": rows}


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
