"""`fame.video.sandbox.SandboxPool` when things go wrong in the pool itself: a replacement that
cannot start, a task cancelled while queued, a dispatcher that fails. (Crashes, timeouts and
memory limits of a task are in tests/test_hostile.py.)"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from fame.errors import PoisonError, TransientError
from fame.video import sandbox
from fame.video.sandbox import SandboxPool
from schemas.errors import ErrorCode


def _init(marker: str) -> str:
    """Starts normally, unless the marker file says how to fail: "raise N" or "die N" (N more
    times), or "hang" (until the file is gone)."""
    path = Path(marker)
    if path.exists():
        mode, _, count = path.read_text().partition(" ")
        if mode == "hang":
            while path.exists():
                time.sleep(0.05)
        elif int(count) > 0:
            path.write_text(f"{mode} {int(count) - 1}")
            if mode == "die":  # a crash in native code: no message, no exception
                os._exit(11)
            raise RuntimeError("CUDA out of memory while the old worker's context is freed")
    return marker


def _run(marker: str, task: str) -> str:
    if task == "crash":
        import os

        os._exit(3)
    if task == "nap":
        time.sleep(0.5)
    return task.upper()


@pytest.fixture(autouse=True)
def quick_respawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_RESPAWN_BASE_S", 0.1)


def test_a_replacement_that_cannot_start_is_tried_again(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with SandboxPool(
        init=_init, init_arg=str(marker), run=_run, workers=1, task_timeout_s=30
    ) as pool:
        marker.write_text("raise 2")  # the next two starts fail
        crashed = pool.submit("crash")
        waiting = pool.submit("abc")
        error = crashed.exception(timeout=30)
        assert isinstance(error, PoisonError) and error.code == ErrorCode.DECODE_CRASHED
        assert waiting.result(timeout=30) == "ABC"  # waited for the third start, not failed
        assert marker.read_text() == "raise 0" and pool.healthy


def test_a_replacement_that_dies_starting_is_tried_again_after_a_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash in start-up (no message, no exception) counts as a failed start: backoff, not a
    tight respawn loop, and the log says what happened."""
    marker = tmp_path / "marker"
    with (
        caplog.at_level(logging.ERROR, logger="fame.video.sandbox"),
        SandboxPool(
            init=_init, init_arg=str(marker), run=_run, workers=1, task_timeout_s=30
        ) as pool,
    ):
        marker.write_text("die 2")
        assert isinstance(pool.submit("crash").exception(timeout=30), PoisonError)
        assert pool.submit("abc").result(timeout=30) == "ABC"
    assert marker.read_text() == "die 0"
    assert "exited with code 11 while starting" in caplog.text  # counted as a failed start


def test_a_replacement_that_hangs_starting_is_replaced(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with SandboxPool(
        init=_init,
        init_arg=str(marker),
        run=_run,
        workers=1,
        task_timeout_s=30,
        start_timeout_s=1.0,
    ) as pool:
        marker.write_text("hang")
        assert isinstance(pool.submit("crash").exception(timeout=30), PoisonError)
        waiting = pool.submit("abc")
        deadline = time.monotonic() + 15  # past the 1-s start deadline (a busy machine: later)
        while pool.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pool.healthy  # the hanging replacement was killed: no worker could start
        marker.unlink()
        assert waiting.result(timeout=30) == "ABC"
        assert pool.healthy


def test_a_cancelled_task_does_not_hold_up_the_next(tmp_path: Path) -> None:
    with SandboxPool(
        init=_init, init_arg=str(tmp_path / "m"), run=_run, workers=1, task_timeout_s=30
    ) as pool:
        busy = pool.submit("nap")
        cancelled, after = pool.submit("x"), pool.submit("y")
        assert cancelled.cancel()
        assert busy.result(timeout=30) == "NAP"
        assert after.result(timeout=5) == "Y"  # no other submit needed to wake the pool


def test_a_failed_dispatcher_fails_every_task_and_says_so(tmp_path: Path) -> None:
    pool = SandboxPool(
        init=_init, init_arg=str(tmp_path / "m"), run=_run, workers=1, task_timeout_s=30
    )
    try:
        assert pool.healthy

        def broken() -> None:
            raise OSError(24, "Too many open files")

        pool._assign = broken  # type: ignore[method-assign]
        error = pool.submit("abc").exception(timeout=10)
        assert isinstance(error, TransientError) and "Too many open files" in str(error)
        assert not pool.healthy
        assert isinstance(pool.submit("def").exception(timeout=1), TransientError)
    finally:
        pool.close()
