"""`fame preprocess`: a dataset in one of the known layouts -> the face-track cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fame.commands import add_detector_argument

LAYOUTS = ("dfdm", "ffpp", "fakeavceleb", "folder")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "preprocess",
        help="detect, track and align faces of a dataset into a cache for train/evaluate",
        description=(
            "Read DATA in LAYOUT, run the face front end on every video and write one .npz of "
            "aligned 112x112 crops per face track plus index.jsonl (labels, identities, "
            "identity-disjoint or official splits, CRF)."
        ),
    )
    add_data_arguments(parser, required=True)
    parser.add_argument("--out", required=True, help="cache folder to write")
    parser.set_defaults(func=run)


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--data", required=required, help="dataset root folder")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="folder" if not required else None,
        required=required,
        help="dataset layout",
    )
    parser.add_argument("--compression", default="c23", help="FF++ compression folder")
    parser.add_argument("--min-frames", type=int, default=4, help="drop shorter face tracks")
    parser.add_argument(
        "--target-fps", type=float, default=8.0, help="sampled frames per second of video"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the identity split")
    add_detector_argument(parser)


def preprocess_dataset(args: argparse.Namespace, out: Path) -> dict[str, object]:
    from fame.data import adapters
    from fame.data.preprocess import preprocess
    from fame.faces.frontend import FrontEnd, FrontEndConfig
    from fame.video.decode import SamplingPolicy

    if args.layout == "ffpp":
        videos = adapters.ffpp(args.data, compression=args.compression)
    else:
        videos = adapters.load_layout(args.layout, args.data)
    frontend = FrontEnd(
        FrontEndConfig(
            detector_path=args.detector,
            detector_backend=args.detector_backend,
            allow_fallback_detector=False,
            sampling=SamplingPolicy(target_fps=args.target_fps),
        )
    )
    summary = preprocess(
        videos,
        lambda path: frontend.process(path).tracks,
        out,
        min_frames=args.min_frames,
        seed=args.seed,
    )
    return {
        "cache": str(out),
        "videos": len(videos),
        "tracks": len(summary.records),
        "videos_without_faces": len(summary.videos_without_faces),
        "rejected": summary.rejected,
    }


def run(args: argparse.Namespace) -> int:
    print(json.dumps(preprocess_dataset(args, Path(args.out)), indent=2))
    return 0
