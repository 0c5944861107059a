"""`fame attribute VIDEO_OR_URI...`: one-off attribution, one `AttributionVerdict` per video.

The same code path as the service (front end -> per-frame embeddings -> windows -> aggregation ->
verdict), run in this process without Kafka or Redis; each video is one final segment.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from fame.commands import add_checkpoint_argument, add_detector_argument

if TYPE_CHECKING:
    from fame.attribution import ModelIdentity
    from fame.checkpoint import CheckpointMeta
    from fame.faces.frontend import FrontEnd
    from fame.inference import InferenceEngine
    from schemas import AttributionVerdict


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "attribute",
        help="attribute videos (files or URIs) with a FAME checkpoint (prints AttributionVerdicts)",
        description=(
            "Find the face tracks of each video (a local file, file:// or http(s):// URI), score "
            "them with FAME and print one AttributionVerdict per video (the schema the service "
            "publishes). Exit 1 if any video failed (its verdict has status 'failed' and the "
            "error code)."
        ),
    )
    parser.add_argument(
        "videos",
        nargs="+",
        type=_video_input,
        metavar="VIDEO_OR_URI",
        help="a local file, file:// or http(s):// URI (http(s) under the service's fetch policy)",
    )
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
        "--detect-batch",
        type=_detect_batch,
        default=0,
        metavar="N",
        help="key frames per face-detector call, 1-32; 0 (default): 8 where the detector runs on "
        "a GPU, 1 on a CPU (as FAME_DETECT_BATCH)",
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


@dataclass(frozen=True)
class VideoInput:
    """One VIDEO_OR_URI argument: as typed (what messages name), the URI the front end fetches,
    and the folder a ``file://`` fetch of it may read (None for http(s))."""

    text: str
    uri: str
    file_root: Path | None
    stem: str


def _video_input(text: str) -> VideoInput:
    """A local path, or a ``file://`` URI, makes its folder an allowed file root (symlinks are
    followed first, as the fetch does); http(s) is left to the fetch policy, which refuses what
    the service would refuse (private and loopback addresses among them)."""
    from fame.faces.frontend import is_uri

    if not is_uri(text):
        path = Path(text).resolve()
        return VideoInput(text, path.as_uri(), path.parent, path.stem)
    try:
        parts = urlsplit(text)
    except ValueError:  # "http://[::1/x": the fetch refuses it with a typed error
        return VideoInput(text, text, None, "")
    url_path = PurePosixPath(unquote(parts.path))
    root = Path(url_path).resolve().parent if parts.scheme.lower() == "file" else None
    return VideoInput(text, text, root, url_path.stem)


def run(args: argparse.Namespace) -> int:
    from fame.attribution import ModelIdentity
    from fame.errors import FameError
    from fame.windows import window_stride

    try:
        engine, meta = _load_engine(args)
    except FameError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    identity = ModelIdentity.from_meta(meta)
    stride = window_stride(meta.clip_len, args.stride)
    videos: list[VideoInput] = args.videos
    frontend = _frontend(args, tuple({v.file_root for v in videos if v.file_root is not None}))
    failures = 0
    try:
        for video in videos:
            verdict = _attribute(video, frontend, engine, identity, stride)
            failures += verdict.status == "failed"
            print(verdict.model_dump_json() if args.json else _summary(video, verdict))
    finally:
        engine.close()
    return 1 if failures else 0


def _load_engine(args: argparse.Namespace) -> tuple[InferenceEngine, CheckpointMeta]:
    import torch

    from fame.checkpoint import load_checkpoint, resolve_checkpoint
    from fame.inference import InferenceEngine
    from fame.quantize import find_int8_encoder

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
    return engine, meta


def _frontend(args: argparse.Namespace, file_roots: tuple[Path, ...]) -> FrontEnd:
    from fame.data.cache import CROP_SIZE
    from fame.faces.frontend import FrontEnd, FrontEndConfig
    from fame.video.decode import SamplingPolicy
    from fame.video.fetch import FetchPolicy

    return FrontEnd(
        FrontEndConfig(
            fetch=FetchPolicy(file_roots=file_roots),
            sampling=SamplingPolicy(target_fps=args.target_fps, refuse_longer=True),
            detector_path=args.detector,
            detector_backend=args.detector_backend,
            crop_size_px=CROP_SIZE,  # as in training; the engine resizes for the model
            detect_every=args.detect_every,
            detect_batch=args.detect_batch,
            det_size=args.detect_size,
        )
    )


def _attribute(
    video: VideoInput,
    frontend: FrontEnd,
    engine: InferenceEngine,
    identity: ModelIdentity,
    stride: int,
) -> AttributionVerdict:
    """One video as one final segment; a typed failure becomes a `failed` verdict."""
    from fame.attribution import build_verdict, fold_segment
    from fame.errors import FameError
    from fame.windows import VideoState
    from schemas import AttributionVerdict, ErrorInfo, make_verdict_id
    from schemas.fields import to_safe_id

    event_id = f"local-{uuid.uuid5(uuid.NAMESPACE_URL, video.uri)}"
    state = VideoState(video_id=to_safe_id(video.stem))
    try:
        result = frontend.process(video.uri)
        timings = dict(result.timings_ms)
        fold_segment(state, result, engine, stride, True, timings)
        return build_verdict(event_id, 0, state, identity, timings)
    except FameError as error:  # its message names the URI, not the fetched copy
        return AttributionVerdict(
            verdict_id=make_verdict_id(event_id, identity.version),
            event_id=event_id,
            video_id=state.video_id,
            segment_index=0,
            status="failed",
            model=identity.info(),
            error=ErrorInfo(code=error.code, message=error.message[:4096]),
            produced_at=datetime.now(UTC),
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _detect_batch(text: str) -> int:
    from fame.faces.frontend import MAX_DETECT_BATCH

    value = int(text)
    if not 0 <= value <= MAX_DETECT_BATCH:
        raise argparse.ArgumentTypeError(
            f"must be 0 (auto) or in [1, {MAX_DETECT_BATCH}], got {value}"
        )
    return value


def _detect_size(text: str) -> int:
    value = int(text)
    if not 128 <= value <= 1280 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 in [128, 1280], got {value}")
    return value


def _summary(video: VideoInput, verdict: AttributionVerdict) -> str:
    if verdict.status == "failed" and verdict.error is not None:
        return f"{video.text}: failed [{verdict.error.code.value}] {verdict.error.message}"
    if verdict.status == "no_face":
        return f"{video.text}: no face"
    flag = " (unknown generator)" if verdict.unknown_generator else ""
    return (
        f"{video.text}: {verdict.label} {verdict.confidence:.2f}{flag}, "
        f"{len(verdict.tracks)} track(s)"
    )
