"""Window -> track -> video rules of `fame.aggregate` (shared by the service and evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from fame import aggregate
from fame.aggregate import REAL_LABEL, UNKNOWN_LABEL, decide_video

CLASSES = ["dfaker", "faceswap", REAL_LABEL]


def test_track_probs_is_the_mean_of_windows() -> None:
    windows = np.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2]])
    np.testing.assert_allclose(aggregate.track_probs(windows), [0.5, 0.35, 0.15])
    with pytest.raises(ValueError, match="window_probs"):
        aggregate.track_probs(np.zeros((0, 3)))


def test_video_is_real_only_when_every_track_is_real() -> None:
    real = [0.05, 0.05, 0.9]
    fake = [0.1, 0.7, 0.2]
    assert decide_video([real, real], CLASSES).label == REAL_LABEL
    decision = decide_video([real, fake, real], CLASSES)
    assert decision.label == "faceswap"
    assert decision.is_manipulated and decision.track == 1
    assert decision.fake_score == pytest.approx(0.8)


def test_label_comes_from_the_most_manipulated_track() -> None:
    weak = [0.45, 0.0, 0.55]
    strong = [0.1, 0.85, 0.05]
    decision = decide_video([weak, strong], CLASSES)
    assert (decision.label, decision.track, decision.class_index) == ("faceswap", 1, 1)


def test_low_confidence_fake_is_unknown_generator() -> None:
    decision = decide_video([[0.35, 0.4, 0.25]], CLASSES, unknown_threshold=0.5)
    assert decision.label == UNKNOWN_LABEL
    assert decision.is_unknown and decision.is_manipulated
    assert decision.class_index == 1
    assert decide_video([[0.35, 0.4, 0.25]], CLASSES, unknown_threshold=0.3).label == "faceswap"


def test_without_real_class_every_video_is_manipulated() -> None:
    classes = ["dfaker", "faceswap"]
    decision = decide_video([[0.6, 0.4], [0.1, 0.9]], classes)
    assert decision.label == "faceswap" and decision.track == 1


def test_decide_video_validates_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        decide_video([], CLASSES)
    with pytest.raises(ValueError, match="shape"):
        decide_video([[0.5, 0.5]], CLASSES)


def test_salient_frames_take_top_attention_and_skip_padding() -> None:
    windows = [
        (np.array([0, 1, 2, 3]), np.array([0.1, 0.6, 0.2, 0.1])),
        (np.array([2, 3, -1, -1]), np.array([0.7, 0.3, 0.0, 0.0])),
    ]
    assert aggregate.salient_frames(windows, top_k=3) == [(2, 0.7), (1, 0.6), (3, 0.3)]
    assert len(aggregate.salient_frames(windows, top_k=10)) == 4


def test_calibrated_threshold_keeps_most_correct_fakes_known() -> None:
    rng = np.random.default_rng(0)
    winning = rng.uniform(0.4, 1.0, 200)
    probs = np.stack([winning, (1 - winning) / 2, (1 - winning) / 2], axis=1)
    threshold = aggregate.calibrate_unknown_threshold(probs, np.zeros(200, int), CLASSES)
    assert np.mean(winning >= threshold) == pytest.approx(0.95, abs=0.01)
    all_wrong = aggregate.calibrate_unknown_threshold(probs, np.ones(200, int), CLASSES)
    assert all_wrong == aggregate.DEFAULT_UNKNOWN_THRESHOLD
