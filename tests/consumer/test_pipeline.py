"""The whole service pipeline on the embedded transport: real videos, real detector, real model
code (untrained weights: these tests check the plumbing and the contracts, not accuracy)."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.consumer.service_support import (
    assert_schema_valid,
    event,
    run_embedded,
    segment_events,
    settings,
)
from tests.media import split_video, write_video


@pytest.fixture(scope="module")
def media(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    noise = np.random.default_rng(0).integers(0, 255, (24, 96, 128, 3), dtype=np.uint8)
    (root / "text.mp4").write_text("this is not a video\n")
    return {
        "root": root,
        "carphone": carphone,
        "face": shared / "data" / "faces" / "driving_d0.mp4",
        "noface": write_video(root / "noise.mp4", list(noise), 12),
        "segments": split_video(carphone, root / "segments", parts=3),
        "text": root / "text.mp4",
    }


def _payloads(events: list[dict]) -> list[bytes]:  # type: ignore[type-arg]
    return [json.dumps(e).encode() for e in events]


def test_each_video_gets_one_valid_verdict_with_tracks_and_salient_frames(
    media: dict[str, Path], tiny_checkpoint: Path, detector: Path, shared: Path
) -> None:
    events = [event(media["carphone"]), event(media["face"]), event(media["noface"])]
    config = settings(tiny_checkpoint, detector, [shared / "data", media["root"]])
    verdicts, letters, _ = run_embedded(config, _payloads(events))
    assert letters == []
    by_event = {v["event_id"]: v for v in verdicts}
    assert sorted(by_event) == sorted(e["event_id"] for e in events)
    for verdict in verdicts:
        assert_schema_valid(verdict, "attribution_verdict")
    for e in events[:2]:
        verdict = by_event[e["event_id"]]
        assert verdict["status"] == "attributed"
        assert len(verdict["tracks"]) == 1  # one person per video
        track = verdict["tracks"][0]
        assert track["frames"] >= 20 and track["windows"] >= 1
        assert 1 <= len(track["salient_frames"]) <= 5
        assert {"decode", "detect", "embed", "total"} <= set(verdict["timings_ms"])
    assert by_event[events[2]["event_id"]]["status"] == "no_face"


def test_poison_events_are_dead_lettered_and_the_partition_keeps_flowing(
    media: dict[str, Path], tiny_checkpoint: Path, detector: Path, shared: Path
) -> None:
    good = event(media["carphone"])
    wrong_sum = event(media["carphone"], sha256=hashlib.sha256(b"other").hexdigest())
    outside = event(Path("/etc/hostname"))
    text = event(media["text"])
    missing_field = {k: v for k, v in event(media["carphone"]).items() if k != "source_uri"}
    old_version = event(media["carphone"], schema_version="0.1")
    payloads = [
        b"{not json",
        b"\xff\xfe\x00binary",
        json.dumps(missing_field).encode(),
        json.dumps(old_version).encode(),
        *_payloads([wrong_sum, outside, text, good]),
    ]
    config = settings(tiny_checkpoint, detector, [shared / "data", media["root"]])
    verdicts, letters, broker = run_embedded(config, payloads)
    assert broker.messages(config.events_topic) == []  # all committed, so none kept
    for letter in letters:
        assert_schema_valid(letter, "dead_letter")
    # events run concurrently, so dead letters arrive in completion order: read them by offset
    letters.sort(key=lambda letter: letter["source"]["offset"])
    codes = [letter["error_code"] for letter in letters]
    assert codes[:4] == [
        "invalid_json",
        "invalid_json",
        "schema_violation",
        "unsupported_schema_version",
    ]
    assert codes[4:] == ["checksum_mismatch", "fetch_refused", "unsupported_format"]
    assert [letter["stage"] for letter in letters[4:]] == ["fetch", "fetch", "decode"]
    assert {letter["source"]["offset"] for letter in letters} == set(range(7))
    assert letters[0]["payload_text"] == "{not json"
    by_event = {v["event_id"]: v for v in verdicts}
    assert by_event[good["event_id"]]["status"] == "attributed"
    for failed in (wrong_sum, outside, text):
        assert by_event[failed["event_id"]]["status"] == "failed"


def test_an_unreachable_window_store_ends_in_a_dead_letter_not_a_stuck_event(
    media: dict[str, Path], tiny_checkpoint: Path, detector: Path, shared: Path
) -> None:
    """Redis down for longer than the retries: the event is dead-lettered as retries_exhausted
    (stage internal) with a failed verdict, so its offset can be committed."""
    from consumer.store import RedisWindowStore

    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisWindowStore(f"redis://127.0.0.1:{port}/0", ttl_s=60)
    one = event(media["carphone"])
    config = settings(tiny_checkpoint, detector, [shared / "data"])
    verdicts, letters, _ = run_embedded(config, _payloads([one]), store=store)
    (letter,) = letters
    assert_schema_valid(letter, "dead_letter")
    assert (letter["error_code"], letter["stage"], letter["attempts"]) == (
        "retries_exhausted",
        "internal",
        config.max_attempts,
    )
    assert [v["status"] for v in verdicts] == ["failed"]


def test_segments_of_one_video_share_windows_and_give_one_final_verdict(
    media: dict[str, Path], tiny_checkpoint: Path, detector: Path
) -> None:
    events = segment_events(media["segments"], "segmented-video")
    config = settings(tiny_checkpoint, detector, [media["root"]])
    verdicts, letters, _ = run_embedded(config, _payloads(events))
    assert letters == []
    assert len(verdicts) == 1
    verdict = verdicts[0]
    assert verdict["event_id"] == events[-1]["event_id"] and verdict["segment_index"] == 2
    assert len(verdict["tracks"]) == 1, "the face is linked across segment boundaries"
    track = verdict["tracks"][0]
    assert track["first_frame"] < 40 < 80 < track["last_frame"], "frame indices span segments"
    assert track["end_s"] > 3.0
    # 3 segments of ~1.3 s at 8 fps: ~32 sampled frames -> more windows than any segment alone
    assert track["frames"] >= 28 and track["windows"] >= 6


@pytest.mark.parametrize("keep_timestamps", [False, True])
def test_segments_whose_headers_do_not_count_frames_still_span_the_video(
    media: dict[str, Path], tiny_checkpoint: Path, detector: Path, keep_timestamps: bool
) -> None:
    """MKV segments (their headers say 0 frames), re-timed from 0 or keeping the whole video's
    timestamps: frame numbers and times still run on across segments, once."""
    segments = split_video(
        media["carphone"],
        media["root"] / f"mkv-{keep_timestamps}",
        parts=3,
        suffix=".mkv",
        keep_timestamps=keep_timestamps,
    )
    events = segment_events(segments, f"mkv-{keep_timestamps}")
    config = settings(tiny_checkpoint, detector, [media["root"]])
    verdicts, letters, _ = run_embedded(config, _payloads(events))
    assert letters == []
    (track,) = verdicts[0]["tracks"]
    assert track["first_frame"] < 40 < 80 < track["last_frame"] < 120  # 120 frames in all
    assert 3.0 < track["end_s"] < 4.1  # 4 s of video, counted once


def test_a_redelivered_event_republishes_the_identical_verdict(
    media: dict[str, Path], tiny_checkpoint: Path, detector: Path, shared: Path
) -> None:
    payload = json.dumps(event(media["carphone"])).encode()
    config = settings(tiny_checkpoint, detector, [shared / "data"])
    verdicts, _, broker = run_embedded(config, [payload, payload])
    raw = [m.value for m in broker.messages(config.verdicts_topic)]
    assert len(raw) == 2 and raw[0] == raw[1]
    assert verdicts[0]["verdict_id"] == verdicts[1]["verdict_id"]
