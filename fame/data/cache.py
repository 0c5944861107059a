"""The preprocessed face-track cache: one ``.npz`` per (video, track) and an ``index.jsonl``.

Each ``.npz`` holds ``crops`` uint8 [N, 112, 112, 3] RGB aligned faces, ``frame_indices`` int64
[N] and ``timestamps_s`` float64 [N]. Each index line is one `TrackRecord`. The index, not the
folder listing, defines the dataset, and its digest is the data fingerprint checkpoints carry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

INDEX_FILE = "index.jsonl"
CROP_SIZE = 112


@dataclass(frozen=True)
class TrackRecord:
    """One cached face track of one labelled video.

    ``group`` keeps identity-sharing videos on one side of a split; ``split`` is set when the
    dataset defines official splits (or after `adapters.identity_disjoint_split`).
    """

    video: str
    label: str
    track_file: str
    n_frames: int
    track_id: int = 0
    identities: tuple[str, ...] = ()
    group: str = ""
    split: str | None = None
    crf: int | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackRecord:
        return cls(**{**data, "identities": tuple(data.get("identities", ()))})


@dataclass(frozen=True)
class TrackArrays:
    crops: NDArray[np.uint8]
    frame_indices: NDArray[np.int64]
    timestamps_s: NDArray[np.float64]


def write_track(
    cache_dir: str | Path,
    track_file: str,
    crops: NDArray[np.uint8],
    frame_indices: NDArray[np.int64],
    timestamps_s: NDArray[np.float64],
) -> None:
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 [N, H, W, 3], got {crops.dtype} {crops.shape}")
    if not len(crops) == len(frame_indices) == len(timestamps_s):
        raise ValueError(
            f"lengths differ: {len(crops)} crops, {len(frame_indices)} frame indices, "
            f"{len(timestamps_s)} timestamps"
        )
    path = Path(cache_dir) / track_file
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        crops=crops,
        frame_indices=np.asarray(frame_indices, dtype=np.int64),
        timestamps_s=np.asarray(timestamps_s, dtype=np.float64),
    )


def read_track(cache_dir: str | Path, record: TrackRecord) -> TrackArrays:
    with np.load(Path(cache_dir) / record.track_file) as data:
        return TrackArrays(data["crops"], data["frame_indices"], data["timestamps_s"])


def write_index(cache_dir: str | Path, records: list[TrackRecord]) -> Path:
    path = Path(cache_dir) / INDEX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.to_json() + "\n" for r in records))
    return path


def read_index(cache_dir: str | Path) -> list[TrackRecord]:
    path = Path(cache_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {INDEX_FILE} in cache {cache_dir} (run `fame preprocess`)")
    return [
        TrackRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line
    ]


def fingerprint(cache_dir: str | Path) -> str:
    """sha256 of the index: changes whenever a track, label or split changes."""
    return "sha256:" + hashlib.sha256((Path(cache_dir) / INDEX_FILE).read_bytes()).hexdigest()


class TrackStore:
    """Reads tracks on demand and keeps the most recent ``max_tracks`` in memory."""

    def __init__(self, cache_dir: str | Path, max_tracks: int = 256) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_tracks = max_tracks
        self._cache: OrderedDict[str, TrackArrays] = OrderedDict()

    def get(self, record: TrackRecord) -> TrackArrays:
        key = record.track_file
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        arrays = read_track(self.cache_dir, record)
        self._cache[key] = arrays
        if len(self._cache) > self.max_tracks:
            self._cache.popitem(last=False)
        return arrays
