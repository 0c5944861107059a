"""The face front end on the shared real media (SCRFD from shared/models)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fame.errors import ModelMissingError, PoisonError
from fame.faces.align import align_face
from fame.faces.detector import LbpCascadeDetector, resolve_detector_path
from fame.faces.frontend import FrontEnd, FrontEndConfig, FrontEndResult
from fame.video import decode
from schemas.errors import ErrorCode

FACE_VIDEOS = [
    "driving_d0",
    "driving_d10",
    "driving_d11",
    "driving_d13",
    "driving_d14",
    "driving_d18",
    "driving_d19",
    "driving_d6",
    "driving_d9",
    "source_s13",
    "source_s20",
    "source_s29",
    "source_s32",
]


@pytest.fixture(scope="module")
def frontend(shared: Path) -> FrontEnd:
    return FrontEnd(FrontEndConfig(detector_path=str(shared / "models/scrfd_500m_bnkps.onnx")))


def _assert_one_dominant_track(result: FrontEndResult) -> None:
    assert result.tracks, "no face track"
    dominant = result.tracks[0]
    assert dominant.stats.coverage >= 0.9, dominant.stats
    others = [t for t in result.tracks[1:] if t.stats.coverage >= 0.5]
    assert not others, [t.stats for t in result.tracks]
    n = len(dominant.frame_indices)
    assert dominant.crops.shape == (n, 112, 112, 3) and dominant.crops.dtype == np.uint8
    assert dominant.boxes.shape == (n, 4) and dominant.scores.shape == (n,)
    assert np.all(np.diff(dominant.timestamps_s) > 0)


@pytest.mark.parametrize("relpath", ["samples/carphone_pristine.mp4", "faces/driving_d0.mp4"])
def test_one_dominant_track(frontend: FrontEnd, shared: Path, relpath: str) -> None:
    result = frontend.process(shared / "data" / relpath)
    assert result.sampled_frames >= 20
    _assert_one_dominant_track(result)
    assert set(result.timings_ms) == {"fetch", "decode", "detect", "track", "align"}


@pytest.mark.slow
@pytest.mark.parametrize("name", FACE_VIDEOS)
def test_every_face_video_has_one_dominant_track(
    frontend: FrontEnd, shared: Path, name: str
) -> None:
    _assert_one_dominant_track(frontend.process(shared / f"data/faces/{name}.mp4"))


def test_group_photo_has_six_faces(frontend: FrontEnd, shared: Path) -> None:
    result = frontend.process(shared / "data/samples/group_t1.jpg")
    assert result.sampled_frames == 1
    assert len(result.tracks) == 6
    assert result.video.format_name == "jpeg_pipe"


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4"])
def test_hard_samples_run_to_completion(frontend: FrontEnd, shared: Path, name: str) -> None:
    result = frontend.process(shared / "data/samples" / name)
    assert result.sampled_frames > 30
    assert all(t.crops.shape[0] == len(t.frame_indices) for t in result.tracks)


def test_alignment_puts_eyes_on_the_template(frontend: FrontEnd, shared: Path) -> None:
    from insightface.utils.face_align import arcface_dst

    rgb = np.zeros((200, 200, 3), np.uint8)
    keypoints = np.asarray(arcface_dst, np.float32) * 1.5 + 20
    rgb[int(keypoints[0, 1]), int(keypoints[0, 0])] = 255
    crop = align_face(rgb, np.array([0, 0, 200, 200]), keypoints, 224)
    y, x = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert abs(x - arcface_dst[0][0] * 2) <= 2 and abs(y - arcface_dst[0][1] * 2) <= 2
    box_crop = align_face(rgb, np.array([50, 50, 100, 150]), None, 64)
    assert box_crop.shape == (64, 64, 3)


def test_named_missing_detector_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match=r"nope\.onnx"):
        resolve_detector_path(tmp_path / "nope.onnx")


def test_fallback_detector_finds_a_face(shared: Path) -> None:
    from fame.video.decode import DecodeLimits, SamplingPolicy, Video

    with Video(shared / "data/faces/driving_d18.mp4", DecodeLimits()) as video:
        frame = next(iter(video.frames(SamplingPolicy())))
    assert len(LbpCascadeDetector().detect(frame.rgb)) >= 1


def test_cli_json(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fame.cli import main

    detector = str(shared / "models/scrfd_500m_bnkps.onnx")
    assert (
        main(["faces", str(shared / "data/samples/group_t1.jpg"), "--detector", detector, "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["sampled_frames"] == 1 and len(out["tracks"]) == 6
    assert main(["faces", "http://169.254.169.254/", "--detector", detector, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "fetch_refused"


def test_a_video_nvdec_fails_on_is_decoded_in_software(
    frontend: FrontEnd,
    shared: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pretend NVDEC opens here: the probe says yes, then every real open fails (this machine
    has no GPU), as a device that fails at run time would. The video still gets its faces, from
    software decoding; a file that is really corrupt stays a corrupt stream."""
    monkeypatch.setattr(decode, "hwaccel_unavailable", lambda device_type: None)
    nvdec = FrontEnd(replace(frontend.config, hwaccel="cuda"), detector=frontend.detector)
    video = shared / "data" / "samples" / "carphone_pristine.mp4"
    with caplog.at_level(logging.WARNING, logger="fame.faces.frontend"):
        result = nvdec.process(video)
    assert "decoding it in software" in caplog.text
    assert not result.hardware_decoding
    want = frontend.process(video)
    assert len(result.tracks) == len(want.tracks) >= 1
    assert np.array_equal(result.tracks[0].crops, want.tracks[0].crops)

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(video.read_bytes()[:64] + bytes(4096))
    with pytest.raises(PoisonError) as caught:
        nvdec.process(corrupt)
    assert caught.value.code == ErrorCode.CORRUPT_STREAM


def test_no_second_decode_where_nvdec_was_never_tried(
    frontend: FrontEnd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With FAME_HWACCEL=cuda on a machine without NVDEC, everything was already decoded in
    software: a corrupt file fails once, without a retry."""
    if decode.hwaccel_unavailable("cuda") is None:
        pytest.skip("this machine opens NVDEC")
    nvdec = FrontEnd(replace(frontend.config, hwaccel="cuda"), detector=frontend.detector)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4096))
    with (
        caplog.at_level(logging.WARNING, logger="fame.faces.frontend"),
        pytest.raises(PoisonError) as caught,
    ):
        nvdec.process(corrupt)
    assert caught.value.code == ErrorCode.CORRUPT_STREAM
    assert "decoding it in software" not in caplog.text


@pytest.mark.parametrize("reason", ["PermissionError: [Errno 1] Operation not permitted", None])
def test_fame_info_says_what_nvdec_unavailable_means(
    monkeypatch: pytest.MonkeyPatch, reason: str | None
) -> None:
    """`nvdec_unavailable` keeps its meaning (null, or the probe's reason); `nvdec_hint` says
    what follows for the user."""
    from fame.commands.info import collect

    monkeypatch.setattr(decode, "hwaccel_unavailable", lambda device_type: reason)
    facts = collect()
    assert facts["nvdec_unavailable"] == reason
    hint = str(facts["nvdec_hint"])
    assert "FAME_HWACCEL=cuda" in hint
    if reason is None:
        assert "decodes on the GPU" in hint
    else:
        assert "unavailable" in hint
        assert "fall back to software" in hint
