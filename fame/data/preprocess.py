"""Labelled videos -> the face-track cache, through any `TrackSource` (the face front end).

The front end is injected instead of imported so that this layer depends only on the shape of
a face track (crops, frame indices, timestamps) and tests can feed tracks without a detector.
A video the source rejects as bad input (`PoisonError`) is skipped and counted, not fatal.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from fame.data.adapters import LabelledVideo, identity_disjoint_split
from fame.data.cache import CROP_SIZE, TrackRecord, write_index, write_track
from fame.errors import PoisonError

log = logging.getLogger(__name__)


class FaceTrackLike(Protocol):
    """What preprocessing needs of one face track (the front end's track type satisfies it)."""

    @property
    def crops(self) -> NDArray[np.uint8]: ...

    @property
    def frame_indices(self) -> NDArray[np.int64]: ...

    @property
    def timestamps_s(self) -> NDArray[np.float64]: ...


TrackSource = Callable[[Path], Sequence[FaceTrackLike]]


@dataclass
class PreprocessSummary:
    records: list[TrackRecord] = field(default_factory=list)
    videos_without_faces: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def _resize_crops(crops: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    if crops.shape[1:3] == (size, size):
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def _track_file(video: Path, track_id: int) -> str:
    digest = hashlib.sha1(str(video).encode()).hexdigest()[:16]
    return f"tracks/{digest}_{video.stem}_{track_id:02d}.npz"


def preprocess(
    videos: Sequence[LabelledVideo],
    source: TrackSource,
    cache_dir: str | Path,
    *,
    min_frames: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> PreprocessSummary:
    """Writes one .npz per track of at least ``min_frames`` and the index; splits are assigned
    identity-disjointly unless the layout has official ones."""
    summary = PreprocessSummary()
    for video in tqdm(
        identity_disjoint_split(videos, seed=seed), disable=not progress, unit="video"
    ):
        try:
            tracks = source(video.path)
        except PoisonError as e:
            log.warning("skipping %s: %s", video.path, e)
            summary.rejected[str(video.path)] = e.code.value
            continue
        kept = [t for t in tracks if len(t.crops) >= min_frames]
        if not kept:
            summary.videos_without_faces.append(str(video.path))
        for track_id, track in enumerate(kept):
            record = TrackRecord(
                video=str(video.path),
                label=video.label,
                track_file=_track_file(video.path, track_id),
                n_frames=len(track.crops),
                track_id=track_id,
                identities=video.identities,
                group=video.group,
                split=video.split,
                crf=video.crf,
            )
            write_track(
                cache_dir,
                record.track_file,
                _resize_crops(np.asarray(track.crops, dtype=np.uint8), CROP_SIZE),
                np.asarray(track.frame_indices),
                np.asarray(track.timestamps_s),
            )
            summary.records.append(record)
    write_index(cache_dir, summary.records)
    return summary
