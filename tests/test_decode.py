"""Decoding within limits: sampling, timestamps, rotation; random bytes only fail typed."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fame.errors import PoisonError
from fame.video import decode
from fame.video.decode import (
    DecodeLimits,
    SamplingPolicy,
    Video,
    hwaccel_unavailable,
    sniff_format,
)
from schemas.errors import ErrorCode


def write_video(
    path: Path,
    *,
    frames: int = 30,
    width: int = 64,
    height: int = 48,
    fps: int = 10,
    rotation_deg: int = 0,
) -> Path:
    """A small real mp4 whose left half is bright, so orientation can be checked."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation_deg:
            stream.set_display_rotation(rotation_deg)
        image = np.zeros((height, width, 3), np.uint8)
        image[:, : width // 2] = 255
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_samples_at_target_fps_with_timestamps(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames=30, fps=10)
    with Video(path, DecodeLimits()) as video:
        frames = list(video.frames(SamplingPolicy(target_fps=5.0)))
        info = video.info
    assert (info.width, info.height, info.frame_count) == (64, 48, 30)
    assert len(frames) == 15
    stamps = np.array([f.timestamp_s for f in frames])
    assert np.allclose(np.diff(stamps), 0.2, atol=1e-6)
    assert [f.index for f in frames] == list(range(0, 30, 2))
    assert frames[0].rgb.dtype == np.uint8 and frames[0].rgb.shape == (48, 64, 3)


def test_frames_per_window_and_max_sampled_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames=30, fps=10)
    with Video(path, DecodeLimits()) as video:
        assert len(list(video.frames(SamplingPolicy(frames_per_window=2, window_s=1.0)))) == 6
    with Video(path, DecodeLimits()) as video:
        every = list(video.frames(SamplingPolicy(target_fps=None, max_sampled_frames=7)))
    assert [f.index for f in every] == list(range(7))


def test_a_video_longer_than_its_sampling_cap_is_refused_not_cut(tmp_path: Path) -> None:
    """What produces a verdict must not judge a video's first part as the whole: past the cap
    it is `too_long`. Exactly at the cap it passes."""
    path = write_video(tmp_path / "v.mp4", frames=30, fps=10)
    exactly = SamplingPolicy(target_fps=5.0, max_sampled_frames=15, refuse_longer=True)
    with Video(path, DecodeLimits()) as video:
        assert len(list(video.frames(exactly))) == 15
    shorter = SamplingPolicy(target_fps=5.0, max_sampled_frames=14, refuse_longer=True)
    with (
        Video(path, DecodeLimits()) as video,
        pytest.raises(PoisonError, match="runs past 3 s, more than 14 sampled") as caught,
    ):
        list(video.frames(shorter))
    assert caught.value.code == ErrorCode.TOO_LONG and "segments" in caught.value.message
    quietly = SamplingPolicy(target_fps=5.0, max_sampled_frames=14)  # training: the first part
    with Video(path, DecodeLimits()) as video:
        assert len(list(video.frames(quietly))) == 14


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = write_video(tmp_path / "r.mp4", frames=3, rotation_deg=90)
    with Video(path, DecodeLimits()) as video:
        rgb = next(iter(video.frames(SamplingPolicy()))).rgb
        info = video.info
    assert rgb.shape == (64, 48, 3)
    assert (info.width, info.height, info.rotation_deg) == (48, 64, 90)
    # Rotated 90° counter-clockwise, the bright left half ends up at the bottom.
    assert rgb[-8:].mean() > 200 and rgb[:8].mean() < 50


def test_real_sample_timestamps(shared: Path) -> None:
    with Video(shared / "data/samples/carphone_pristine.mp4", DecodeLimits()) as video:
        frames = list(video.frames(SamplingPolicy(target_fps=8.0)))
    stamps = np.array([f.timestamp_s for f in frames])
    assert 30 <= len(frames) <= 34
    # Each kept frame is the first one at or after its point on the 1/8 s grid.
    lag_s = stamps - np.arange(len(stamps)) * 0.125
    assert np.all(lag_s >= -1e-6) and np.all(lag_s < 1 / 29.97 + 1e-6)


def test_limits_validation() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        DecodeLimits(max_pixels=0)
    with pytest.raises(ValueError, match="hls"):
        DecodeLimits(allowed_formats=frozenset({"hls"}))
    with pytest.raises(ValueError, match="target_fps"):
        SamplingPolicy(target_fps=-1.0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"\x00\x00\x00\x18ftypisom",
            b"\x1a\x45\xdf\xa3",
            b"\xff\xd8\xff\xe0",
            b"\x89PNG\r\n\x1a\n",
            b"RIFF\x00\x00\x00\x00AVI ",
        ]
    ),
    body=st.binary(max_size=2048),
)
def test_random_bytes_fail_typed(tmp_path: Path, prefix: bytes, body: bytes) -> None:
    path = tmp_path / "random.bin"
    path.write_bytes(prefix + body)
    try:
        with Video(path, DecodeLimits(max_pixels=4096 * 4096)) as video:
            for frame in video.frames(SamplingPolicy(max_sampled_frames=4)):
                assert frame.rgb.ndim == 3
    except PoisonError as e:  # not a video, a broken one, or headers claiming too much
        assert e.code in (
            ErrorCode.UNSUPPORTED_FORMAT,
            ErrorCode.CORRUPT_STREAM,
            ErrorCode.TOO_LONG,
            ErrorCode.TOO_MANY_PIXELS,
        )


