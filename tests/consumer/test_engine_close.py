"""Closing the inference engine never leaves an event thread waiting for the model thread (an
event thread blocked there kept the process alive after SIGTERM, until SIGKILL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fame.checkpoint import load_checkpoint
from fame.inference import EngineClosedError, InferenceEngine


def _crops(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (count, 64, 64, 3), dtype=np.uint8)


def test_requests_queued_or_submitted_after_close_fail_instead_of_hanging(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, meta = load_checkpoint(tiny_checkpoint)
    engine = InferenceEngine(model, meta, max_batch=4, max_wait_ms=0, precision="fp32")
    running, release = threading.Event(), threading.Event()
    execute = engine._execute

    def slow_execute(*args: Any) -> None:  # the first batch holds the model thread
        running.set()
        release.wait(30)
        execute(*args)

    monkeypatch.setattr(engine, "_execute", slow_execute)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(engine.embed, _crops(2))
        assert running.wait(10)
        queued = pool.submit(engine.embed, _crops(3))
        closing = pool.submit(engine.close)
        try:
            with pytest.raises(EngineClosedError):
                queued.result(timeout=5)
            late = pool.submit(engine.embed, _crops(1))
            with pytest.raises(EngineClosedError):
                late.result(timeout=5)
        finally:
            release.set()
        assert first.result(timeout=30).shape[0] == 2, "the running batch finishes"
        closing.result(timeout=30)
