"""`fame faces VIDEO_OR_URI`: the face tracks the front end finds, for a quick look or a script."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fame.commands import add_detector_argument


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "faces",
        help="find and track the faces in one video, image or URI",
        description=(
            "Run the face front end (decode, detect, track, align) on one input and print the "
            "tracks. On failure print the error code and exit 1."
        ),
    )
    parser.add_argument(
        "source", metavar="VIDEO_OR_URI", help="a local file, file:// or http(s)://"
    )
    add_detector_argument(parser)
    parser.add_argument("--target-fps", type=float, default=8.0, help="sampled frames per second")
    parser.add_argument("--det-thresh", type=float, default=0.4, help="detection score threshold")
    parser.add_argument("--sha256", default=None, help="expected sha256 of the input")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fame.errors import FameError
    from fame.faces.frontend import FrontEndConfig, process_video
    from fame.video.decode import SamplingPolicy
    from fame.video.fetch import FetchPolicy

    config = FrontEndConfig(
        detector_path=args.detector,
        detector_backend=args.detector_backend,
        det_thresh=args.det_thresh,
        sampling=SamplingPolicy(target_fps=args.target_fps),
        fetch=FetchPolicy(file_roots=(Path.cwd(),)),
    )
    try:
        result = process_video(args.source, config, sha256=args.sha256)
    except FameError as e:
        if args.json:
            print(json.dumps({"error": e.code.value, "message": e.message}))
        else:
            print(f"error: {e.code.value}: {e.message}", file=sys.stderr)
        return 1
    summary = {
        "source": args.source,
        "detector": result.detector,
        "sampled_frames": result.sampled_frames,
        "video": vars(result.video),
        "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
        "tracks": [
            {
                "track_id": t.track_id,
                "first_s": round(float(t.timestamps_s[0]), 3),
                "last_s": round(float(t.timestamps_s[-1]), 3),
                "frames": len(t.frame_indices),
                "mean_score": round(t.stats.mean_score, 4),
                "coverage": round(t.stats.coverage, 3),
            }
            for t in result.tracks
        ],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        n_tracks = len(result.tracks)
        print(f"{result.sampled_frames} sampled frames, {n_tracks} tracks ({result.detector})")
        for t in summary["tracks"]:
            print(
                f"  track {t['track_id']}: {t['first_s']}-{t['last_s']} s, {t['frames']} frames, "
                f"score {t['mean_score']}"
            )
    return 0
