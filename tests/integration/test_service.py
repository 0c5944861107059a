"""The service against the real local Kafka and Redis, as separate `fame-consumer` processes."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from fame.precision import resolve_precision
from tests.consumer.service_support import assert_schema_valid, event, segment_events
from tests.integration.service_support import (
    ConsumerProcess,
    Topics,
    at_least,
    consumer_env,
    covering,
    keyed,
    never,
    produce,
    read_all,
)
from tests.media import split_video

pytestmark = pytest.mark.integration

FACE_VIDEOS = ["driving_d0.mp4", "driving_d11.mp4", "driving_d18.mp4", "driving_d19.mp4"]


@pytest.fixture(scope="module")
def segments(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    carphone = shared / "data" / "samples" / "carphone_pristine.mp4"
    return split_video(carphone, tmp_path_factory.mktemp("segments"), parts=3)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_end_to_end_verdicts_segments_poison_and_health(
    kafka_bootstrap: str,
    redis_url: str,
    shared: Path,
    segments: list[Path],
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
) -> None:
    topics = Topics.fresh(kafka_bootstrap)
    faces = [event(shared / "data" / "faces" / name) for name in FACE_VIDEOS]
    segmented = segment_events(segments, "segmented")
    records = keyed(faces + segmented)
    records[2:2] = [(None, b"{oops"), ("x", json.dumps({"event_id": "no-fields"}).encode())]
    produce(kafka_bootstrap, topics.events, records)

    env = consumer_env(
        kafka_bootstrap,
        redis_url,
        topics,
        tiny_checkpoint,
        detector,
        [shared / "data", segments[0].parent],
    )
    consumer = ConsumerProcess(env, tmp_path / "consumer.log").start()
    port = int(consumer.wait_for_log(r"http server on port (\d+)").group(1))
    verdicts = read_all(kafka_bootstrap, topics.verdicts, at_least(len(faces) + 1), 240)
    letters = read_all(kafka_bootstrap, topics.dlq, at_least(2), timeout_s=30)

    status, body = _get(port, "/readyz")
    assert status == 200, body
    assert _get(port, "/healthz")[0] == 200
    metrics = _get(port, "/metrics")[1]
    assert "fame_verdicts_total{label" in metrics and "fame_dead_letters_total" in metrics
    precision = resolve_precision("auto", torch.device("cpu"))  # no int8 encoder beside it
    assert 'fame_model_info{device="cpu",name="fame_tiny"' in metrics
    assert f'precision="{precision}"' in metrics
    assert 'fame_frontend_info{decoder="software",detector="scrfd:' in metrics
    assert 'fame_videos_decoded_total{decoder="software"}' in metrics
    assert consumer.terminate() == 0, "SIGTERM drains and exits cleanly"

    documents = [json.loads(v) for v in verdicts]
    for doc in documents:
        assert_schema_valid(doc, "attribution_verdict")
        assert doc["status"] == "attributed" and doc["tracks"]
        assert doc["tracks"][0]["salient_frames"]
    by_event = {d["event_id"]: d for d in documents}
    assert set(by_event) == {e["event_id"] for e in faces} | {segmented[-1]["event_id"]}
    segmented_track = by_event[segmented[-1]["event_id"]]["tracks"]
    assert len(segmented_track) == 1 and segmented_track[0]["last_frame"] > 80
    codes = sorted(json.loads(letter)["error_code"] for letter in letters)
    assert codes == ["invalid_json", "schema_violation"]
    log_lines = [
        json.loads(line)
        for line in consumer.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line.get("video_id") == "segmented" for line in log_lines), "JSON logs carry ids"
    detector_lines = [line for line in log_lines if line["logger"] == "fame.faces.detector"]
    assert detector_lines, "front-end worker processes log JSON lines too"
    assert any("detector runs on" in line["message"] for line in detector_lines)


def test_kill9_at_random_points_loses_nothing_and_duplicates_are_identical(
    kafka_bootstrap: str,
    redis_url: str,
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
) -> None:
    topics = Topics.fresh(kafka_bootstrap)
    names = [*FACE_VIDEOS, "driving_d0.mp4", "driving_d11.mp4"]
    events = [event(shared / "data" / "faces" / name) for name in names]
    ids = {e["event_id"] for e in events}
    produce(kafka_bootstrap, topics.events, keyed(events))
    env = consumer_env(
        kafka_bootstrap, redis_url, topics, tiny_checkpoint, detector, [shared / "data"]
    )
    rng = random.Random(7)
    for round_ in range(3):
        consumer = ConsumerProcess(env, tmp_path / f"round{round_}.log").start()
        consumer.wait_for_log(r"assigned", timeout_s=90)
        if rng.random() < 0.5:  # sometimes after a verdict, sometimes before any
            consumer.wait_for_log(r"verdict ", timeout_s=120)
        time.sleep(rng.uniform(0.0, 4.0))
        consumer.kill9()
    final = ConsumerProcess(env, tmp_path / "final.log").start()
    read_all(kafka_bootstrap, topics.verdicts, covering(ids), timeout_s=300)
    assert final.terminate() == 0
    verdicts = read_all(kafka_bootstrap, topics.verdicts, never, timeout_s=5)

    by_id: dict[str, set[bytes]] = defaultdict(set)
    for raw in verdicts:
        by_id[json.loads(raw)["verdict_id"]].add(raw)
    assert {json.loads(v)["event_id"] for v in verdicts} == {e["event_id"] for e in events}
    assert all(len(copies) == 1 for copies in by_id.values()), "duplicates are byte-identical"


def test_exactly_once_mode_commits_each_verdict_once_across_kill9(
    kafka_bootstrap: str,
    redis_url: str,
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
) -> None:
    """With FAME_EXACTLY_ONCE, a read_committed subscriber sees every verdict exactly once."""
    topics = Topics.fresh(kafka_bootstrap)
    events = [event(shared / "data" / "faces" / name) for name in FACE_VIDEOS]
    ids = {e["event_id"] for e in events}
    produce(kafka_bootstrap, topics.events, keyed(events))
    env = consumer_env(
        kafka_bootstrap,
        redis_url,
        topics,
        tiny_checkpoint,
        detector,
        [shared / "data"],
        FAME_EXACTLY_ONCE="true",
        FAME_TRANSACTIONAL_ID=f"tx-{topics.group}",
        FAME_COMMIT_INTERVAL_MS="500",
    )
    first = ConsumerProcess(env, tmp_path / "first.log").start()
    first.wait_for_log(r"verdict ", timeout_s=120)
    time.sleep(1.0)  # let a transaction commit, then die with more work in flight
    first.kill9()
    final = ConsumerProcess(env, tmp_path / "final.log").start()
    read_all(kafka_bootstrap, topics.verdicts, covering(ids), 300, "read_committed")
    assert final.terminate() == 0
    # everything committed, including anything that arrived after the last event was covered
    verdicts = read_all(kafka_bootstrap, topics.verdicts, never, 5, "read_committed")
    event_ids = [json.loads(v)["event_id"] for v in verdicts]
    assert sorted(event_ids) == sorted(ids), "each verdict committed exactly once"


def test_consumer_group_with_a_member_joining_mid_stream(
    kafka_bootstrap: str,
    redis_url: str,
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
) -> None:
    topics = Topics.fresh(kafka_bootstrap, partitions=4)
    events = [event(shared / "data" / "faces" / name) for name in FACE_VIDEOS * 2]
    ids = {e["event_id"] for e in events}
    env = consumer_env(
        kafka_bootstrap, redis_url, topics, tiny_checkpoint, detector, [shared / "data"]
    )
    members = [ConsumerProcess(env, tmp_path / f"c{i}.log").start() for i in range(2)]
    for member in members:
        member.wait_for_log(r"assigned", timeout_s=90)
    produce(
        kafka_bootstrap,
        topics.events,
        keyed(events[:4]),
    )
    # mid-stream: once the first verdict is out, whichever member's partitions the first four
    # (randomly keyed) events hashed to; waiting on one member's log failed when none did (1/16)
    read_all(kafka_bootstrap, topics.verdicts, lambda records: len(records) >= 1, timeout_s=120)
    third = ConsumerProcess(env, tmp_path / "c2.log").start()
    produce(
        kafka_bootstrap,
        topics.events,
        keyed(events[4:]),
    )
    verdicts = read_all(kafka_bootstrap, topics.verdicts, covering(ids), timeout_s=300)
    third.wait_for_log(r"assigned", timeout_s=60)
    for member in [*members, third]:
        assert member.terminate() == 0
    unique = {json.loads(v)["verdict_id"]: json.loads(v)["event_id"] for v in verdicts}
    assert sorted(unique.values()) == sorted(e["event_id"] for e in events)


def test_redis_restarted_mid_run_loses_nothing(
    kafka_bootstrap: str,
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
) -> None:
    """A dedicated redis-server (not the shared one) is stopped and started again mid-run."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    port = _free_port()
    redis_cmd = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    redis_proc = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    topics = Topics.fresh(kafka_bootstrap)
    events = [event(shared / "data" / "faces" / name) for name in FACE_VIDEOS]
    ids = {e["event_id"] for e in events}
    env = consumer_env(
        kafka_bootstrap,
        f"redis://127.0.0.1:{port}/0",
        topics,
        tiny_checkpoint,
        detector,
        [shared / "data"],
        # enough full-jitter retries (about 15 s of backoff expected) to outlast the outage;
        # with 8 an unlucky draw gives up after 1.4 s (seen), a dead letter by design
        FAME_MAX_ATTEMPTS="20",
    )
    consumer = ConsumerProcess(env, tmp_path / "consumer.log").start()
    try:
        consumer.wait_for_log(r"assigned", timeout_s=90)
        produce(
            kafka_bootstrap,
            topics.events,
            keyed(events),
        )
        consumer.wait_for_log(r"verdict ", timeout_s=120)
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
        time.sleep(3.0)  # events in flight meet a dead Redis and back off
        redis_proc = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
        verdicts = read_all(kafka_bootstrap, topics.verdicts, covering(ids), timeout_s=240)
    finally:
        consumer.terminate()
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
    assert {json.loads(v)["event_id"] for v in verdicts} == {e["event_id"] for e in events}
    assert read_all(kafka_bootstrap, topics.dlq, at_least(1), timeout_s=2) == []


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_past_the_drain_timeout_exits_and_publishes_no_false_failure(
    kafka_bootstrap: str,
    redis_url: str,
    shared: Path,
    tiny_checkpoint: Path,
    detector: Path,
    tmp_path: Path,
) -> None:
    """Events still running when the drain times out are abandoned: no `failed` verdict (it
    would share the real verdict's id) and no dead letter; the next member finishes them."""
    topics = Topics.fresh(kafka_bootstrap)
    events = [event(shared / "data" / "faces" / name) for name in FACE_VIDEOS]
    ids = {e["event_id"] for e in events}
    env = consumer_env(
        kafka_bootstrap,
        redis_url,
        topics,
        tiny_checkpoint,
        detector,
        [shared / "data"],
        FAME_DRAIN_TIMEOUT_S="0",
    )
    first = ConsumerProcess(env, tmp_path / "first.log").start()
    first.wait_for_log(r"assigned", timeout_s=90)
    produce(kafka_bootstrap, topics.events, keyed(events))
    first.wait_for_log(r"detector runs on", timeout_s=120)  # the front end has the first video
    assert first.terminate(timeout_s=60) == 0, "exits promptly, no hang until SIGKILL"
    final = ConsumerProcess(env, tmp_path / "final.log").start()
    verdicts = read_all(kafka_bootstrap, topics.verdicts, covering(ids), timeout_s=300)
    assert final.terminate() == 0
    assert [json.loads(v)["status"] for v in verdicts] == ["attributed"] * len(verdicts)
    assert read_all(kafka_bootstrap, topics.dlq, at_least(1), timeout_s=2) == []
