"""The committed default checkpoint loads, serves, and is the one its model card describes."""

from __future__ import annotations

import numpy as np
import pytest

from fame.checkpoint import DEFAULT_CHECKPOINT, file_sha256, load_checkpoint, resolve_checkpoint
from fame.inference import InferenceEngine
from tests.conftest import REPO_ROOT


def test_model_card_names_the_committed_weights() -> None:
    card = (REPO_ROOT / "docs" / "model_card.md").read_text()
    assert file_sha256(DEFAULT_CHECKPOINT) in card
    _, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert meta.model_name in card and meta.data_fingerprint in card
    assert "real" in meta.classes


def test_default_checkpoint_is_what_the_service_resolves_and_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FAME_CHECKPOINT", raising=False)
    assert resolve_checkpoint() == DEFAULT_CHECKPOINT
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    engine = InferenceEngine(model, meta)
    try:
        crops = np.random.default_rng(0).integers(0, 255, (20, 112, 112, 3), dtype=np.uint8)
        embeddings = engine.embed(crops)
        assert embeddings.shape == (20, model.embed_dim)
        windows = embeddings[: meta.clip_len][None].astype(np.float32)
        probs, attention = engine.classify(windows, np.ones((1, meta.clip_len), bool))
        assert probs.shape == (1, len(meta.classes))
        np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(attention.sum(), 1.0, rtol=1e-5)
    finally:
        engine.close()
