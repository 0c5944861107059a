"""The inference engine: precision choice, bf16 close to fp32, micro-batching returns each
caller its own slice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from fame import precision
from fame.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from fame.inference import InferenceEngine
from fame.precision import resolve_precision

CPU = torch.device("cpu")


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("bf16", CPU) == "bf16"  # explicit wins, even where emulated
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", CPU)


def _run(engine: InferenceEngine, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        embeddings = engine.embed(crops)
        clip_len = engine.clip_len
        windows = np.stack([embeddings[i : i + clip_len] for i in (0, clip_len)])
        probs, _ = engine.classify(windows, np.ones(windows.shape[:2], bool))
        return embeddings, probs
    finally:
        engine.close()


def test_bf16_embeddings_and_probabilities_stay_close_to_fp32() -> None:
    """The shipped checkpoint on real-sized crops: bf16 autocast moves embeddings by about a
    percent and class probabilities by a few thousandths, so verdicts keep their labels."""
    crops = np.random.default_rng(0).integers(0, 255, (32, 112, 112, 3), dtype=np.uint8)
    results = {}
    for name in ("fp32", "bf16"):
        model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
        engine = InferenceEngine(model, meta, precision=name)  # type: ignore[arg-type]
        assert engine.precision == name
        results[name] = _run(engine, crops)
    (e32, p32), (e16, p16) = results["fp32"], results["bf16"]
    assert not np.array_equal(e32, e16), "bf16 autocast did not change the arithmetic"
    assert np.linalg.norm(e16 - e32) / np.linalg.norm(e32) < 0.03
    assert np.abs(p16 - p32).max() < 0.03
    assert (p16.argmax(1) == p32.argmax(1)).all()


def test_concurrent_callers_each_get_their_own_slice(tiny_checkpoint: object) -> None:
    model, meta = load_checkpoint(tiny_checkpoint)  # type: ignore[arg-type]
    engine = InferenceEngine(model, meta, max_batch=4, max_wait_ms=50, precision="fp32")
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8) for n in (3, 9, 1, 17, 5)]
    try:
        alone = [engine.embed(crops) for crops in batches]
        with ThreadPoolExecutor(len(batches)) as pool:
            together = list(pool.map(engine.embed, batches))
    finally:
        engine.close()
    for expected, got in zip(alone, together, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
