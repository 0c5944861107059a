"""`fame quantize`: the checkpoint's int8 encoder for CPU inference, calibrated on face videos.

Runs the front end over the given videos (as the service would), takes aligned crops spread
evenly over them, calibrates and writes `<checkpoint>.int8.onnx` beside the checkpoint, where
`FAME_PRECISION=auto` on a CPU picks it up. Prints one JSON line with the embedding error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fame.commands import add_checkpoint_argument, add_detector_argument

DEFAULT_CROPS = 256


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "quantize",
        help="write the checkpoint's int8 encoder for CPU inference (calibrated on videos)",
        description=(
            "Calibrate an int8 copy of the checkpoint's VGG encoder on aligned face crops from "
            "VIDEOS (files or folders) and write it beside the checkpoint as <name>.int8.onnx. "
            "On a CPU the service, `fame attribute` and `fame evaluate` then run the encoder in "
            "int8 (FAME_PRECISION=auto or int8). Use videos like the ones the service will see "
            "(the checkpoint's training videos are a good choice)."
        ),
    )
    parser.add_argument(
        "videos",
        nargs="+",
        type=Path,
        metavar="VIDEO",
        help="face videos to calibrate on: files, or folders searched recursively",
    )
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--out", type=Path, default=None, help="output file (default: beside the checkpoint)"
    )
    parser.add_argument(
        "--crops",
        type=int,
        default=DEFAULT_CROPS,
        help=f"calibration crops, spread evenly over the videos (default {DEFAULT_CROPS})",
    )
    add_detector_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fame.checkpoint import resolve_checkpoint
    from fame.data.adapters import videos_under
    from fame.quantize import quantize_checkpoint

    if args.crops < 1:
        raise SystemExit("fame quantize: --crops must be >= 1")
    videos: list[Path] = []
    for path in args.videos:
        if not path.exists():
            raise SystemExit(f"fame quantize: {path} does not exist")
        videos += videos_under(path) if path.is_dir() else [path]
    if not videos:
        raise SystemExit("fame quantize: no videos among the given paths")
    checkpoint = resolve_checkpoint(args.checkpoint)
    try:
        report = quantize_checkpoint(
            checkpoint, videos, args.crops, args.detector, args.out, args.detector_backend
        )
    except ValueError as error:
        raise SystemExit(f"fame quantize: {error}") from error
    print(
        json.dumps(
            {
                "out": str(report.path),
                "checkpoint_sha256": report.checkpoint_sha256,
                "videos": len(videos),
                "calibration_crops": report.calibration_crops,
                "embedding_rel_l2": round(report.embedding_rel_l2, 5),
            }
        )
    )
    return 0