def test_sniffing_refuses_unknown_magic(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"#EXTM3U\n#EXT-X-VERSION:3\n")
    with pytest.raises(PoisonError) as info:
        sniff_format(path)
    assert info.value.code == ErrorCode.UNSUPPORTED_FORMAT


def _decode_all(path: Path, hwaccel: str) -> tuple[list[np.ndarray], bool]:
    with Video(path, DecodeLimits(), hwaccel) as video:
        frames = [f.rgb for f in video.frames(SamplingPolicy())]
        return frames, video.hardware_decoding


def test_cuda_decoding_where_the_device_cannot_open_is_software_with_a_warning(
    shared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reason = hwaccel_unavailable("cuda")
    if reason is None:
        pytest.skip("this process can decode on CUDA")
    path = shared / "data" / "samples" / "carphone_pristine.mp4"
    decode._warn_software_once.cache_clear()  # the warning comes once per process
    with caplog.at_level(logging.WARNING, logger="fame.video.decode"):
        frames, hardware = _decode_all(path, "cuda")
    software, _ = _decode_all(path, "none")
    assert not hardware
    assert len(frames) == len(software) == 32
    assert all(np.array_equal(a, b) for a, b in zip(frames, software, strict=True))
    assert caplog.text.count("hardware decoding (cuda) is unavailable") == 1
    assert reason in caplog.text


def test_cuda_decoding_matches_software(shared: Path) -> None:
    """On a GPU machine: NVDEC really decodes, and its frames are the software decoder's (up to
    the YUV->RGB rounding of a different path)."""
    if hwaccel_unavailable("cuda") is not None:
        pytest.skip(f"no CUDA decoding here: {hwaccel_unavailable('cuda')}")
    path = shared / "data" / "faces" / "driving_d11.mp4"
    frames, hardware = _decode_all(path, "cuda")
    software, _ = _decode_all(path, "none")
    assert hardware
    assert len(frames) == len(software)
    for a, b in zip(frames, software, strict=True):
        assert np.abs(a.astype(np.int16) - b).mean() < 2.0


def test_unknown_hwaccel_is_refused(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", frames=2)
    with pytest.raises(ValueError, match="hwaccel"):
        Video(path, DecodeLimits(), "vaapi")


def test_frame_threads_decode_the_same_frames(shared: Path) -> None:
    """Frame threading (the worker's thread budget) is a schedule, not a different decode."""
    path = shared / "data" / "faces" / "source_s32.mp4"
    decoded = {}
    for threads in (1, 3):
        with Video(path, DecodeLimits(), threads=threads) as video:
            decoded[threads] = [f.rgb for f in video.frames(SamplingPolicy())]
            context = video._stream.codec_context
            assert (context.thread_count, str(context.thread_type)) == (threads, "ThreadType.AUTO")
    assert len(decoded[1]) == len(decoded[3]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(decoded[1], decoded[3], strict=True))
    with pytest.raises(ValueError, match="threads"):
        Video(path, DecodeLimits(), threads=-1)


def _segment(path: Path, start_s: int, seconds: int, fps: int = 10) -> Path:
    """A piece of a longer video cut without resetting its timestamps: it starts at start_s."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = start_s * fps + i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_late_starting_segment_is_measured_by_its_own_length(tmp_path: Path, suffix: str) -> None:
    """Length limits apply to what is in the file, not to where its timestamps begin."""
    limits = DecodeLimits(max_duration_s=60.0)
    short = _segment(tmp_path / f"short{suffix}", start_s=700, seconds=2)
    with Video(short, limits) as video:
        assert video.info.duration_s == pytest.approx(2.0, abs=0.2)
        frames = list(video.frames(SamplingPolicy(target_fps=5.0)))
    assert len(frames) == 10 and frames[0].timestamp_s == 0.0  # timed from its first frame
    assert frames[-1].timestamp_s == pytest.approx(1.8)
    # what the segment covers, whatever its header says (MKV's says 0 frames)
    assert video.info.extent() == (20, pytest.approx(2.0))
    long = _segment(tmp_path / f"long{suffix}", start_s=700, seconds=70)
    with pytest.raises(PoisonError) as info, Video(long, limits) as video:
        list(video.frames(SamplingPolicy()))
    assert info.value.code == ErrorCode.TOO_LONG
