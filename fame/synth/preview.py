"""A PNG grid of sample frames from a build: one row per target scene, one column per class.

The face region is found without a detector, as the pixels where any generator's frame differs
from the real one, so the grid zooms on exactly what the swap changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np

from fame.synth.build import MANIFEST_NAME, REAL_MODEL
from fame.synth.generators import GENERATOR_NAMES

COLUMNS = (REAL_MODEL, *GENERATOR_NAMES)
HEADER_PX = 24
_DIFF_THRESHOLD = 12
_ZOOM_PADDING = 0.15


def middle_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"no frames in {path}")
    return frames[len(frames) // 2]


def _scenes(manifest: dict[str, object], crf: int, rows: int) -> list[dict[str, str]]:
    """The first fake of each of the first ``rows`` distinct targets, with its real twin."""
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ValueError("manifest has no files table")
    chosen: dict[str, dict[str, str]] = {}
    for name, info in files.items():
        if info["crf"] != crf or info["label"] == REAL_MODEL or info["target"] in chosen:
            continue
        prefix = f"{info['source']}_{info['target']}_{info['scene']:04d}_"
        real = f"{info['target']}_{info['target']}_{info['scene']:04d}_{REAL_MODEL}.mp4"
        chosen[info["target"]] = {"prefix": prefix, "real": real, "folder": name.split("/")[0]}
        if len(chosen) == rows:
            break
    return list(chosen.values())


def _zoom(tiles: list[np.ndarray], tile_px: int) -> list[np.ndarray]:
    changed = np.zeros(tiles[0].shape[:2], bool)
    for tile in tiles[1:]:
        changed |= np.abs(tile.astype(np.int16) - tiles[0]).max(axis=2) > _DIFF_THRESHOLD
    ys, xs = np.nonzero(changed)
    height, width = tiles[0].shape[:2]
    if len(ys) == 0:
        y1, y2, x1, x2 = 0, height, 0, width
    else:
        side = max(np.ptp(ys), np.ptp(xs)) * (1 + 2 * _ZOOM_PADDING)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        y1, x1 = max(0, int(cy - side / 2)), max(0, int(cx - side / 2))
        y2, x2 = min(height, int(cy + side / 2)), min(width, int(cx + side / 2))
    return [
        cv2.resize(t[y1:y2, x1:x2], (tile_px, tile_px), interpolation=cv2.INTER_AREA) for t in tiles
    ]


def sample_grid(build_dir: Path, crf: int = 0, rows: int = 3, tile_px: int = 160) -> np.ndarray:
    """RGB uint8 grid: a header row of class names, then ``rows`` zoomed middle frames."""
    manifest = json.loads((build_dir / MANIFEST_NAME).read_text())
    scenes = _scenes(manifest, crf, rows)
    if not scenes:
        raise ValueError(f"no fakes at CRF {crf} in {build_dir}")
    lines = []
    for scene in scenes:
        folder = build_dir / scene["folder"]
        paths = [folder / scene["real"]]
        paths += [folder / f"{scene['prefix']}{model}.mp4" for model in GENERATOR_NAMES]
        lines.append(np.concatenate(_zoom([middle_frame(p) for p in paths], tile_px), axis=1))
    header = np.full((HEADER_PX, tile_px * len(COLUMNS), 3), 255, np.uint8)
    for i, name in enumerate(COLUMNS):
        cv2.putText(
            header, name, (i * tile_px + 6, HEADER_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
            (0, 0, 0), 1, cv2.LINE_AA,
        )  # fmt: skip
    return np.concatenate([header, *lines], axis=0)


def write_png(grid: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
