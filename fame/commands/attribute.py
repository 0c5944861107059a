"""`fame attribute VIDEO...`: one-off local attribution, one `AttributionVerdict` per video.

The same code path as the service (front end -> per-frame embeddings -> windows -> aggregation ->
verdict), run in this process without Kafka or Redis; each video is one final segment.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fame.commands import add_checkpoint_argument, add_detector_argument

if TYPE_CHECKING:
    from schemas import AttributionVerdict


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "attribute",
        help="attribute local videos with a FAME checkpoint (prints AttributionVerdicts)",
        description=(
            "Find the face tracks of each video, score them with FAME and print one "
            "AttributionVerdict per video (the schema the service publishes). Exit 1 if any "
            "video failed (its verdict has status 'failed' and the error code)."
        ),
    )
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    add_checkpoint_argument(parser)
    add_detector_argument(parser)
    parser.add_argument("--target-fps", type=float, default=8.0, help="sampled frames per second")
    parser.add_argument("--stride", type=int, default=None, help="window stride (default T/2)")
    parser.add_argument(
        "--detect-every",
        type=_positive_int,
        default=1,
        metavar="K",
        help="detect faces on every K-th sampled frame, interpolate between (as FAME_DETECT_EVERY)",
    )
    parser.add_argument(
        "--detect-size",
        type=_detect_size,
        default=640,
        metavar="PX",
        help="long side of the face detector's input, a multiple of 32 (as FAME_DETECT_SIZE)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help=(
            "model precision (auto: bf16 on CUDA; on a CPU int8 where the checkpoint has an "
            "int8 encoder beside it, else bf16 where native, else fp32)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="one JSON verdict per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fame.attribution import ModelIdentity, build_verdict, fold_segment
    from fame.checkpoint import load_checkpoint, resolve_checkpoint
    from fame.data.cache import CROP_SIZE
    from fame.errors import FameError
    from fame.faces.frontend import FrontEnd, FrontEndConfig
    from fame.inference import InferenceEngine
    from fame.quantize import find_int8_encoder
    from fame.video.decode import SamplingPolicy
    from fame.video.fetch import FetchPolicy
    from fame.windows import VideoState, window_stride
    from schemas import AttributionVerdict, ErrorInfo, make_verdict_id
    from schemas.fields import to_safe_id

    try:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        checkpoint = resolve_checkpoint(args.checkpoint)
        model, meta = load_checkpoint(checkpoint, device=device)
        engine = InferenceEngine(
            model,
            meta,
            device,
            precision=args.precision,
            int8_encoder=find_int8_encoder(checkpoint),
        )
    except FameError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    identity = ModelIdentity.from_meta(meta)
    stride = window_stride(meta.clip_len, args.stride)
    roots = tuple({video.resolve().parent for video in args.videos})
    frontend = FrontEnd(
        FrontEndConfig(
            fetch=FetchPolicy(file_roots=roots),
            sampling=SamplingPolicy(target_fps=args.target_fps),
            detector_path=args.detector,
            detector_backend=args.detector_backend,
            crop_size_px=CROP_SIZE,  # as in training; the engine resizes for the model
            detect_every=args.detect_every,
            det_size=args.detect_size,
        )
    )
    failures = 0
    try:
        for video in args.videos:
            uri = video.resolve().as_uri()
            event_id = f"local-{uuid.uuid5(uuid.NAMESPACE_URL, uri)}"
            state = VideoState(video_id=to_safe_id(video.stem))
            try:
                result = frontend.process(uri)
                timings = dict(result.timings_ms)
                fold_segment(state, result, engine, stride, True, timings)
                verdict = build_verdict(event_id, 0, state, identity, timings)
            except FameError as error:
                failures += 1
                verdict = AttributionVerdict(
                    verdict_id=make_verdict_id(event_id, identity.version),
                    event_id=event_id,
                    video_id=state.video_id,
                    segment_index=0,
                    status="failed",
                    model=identity.info(),
                    error=ErrorInfo(code=error.code, message=error.message[:4096]),
                    produced_at=datetime.now(UTC),
                )
            print(verdict.model_dump_json() if args.json else _summary(video, verdict))
    finally:
        engine.close()
    return 1 if failures else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _detect_size(text: str) -> int:
    value = int(text)
    if not 128 <= value <= 1280 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 in [128, 1280], got {value}")
    return value


def _summary(video: Path, verdict: AttributionVerdict) -> str:
    if verdict.status == "failed" and verdict.error is not None:
        return f"{video.name}: failed [{verdict.error.code.value}] {verdict.error.message}"
    if verdict.status == "no_face":
        return f"{video.name}: no face"
    flag = " (unknown generator)" if verdict.unknown_generator else ""
    return (
        f"{video.name}: {verdict.label} {verdict.confidence:.2f}{flag}, "
        f"{len(verdict.tracks)} track(s)"
    )
