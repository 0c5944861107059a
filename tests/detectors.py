"""A real detector for front-end tests that need to know how it was called."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fame.faces.detector import Detections, load_detector


class CountingDetector:
    """The real SCRFD detector, recording how many frames each call carried (`batch_sizes`;
    `detect` is a call of one)."""

    def __init__(self, model: Path, backend: str = "auto") -> None:
        self._inner = load_detector(str(model), allow_fallback=False, backend=backend)
        self.name = self._inner.name
        self.batch_sizes: list[int] = []

    def detect(self, rgb: np.ndarray) -> Detections:
        (found,) = self.detect_batch([rgb])
        return found

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        self.batch_sizes.append(len(frames))
        return self._inner.detect_batch(frames)
