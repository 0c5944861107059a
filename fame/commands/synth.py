"""`fame synth build|preview`: render a DFDM-style face-swap benchmark from real videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fame.commands import add_detector_argument

PRESET_NAMES = ("tiny", "small", "full")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "synth",
        help="build a DFDM-style face-swap benchmark from one-person videos",
        description=(
            "Train five face-swap autoencoders (faceswap, lightweight, iae, dfaker, dfl-h128) on "
            "the people in --faces and render swaps in DFDM's layout at CRF 0/10/23."
        ),
    )
    actions = parser.add_subparsers(dest="synth_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="train the generators and render the benchmark")
    build.add_argument("--faces", required=True, help="folder of one-person videos")
    build.add_argument("--out", required=True, help="output folder (crfN/ + manifest.json)")
    build.add_argument("--preset", choices=PRESET_NAMES, default="small")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--identities", type=int, help="use the first K videos (sorted by name)")
    build.add_argument("--max-frames", type=int, help="frames decoded per video")
    add_detector_argument(build)
    build.set_defaults(func=run_build)
    preview = actions.add_parser("preview", help="PNG grid of sample frames from a build")
    preview.add_argument("--data", required=True, help="a `fame synth build` output folder")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--crf", type=int, default=0)
    preview.add_argument("--rows", type=int, default=3)
    preview.set_defaults(func=run_preview)


def run_build(args: argparse.Namespace) -> int:
    from fame.faces.detector import load_detector
    from fame.synth.build import SynthBuilder
    from fame.synth.presets import PRESETS

    detector = load_detector(args.detector, allow_fallback=False, backend=args.detector_backend)
    builder = SynthBuilder(
        Path(args.faces),
        Path(args.out),
        PRESETS[args.preset],
        args.seed,
        detector,
        identities=args.identities,
        max_frames=args.max_frames,
    )
    manifest = builder.run().manifest
    summary = {
        "out": args.out,
        "identities": len(manifest["identities"]),
        "videos": len(manifest["files"]),
        "timings_s": manifest["timings_s"],
        "cpu_s": manifest["cpu_s"],
    }
    print(json.dumps(summary, indent=2))
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from fame.synth.preview import sample_grid, write_png

    write_png(sample_grid(Path(args.data), crf=args.crf, rows=args.rows), Path(args.out))
    print(args.out)
    return 0
