"""Decode an untrusted video file with PyAV, within limits, into sampled RGB frames.

The container type is decided by OUR sniffing of the first bytes against a short allowlist and
then forced on libav (``format=...``), so libav never probes: playlists (HLS), ``ffconcat`` lists
and other demuxers that open further URLs or files are unreachable, and ``protocol_whitelist=file``
is set as a second fence. Limits (streams, pixels per frame, duration, frame count) are checked on
the headers before any frame is decoded and again while decoding, because headers lie; the codec
itself gets ``max_pixels`` so a lying stream cannot make it allocate a huge frame.

``hwaccel="cuda"`` decodes on the GPU's video engine (NVDEC) through libav's hwaccel, with the
frames copied back to host memory; libav still parses the bitstream in software, and a stream
NVDEC cannot take (size, profile) is decoded in software. Whether the process can open the
device at all is probed once, without any input (`hwaccel_unavailable`): where it cannot,
decoding is in software with one warning, so an untrusted file never decides it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.codec.hwaccel
import av.container
import av.error
import numpy as np

from fame.errors import PoisonError
from schemas.errors import ErrorCode

# libav demuxer names (as `container.format.name` reports them) this module may open.
MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA = "matroska,webm"
AVI = "avi"
JPEG = "jpeg_pipe"
PNG = "png_pipe"
DEFAULT_FORMATS: frozenset[str] = frozenset({MP4_FAMILY, MATROSKA, AVI, JPEG, PNG})
_SINGLE_IMAGE_FORMATS = frozenset({JPEG, PNG})
_MP4_BOX_TYPES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})
_SNIFF_BYTES = 16
HWACCELS = ("none", "cuda")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeLimits:
    """What one input may cost; a violation is a `PoisonError` with its own code."""

    max_pixels: int = 3840 * 2160
    max_duration_s: float = 600.0
    max_frames: int = 36_000
    max_streams: int = 8
    allowed_formats: frozenset[str] = DEFAULT_FORMATS

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_duration_s", "max_frames", "max_streams"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        unknown = self.allowed_formats - DEFAULT_FORMATS
        if unknown:
            raise ValueError(f"allowed_formats {sorted(unknown)} cannot be sniffed safely")


@dataclass(frozen=True)
class SamplingPolicy:
    """Which decoded frames are kept: ``target_fps`` frames per second of video time, or, when
    ``frames_per_window`` is set, that many per ``window_s`` (it takes precedence); ``None`` for
    both keeps every frame. Decoding stops quietly after ``max_sampled_frames`` (training takes
    a video's first frames), or, with ``refuse_longer``, a video that has more frames to keep
    is refused as ``too_long``: a verdict must never judge part of a video as if it were all of
    it (longer videos go as segments)."""

    target_fps: float | None = 8.0
    frames_per_window: int | None = None
    window_s: float = 1.0
    max_sampled_frames: int = 1024
    refuse_longer: bool = False

    def __post_init__(self) -> None:
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target_fps must be positive, got {self.target_fps}")
        if self.frames_per_window is not None and self.frames_per_window <= 0:
            raise ValueError(f"frames_per_window must be positive, got {self.frames_per_window}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, got {self.window_s}")
        if self.max_sampled_frames <= 0:
            raise ValueError(f"max_sampled_frames must be positive, got {self.max_sampled_frames}")

    @property
    def period_s(self) -> float:
        """Seconds between kept frames; 0 keeps every frame."""
        if self.frames_per_window is not None:
            return self.window_s / self.frames_per_window
        return 0.0 if self.target_fps is None else 1.0 / self.target_fps


@dataclass(frozen=True)
class VideoInfo:
    """What the headers say, and once frames were read what decoding saw. ``width``/``height``
    are as displayed (after ``rotation_deg``). Headers may not know the frame count (MKV, WebM
    and MPEG-TS usually say 0), so a video's extent is the larger of the two (`extent`)."""

    format_name: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    rotation_deg: int
    decoded_frames: int = 0  # frames decoded (all of them, unless sampling stopped early)
    decoded_span_s: float = 0.0  # first decoded frame to the end of the last one

    def extent(self) -> tuple[int, float]:
        """(frames, seconds) the video covers: what the next segment of the same video starts
        after. Never less than any frame index or time (since the first frame) a frame had."""
        return (
            max(self.frame_count, self.decoded_frames, 0),
            max(self.duration_s, self.decoded_span_s, 0.0),
        )


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # among all decoded frames
    timestamp_s: float  # since the first decoded frame (a segment's own timestamps may not be 0)
    rgb: np.ndarray


def sniff_format(path: Path, name: str | None = None) -> str:
    """The allowlisted libav demuxer for this file's magic bytes, or `PoisonError` (whose
    message calls the file ``name``, default its file name)."""
    name = name or path.name
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        raise PoisonError(f"cannot read {name}: {e.strerror}", code=ErrorCode.CORRUPT_STREAM) from e
    if not head:
        raise PoisonError(f"{name} is empty", code=ErrorCode.CORRUPT_STREAM)
    if head[4:8] in _MP4_BOX_TYPES:
        return MP4_FAMILY
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return AVI
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    raise PoisonError(
        f"{name}: not a recognised video container (first bytes {head[:8]!r})",
        code=ErrorCode.UNSUPPORTED_FORMAT,
    )


class Video:
    """An opened, header-checked video: ``with Video(path, limits) as v: v.info; v.frames(...)``."""

    def __init__(
        self,
        path: Path,
        limits: DecodeLimits,
        hwaccel: str = "none",
        threads: int = 0,
        name: str | None = None,
    ) -> None:
        """``threads``: the decoder's threads (frame and slice threading), 0 for one per core.
        ``name``: what errors call the video (default its file name; a fetched copy's caller
        passes the URI the user gave, not the temporary file)."""
        if hwaccel not in HWACCELS:
            raise ValueError(f"hwaccel must be one of {HWACCELS}, got {hwaccel!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self._threads = threads
        self._path = Path(path)
        self._name = name or self._path.name
        self._limits = limits
        format_name = sniff_format(self._path, self._name)
        if format_name not in limits.allowed_formats:
            raise PoisonError(
                f"{self._name}: container {format_name!r} not allowed",
                code=ErrorCode.UNSUPPORTED_FORMAT,
            )
        use = hwaccel != "none" and format_name not in _SINGLE_IMAGE_FORMATS
        if use and (reason := hwaccel_unavailable(hwaccel)) is not None:
            _warn_software_once(hwaccel, reason)
            use = False
        self._hardware = use
        self._container = _open_container(
            self._path, format_name, hwaccel if use else None, self._name
        )
        try:
            self._stream = self._checked_video_stream()
            self.info = self._read_info(format_name)
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> Video:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    @property
    def hardware_decoding(self) -> bool:
        """Whether the decoder runs on a hardware device (known once a frame was decoded)."""
        return bool(self._stream.codec_context.is_hwaccel)

    def _checked_video_stream(self) -> av.VideoStream:
        streams = self._container.streams
        if len(streams) > self._limits.max_streams:
            raise PoisonError(
                f"{len(streams)} streams > max_streams={self._limits.max_streams}",
                code=ErrorCode.TOO_MANY_STREAMS,
            )
        if not any(s.type in ("video", "audio", "subtitle") for s in streams):
            # An mp4 cut before its index ("moov") opens with no media stream at all.
            raise PoisonError(
                f"{self._name} has no media stream (truncated?)", code=ErrorCode.CORRUPT_STREAM
            )
        if not streams.video:
            raise PoisonError(f"{self._name} has no video stream", code=ErrorCode.NO_VIDEO_STREAM)
        stream = streams.video[0]
        if stream.codec_context is None:
            raise PoisonError(
                f"{self._name}: no decoder for its video stream", code=ErrorCode.CORRUPT_STREAM
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise PoisonError(
                f"video stream has size {width}x{height}", code=ErrorCode.CORRUPT_STREAM
            )
        self._check_pixels(width, height)
        stream.codec_context.options = {"max_pixels": str(self._limits.max_pixels)}
        if not self._hardware:
            # libav's default is slice threading, which a single-slice H.264 stream (x264's
            # usual output) cannot use: frame threading decodes one video on several cores
            stream.thread_type = "AUTO"
            stream.thread_count = self._threads
        return stream

    def _check_pixels(self, width: int, height: int) -> None:
        if width * height > self._limits.max_pixels:
            raise PoisonError(
                f"frame {width}x{height} > max_pixels={self._limits.max_pixels}",
                code=ErrorCode.TOO_MANY_PIXELS,
            )

    def _read_info(self, format_name: str) -> VideoInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate)
        duration_s = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration_s = self._container_span_s(self._container.duration)
        frame_count = int(stream.frames or 0)
        self._check_length(duration_s, frame_count)
        return VideoInfo(
            format_name=format_name,
            codec=stream.codec_context.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps if math.isfinite(fps) else 0.0,
            duration_s=duration_s,
            frame_count=frame_count,
            rotation_deg=0,
        )

    def _container_span_s(self, duration: int) -> float:
        """The container's duration without its start offset. A segment cut from a long video
        keeps its timestamps (starting at 700 s, say); some demuxers (Matroska) then report the
        end time as the duration, others (MP4) the span. Frame times are checked again while
        decoding, relative to the first frame, so this early check only needs to be fair."""
        start = self._container.start_time
        if start is not None and 0 < start < duration:
            duration -= start
        return duration / av.time_base

    def _check_length(self, duration_s: float, frame_count: int) -> None:
        if duration_s > self._limits.max_duration_s:
            raise PoisonError(
                f"duration {duration_s:.1f}s > max_duration_s={self._limits.max_duration_s}",
                code=ErrorCode.TOO_LONG,
            )
        if frame_count > self._limits.max_frames:
            raise PoisonError(
                f"{frame_count} frames > max_frames={self._limits.max_frames}",
                code=ErrorCode.TOO_LONG,
            )

    def frames(self, sampling: SamplingPolicy) -> Iterator[DecodedFrame]:
        """Sampled frames in display order, RGB uint8 [H, W, 3], rotation applied, timed from
        the first decoded frame: a segment cut from a longer video without resetting its
        timestamps (they start at 700 s, say) starts at 0 like any other.

        ``info`` is updated with the rotation and displayed size once the first frame is seen,
        and with what was decoded (`VideoInfo.decoded_frames`, ``decoded_span_s``) as it goes.
        """
        period_s = sampling.period_s
        frame_s = 1.0 / self.info.fps if self.info.fps > 0 else 0.0
        next_s: float | None = None
        first_s: float | None = None
        kept = 0
        decoded = 0
        for index, frame in enumerate(self._decoded()):
            decoded += 1
            absolute_s = self._timestamp_s(frame, index)
            if first_s is None:
                first_s = absolute_s
            timestamp_s = absolute_s - first_s
            self._check_length(timestamp_s, index + 1)
            self._check_pixels(frame.width, frame.height)
            if index == 0:
                self._note_rotation(frame)
            span_s = max(self.info.decoded_span_s, timestamp_s + frame_s)
            self.info = replace(self.info, decoded_frames=decoded, decoded_span_s=span_s)
            if next_s is not None and timestamp_s < next_s - 1e-6:
                continue
            if kept >= sampling.max_sampled_frames:  # only with refuse_longer: see below
                raise PoisonError(
                    f"{self._name} runs past {timestamp_s:.0f} s, more than "
                    f"{sampling.max_sampled_frames} sampled frames: send it as segments",
                    code=ErrorCode.TOO_LONG,
                )
            yield DecodedFrame(index, timestamp_s, _to_rgb(frame))
            kept += 1
            if kept >= sampling.max_sampled_frames and not sampling.refuse_longer:
                return
            base_s = timestamp_s if next_s is None else next_s
            next_s = base_s + period_s
            while period_s > 0 and next_s <= timestamp_s:
                next_s += period_s
        if decoded == 0:
            raise PoisonError(
                f"no frame could be decoded from {self._name}", code=ErrorCode.CORRUPT_STREAM
            )

    def _decoded(self) -> Iterator[av.VideoFrame]:
        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except av.error.FFmpegError as e:
            raise PoisonError(
                f"decoding {self._name} failed: {e}", code=ErrorCode.CORRUPT_STREAM
            ) from e

    def _timestamp_s(self, frame: av.VideoFrame, index: int) -> float:
        if frame.time is not None:
            return float(frame.time)
        return index / self.info.fps if self.info.fps > 0 else 0.0

    def _note_rotation(self, frame: av.VideoFrame) -> None:
        rotation_deg = round(frame.rotation / 90.0) * 90 % 360
        width, height = frame.width, frame.height
        if rotation_deg in (90, 270):
            width, height = height, width
        self.info = replace(self.info, rotation_deg=rotation_deg, width=width, height=height)


@functools.cache
def hwaccel_unavailable(device_type: str) -> str | None:
    """Why this process cannot decode on ``device_type``, or None when it can (probed once by
    creating the device for an H.264 decoder; no input is involved)."""
    try:
        _hwaccel(device_type).create(av.codec.Codec("h264", "r"))
    except Exception as e:  # no driver, no device, no permission: all mean software decoding
        return f"{type(e).__name__}: {e}"
    return None


@functools.cache
def _warn_software_once(device_type: str, reason: str) -> None:
    log.warning(
        "hardware decoding (%s) is unavailable here (%s): decoding in software", device_type, reason
    )


def _hwaccel(device_type: str) -> av.codec.hwaccel.HWAccel:
    """Frames come back to host memory; ``primary_ctx`` shares the device's primary CUDA context
    instead of creating one per video. libav takes it only with its own flags: once PyTorch has
    made it active (a detector on CUDA), creating the device fails with EOPNOTSUPP and decoding
    falls back to software (seen on an H200: `bench/probe_nvdec.py`)."""
    return av.codec.hwaccel.HWAccel(
        device_type, allow_software_fallback=True, options={"primary_ctx": "1"}
    )


def _open_container(
    path: Path, format_name: str, hwaccel: str | None, name: str
) -> av.container.InputContainer:
    short_name = format_name.split(",", 1)[0]
    try:
        return av.open(
            str(path),
            mode="r",
            format=short_name,
            options={"protocol_whitelist": "file"},
            hwaccel=_hwaccel(hwaccel) if hwaccel else None,
        )
    except av.error.FFmpegError as e:
        raise PoisonError(  # strerror: libav's message without the (temporary) file's path
            f"cannot open {name} as {short_name}: {e.strerror or e}", code=ErrorCode.CORRUPT_STREAM
        ) from e


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB with the display matrix applied (its angle is counter-clockwise, like `np.rot90`)."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round(frame.rotation / 90.0) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb
