"""Clip windows, padding masks, the cache format, balanced sampling and preprocessing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fame.data.adapters import LabelledVideo
from fame.data.cache import (
    TrackArrays,
    TrackRecord,
    TrackStore,
    fingerprint,
    read_index,
    read_track,
)
from fame.data.clips import (
    RandomWindowClips,
    SlidingWindowClips,
    balanced_sampler,
    take_window,
    to_model_input,
    window_starts,
)
from fame.data.preprocess import preprocess
from fame.errors import PoisonError
from fame.model import create_model
from schemas.errors import ErrorCode


def test_window_starts_cover_the_track() -> None:
    assert window_starts(5, 8, 4) == [0]
    assert window_starts(20, 8, 4) == [0, 4, 8, 12]
    assert window_starts(21, 8, 4) == [0, 4, 8, 12, 13]
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 8, 0)


def test_short_tracks_are_padded_at_the_end() -> None:
    arrays = TrackArrays(
        np.full((3, 4, 4, 3), 7, np.uint8), np.array([10, 12, 14]), np.array([0.0, 0.1, 0.2])
    )
    crops, mask, frames = take_window(arrays, 0, 5)
    assert crops.shape == (5, 4, 4, 3) and crops[3:].max() == 0 and crops[:3].min() == 7
    assert mask.tolist() == [True, True, True, False, False]
    assert frames.tolist() == [10, 12, 14, -1, -1]


@dataclass
class _Track:
    crops: np.ndarray
    frame_indices: np.ndarray
    timestamps_s: np.ndarray


def _source(path: Path) -> list[_Track]:
    if path.name == "bad.mp4":
        raise PoisonError("corrupt", code=ErrorCode.CORRUPT_STREAM)
    if path.name == "empty.mp4":
        return []
    n = 12 if "long" in path.name else 3
    # every frame and column its own value, so windows and flips are told apart
    frame = 10 * np.arange(n)[:, None, None, None] + np.arange(56)[None, None, :, None]
    crops = np.broadcast_to(frame + len(path.name), (n, 56, 56, 3)).astype(np.uint8)
    return [_Track(crops, np.arange(n) * 2, np.arange(n) / 10.0)] * 2


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    videos = [
        LabelledVideo(Path(f"/v/{name}.mp4"), label, (f"id{i}",), crf=23)
        for i, (name, label) in enumerate(
            [
                ("long_a", "real"),
                ("short_b", "fake"),
                ("long_c", "fake"),
                ("bad", "real"),
                ("empty", "fake"),
            ]
        )
    ]
    summary = preprocess(videos, _source, tmp_path, min_frames=2, progress=False)
    assert summary.rejected == {"/v/bad.mp4": "corrupt_stream"}
    assert summary.videos_without_faces == ["/v/empty.mp4"]
    return tmp_path


def test_preprocess_writes_tracks_and_index(cache: Path) -> None:
    records = read_index(cache)
    assert len(records) == 6
    assert {r.track_id for r in records} == {0, 1}
    first = records[0]
    assert first.crf == 23 and first.split in ("train", "val", "test") and first.group
    arrays = read_track(cache, first)
    assert arrays.crops.shape == (first.n_frames, 112, 112, 3)
    assert arrays.crops.dtype == np.uint8
    assert arrays.frame_indices.tolist() == list(range(0, 2 * first.n_frames, 2))
    assert fingerprint(cache).startswith("sha256:")


def test_sliding_windows_enumerate_every_track(cache: Path) -> None:
    records = read_index(cache)
    dataset = SlidingWindowClips(records, TrackStore(cache), ["fake", "real"], 8, 4)
    assert len(dataset) == sum(len(window_starts(r.n_frames, 8, 4)) for r in records)
    crops, mask, label, track, frames = dataset[0]
    assert crops.shape == (8, 112, 112, 3) and crops.dtype == torch.uint8
    assert int(mask.sum()) == min(8, records[0].n_frames)
    assert int(label) == ["fake", "real"].index(records[0].label) and int(track) == 0
    assert frames[0] == 0


def test_random_windows_are_seeded_per_epoch(cache: Path) -> None:
    records = read_index(cache)

    def draw(seed: int, epoch: int) -> list[torch.Tensor]:
        dataset = RandomWindowClips(records, TrackStore(cache), ["fake", "real"], 4, seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i][0] for i in range(len(dataset))]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    first = draw(seed=1, epoch=0)
    assert same(first, draw(seed=1, epoch=0))  # a resumed run draws the same windows
    assert not same(first, draw(seed=1, epoch=1))  # the next epoch draws others
    assert not same(first, draw(seed=2, epoch=0))
    with pytest.raises(ValueError, match="not in the class list"):
        RandomWindowClips(records, TrackStore(cache), ["real"], 4)


def test_balanced_sampler_draws_classes_equally() -> None:
    labels = [0] * 90 + [1] * 10
    drawn = np.array(labels)[list(balanced_sampler(labels, 4000, seed=0))]
    assert abs(np.mean(drawn == 1) - 0.5) < 0.03


def test_to_model_input_resizes_and_normalises() -> None:
    model = create_model("fame_tiny", 2)
    crops = torch.full((2, 3, 112, 112, 3), 255, dtype=torch.uint8)
    x = to_model_input(model, crops)
    assert x.shape == (2, 3, 3, 64, 64)
    expected = (1 - model.config.mean[0]) / model.config.std[0]
    assert float(x[0, 0, 0, 10, 10]) == pytest.approx(expected, rel=1e-4)


def test_track_record_roundtrip() -> None:
    record = TrackRecord("v.mp4", "real", "t.npz", 4, identities=("a", "b"), crf=0)
    assert TrackRecord.from_dict(json.loads(record.to_json())) == record
