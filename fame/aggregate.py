"""From window probabilities to track and video verdicts; shared by the service and evaluation.

Rules (pure numpy, no model):
- Track: the arithmetic mean of its windows' softmax probabilities. A mean of probabilities stays
  calibrated like one window and one overconfident window cannot veto the rest (a mean of
  log-probabilities would let a single near-zero window dominate).
- Video: a track's *fake evidence* is ``1 - p(real)`` (1 when the class list has no "real").
  The video is manipulated when any track's fake evidence reaches ``fake_threshold``; its label
  is the argmax over the fake classes of the most-manipulated track. It is "real" only when every
  track is real.
- Unknown generator: when the winning fake class's probability is below ``unknown_threshold``
  (calibrated at training time and stored in the checkpoint, default 0.5), the label becomes
  ``unknown_generator``: manipulated, but by none of the known generators with confidence.
- Salient frames: the top-k frames by attention weight; a frame covered by several windows keeps
  its largest weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

REAL_LABEL = "real"
UNKNOWN_LABEL = "unknown_generator"
DEFAULT_UNKNOWN_THRESHOLD = 0.5
DEFAULT_FAKE_THRESHOLD = 0.5


def track_probs(window_probs: ArrayLike) -> NDArray[np.float64]:
    """Window probabilities [W, C] -> track probabilities [C]."""
    probs = np.asarray(window_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"window_probs must be [W>=1, C], got shape {probs.shape}")
    mean: NDArray[np.float64] = probs.mean(axis=0)
    return mean


def fake_evidence(probs: ArrayLike, classes: Sequence[str]) -> float:
    """Probability that the face is manipulated at all (1.0 when no class is 'real')."""
    p = np.asarray(probs, dtype=np.float64)
    if REAL_LABEL not in classes:
        return 1.0
    return float(1.0 - p[list(classes).index(REAL_LABEL)])


@dataclass(frozen=True)
class VideoDecision:
    """The video verdict; ``track`` indexes the deciding (most-manipulated) track."""

    label: str
    class_index: int | None
    confidence: float
    is_manipulated: bool
    is_unknown: bool
    track: int
    fake_score: float
    probs: NDArray[np.float64]


def decide_video(
    tracks: Sequence[ArrayLike],
    classes: Sequence[str],
    *,
    unknown_threshold: float = DEFAULT_UNKNOWN_THRESHOLD,
    fake_threshold: float = DEFAULT_FAKE_THRESHOLD,
) -> VideoDecision:
    """Per-track class probabilities [C] (one per face track) -> the video's decision."""
    if not tracks:
        raise ValueError("a video decision needs at least one face track")
    probs = [np.asarray(t, dtype=np.float64) for t in tracks]
    for p in probs:
        if p.shape != (len(classes),):
            raise ValueError(f"track probs shape {p.shape} != ({len(classes)},) classes")
    fakes = [i for i, name in enumerate(classes) if name != REAL_LABEL]
    evidence = [fake_evidence(p, classes) for p in probs]
    if REAL_LABEL in classes:
        best = int(np.argmax(evidence))
    else:
        best = int(np.argmax([p.max() for p in probs]))
    chosen = probs[best]
    if evidence[best] < fake_threshold or not fakes:
        real = list(classes).index(REAL_LABEL)
        return VideoDecision(
            REAL_LABEL, real, float(chosen[real]), False, False, best, evidence[best], chosen
        )
    winner = fakes[int(np.argmax(chosen[fakes]))]
    confidence = float(chosen[winner])
    unknown = confidence < unknown_threshold
    label = UNKNOWN_LABEL if unknown else classes[winner]
    return VideoDecision(label, winner, confidence, True, unknown, best, evidence[best], chosen)


def salient_frames(
    windows: Sequence[tuple[ArrayLike, ArrayLike]], top_k: int = 3
) -> list[tuple[int, float]]:
    """(frame_indices [T], attention [T]) per window -> top-k (frame index, weight), best first.

    Padding frames carry attention 0 and are never chosen.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    best: dict[int, float] = {}
    for frame_indices, attention in windows:
        for frame, weight in zip(
            np.asarray(frame_indices).tolist(), np.asarray(attention).tolist(), strict=True
        ):
            if weight > 0 and weight > best.get(int(frame), -1.0):
                best[int(frame)] = float(weight)
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:top_k]


def calibrate_unknown_threshold(
    probs: ArrayLike, labels: ArrayLike, classes: Sequence[str], keep_fraction: float = 0.95
) -> float:
    """Threshold that keeps ``keep_fraction`` of correctly attributed fake tracks known.

    The (1 - keep_fraction) quantile of the winning probability over correct fake predictions,
    capped at the default; the default when there is no such prediction.
    """
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    fake = np.array([name != REAL_LABEL for name in classes])
    predicted = p.argmax(axis=1)
    correct = (predicted == y) & fake[y]
    if not correct.any():
        return DEFAULT_UNKNOWN_THRESHOLD
    winning = p[correct, predicted[correct]]
    return float(min(DEFAULT_UNKNOWN_THRESHOLD, np.quantile(winning, 1 - keep_fraction)))
