"""`fame-consumer run --embedded` as a user runs it: a process, its streams and exit status."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.consumer.service_support import assert_schema_valid

CONSUMER = [sys.executable, "-m", "consumer.cli"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """`fame-consumer run --embedded ARGS...` to completion, its streams captured."""
    return subprocess.run(
        [*CONSUMER, "run", "--embedded", *args],
        capture_output=True,
        env=_env(**env),
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def _wait_for(stream: object, text: bytes, timeout_s: float) -> bytes:
    """What the process wrote to ``stream`` until ``text`` appears. Read from the descriptor,
    unbuffered: a buffered ``readline`` may take two log lines off the pipe at once and leave
    the second in Python's buffer, where ``select`` never sees it."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    seen = b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while text not in seen and time.monotonic() < deadline:
        if selector.select(timeout=1):
            chunk = os.read(fd, 65536)
            if not chunk:  # the process closed it
                break
            seen += chunk
    assert text in seen, seen.decode(errors="replace")[-2000:]
    return seen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_reading_standard_input_drains_and_exits_0(
    shared: Path, detector: Path, signum: int
) -> None:
    """It used to abort (exit -6, "could not acquire lock for <_io.BufferedReader
    name='<stdin>'>"): the reading thread held stdin's buffer lock at interpreter exit."""
    process = subprocess.Popen(
        [*CONSUMER, "run", "--embedded", "--input", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(FAME_DETECTOR_MODEL=str(detector)),
        cwd=REPO_ROOT,
    )
    try:
        _wait_for(process.stderr, b"assigned", timeout_s=120)  # logs: standard error
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0
        assert b"Fatal Python error" not in process.stderr.read()  # type: ignore[union-attr]
        assert process.stdout.read() == b""  # type: ignore[union-attr]  # no event, no output
    finally:
        process.kill()
        process.wait()


def test_one_video_as_input_gives_one_verdict_on_standard_output(
    shared: Path, detector: Path
) -> None:
    """Standard output carries only the records (logs go to standard error)."""
    video = shared / "data" / "samples" / "carphone_pristine.mp4"
    done = _run("--input", str(video), FAME_DETECTOR_MODEL=str(detector))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (line,) = done.stdout.decode().splitlines()
    verdict = json.loads(line)
    assert_schema_valid(verdict, "attribution_verdict")
    assert verdict["status"] == "attributed"
    assert all(json.loads(entry)["level"] for entry in done.stderr.decode().splitlines())


def test_a_dead_lettered_event_makes_the_exit_status_1(tmp_path: Path, detector: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("this is not an event\n")
    output = tmp_path / "out.jsonl"
    done = _run("--input", str(events), "--output", str(output), FAME_DETECTOR_MODEL=str(detector))
    assert done.returncode == 1, done.stderr.decode()[-2000:]
    (letter,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert letter["error_code"] == "invalid_json"
    assert b"is not a valid event" in done.stderr  # parse failures are logged too


def test_an_output_in_a_missing_folder_is_a_startup_error(tmp_path: Path) -> None:
    done = _run("--input", str(tmp_path), "--output", "/nope/x.jsonl")
    assert done.returncode == 2
    assert b"startup failed" in done.stderr and b"Traceback" not in done.stderr


def test_an_overlong_line_on_standard_input_is_cut_and_dead_lettered(detector: Path) -> None:
    """Standard input is bounded like a topic: a 3 MiB line (no event is that long) comes in
    as its first MiB, is dead-lettered, and the lines after it still come through."""
    from consumer.cli import MAX_EVENT_LINE_BYTES

    done = subprocess.run(
        [*CONSUMER, "run", "--embedded", "--input", "-"],
        input=b'{"a": "' + b"x" * (3 << 20) + b'"}\nnot an event either\n',
        capture_output=True,
        env=_env(FAME_DETECTOR_MODEL=str(detector)),
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr.decode()[-2000:]
    letters = [json.loads(line) for line in done.stdout.decode().splitlines()]
    letters.sort(key=lambda letter: letter["source"]["offset"])
    assert [letter["error_code"] for letter in letters] == ["invalid_json", "invalid_json"]
    assert letters[0]["payload_size_bytes"] == MAX_EVENT_LINE_BYTES
    assert letters[0]["payload_truncated"] and letters[1]["payload_text"] == "not an event either"
    for letter in letters:
        assert_schema_valid(letter, "dead_letter")
