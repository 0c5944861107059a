"""Fixed-length clips from cached face tracks.

Training draws one random window per track per epoch (seeded by seed, epoch and item, so a resumed
run sees the same clips); evaluation takes every window at a stride, plus a final window flush
with the track's end. Tracks shorter than the clip are zero-padded at the end with a mask False
there, the prefix mask `fame.model.FAME` expects. Items stay uint8 so batches move cheaply;
`to_model_input` normalises and resizes on the target device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch.utils.data import Dataset, WeightedRandomSampler

from fame.data.cache import TrackArrays, TrackRecord, TrackStore
from fame.model import FAME

PAD_FRAME_INDEX = -1


def window_starts(n_frames: int, clip_len: int, stride: int) -> list[int]:
    """Starts of all evaluation windows; the last window always ends at the track's end."""
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len {clip_len} and stride {stride} must be >= 1")
    if n_frames <= clip_len:
        return [0]
    starts = list(range(0, n_frames - clip_len + 1, stride))
    if starts[-1] != n_frames - clip_len:
        starts.append(n_frames - clip_len)
    return starts


def take_window(
    arrays: TrackArrays, start: int, clip_len: int
) -> tuple[NDArray[np.uint8], NDArray[np.bool_], NDArray[np.int64]]:
    """(crops [T, H, W, 3], mask [T], frame_indices [T] with -1 on padding)."""
    crops = arrays.crops[start : start + clip_len]
    n = len(crops)
    if n == 0:
        raise ValueError(f"window start {start} is past the track's {len(arrays.crops)} frames")
    mask = np.zeros(clip_len, dtype=bool)
    mask[:n] = True
    frames = np.full(clip_len, PAD_FRAME_INDEX, dtype=np.int64)
    frames[:n] = arrays.frame_indices[start : start + n]
    if n < clip_len:
        pad = np.zeros((clip_len - n, *crops.shape[1:]), dtype=np.uint8)
        crops = np.concatenate([crops, pad])
    return np.ascontiguousarray(crops), mask, frames


def class_indices(records: Sequence[TrackRecord], classes: Sequence[str]) -> list[int]:
    lookup = {name: i for i, name in enumerate(classes)}
    missing = sorted({r.label for r in records} - set(lookup))
    if missing:
        raise ValueError(f"labels {missing} are not in the class list {list(classes)}")
    return [lookup[r.label] for r in records]


class RandomWindowClips(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """One random window per track; item = (crops uint8 [T,H,W,3], mask [T], label)."""

    def __init__(
        self,
        records: Sequence[TrackRecord],
        store: TrackStore,
        classes: Sequence[str],
        clip_len: int,
        *,
        seed: int = 0,
        flip: bool = True,
    ) -> None:
        self.records = list(records)
        self.labels = class_indices(self.records, classes)
        self.store = store
        self.clip_len = clip_len
        self.seed = seed
        self.flip = flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        arrays = self.store.get(self.records[i])
        start = int(rng.integers(0, max(1, len(arrays.crops) - self.clip_len + 1)))
        crops, mask, _ = take_window(arrays, start, self.clip_len)
        if self.flip and rng.random() < 0.5:
            crops = np.ascontiguousarray(crops[:, :, ::-1])
        return torch.from_numpy(crops), torch.from_numpy(mask), torch.tensor(self.labels[i])


class SlidingWindowClips(Dataset[tuple[torch.Tensor, ...]]):
    """Every window of every track; item = (crops, mask, label, track position, frame indices)."""

    def __init__(
        self,
        records: Sequence[TrackRecord],
        store: TrackStore,
        classes: Sequence[str],
        clip_len: int,
        stride: int,
    ) -> None:
        self.records = list(records)
        self.labels = class_indices(self.records, classes)
        self.store = store
        self.clip_len = clip_len
        self.windows = [
            (t, start)
            for t, record in enumerate(self.records)
            for start in window_starts(record.n_frames, clip_len, stride)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        track, start = self.windows[i]
        crops, mask, frames = take_window(self.store.get(self.records[track]), start, self.clip_len)
        return (
            torch.from_numpy(crops),
            torch.from_numpy(mask),
            torch.tensor(self.labels[track]),
            torch.tensor(track),
            torch.from_numpy(frames),
        )


def balanced_sampler(labels: Sequence[int], num_samples: int, seed: int) -> WeightedRandomSampler:
    """Draws classes equally often regardless of how many tracks each has."""
    counts = np.bincount(np.asarray(labels))
    weights = [1.0 / float(counts[y]) for y in labels]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)


def to_model_input(model: FAME, crops: torch.Tensor) -> torch.Tensor:
    """uint8 crops [B, T, H, W, 3] -> normalised float [B, T, 3, S, S] at the model's size."""
    x = model.normalize(crops)
    size = model.config.img_size
    if x.shape[-1] != size or x.shape[-2] != size:
        batch, steps = x.shape[:2]
        x = F.interpolate(
            x.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        ).view(batch, steps, 3, size, size)
    return x
