"""SCRFD's work on one frame around its network: letterbox, normalise, keep the anchors that pass
the threshold, decode them, NMS.

Why not InsightFace's ``SCRFD.detect``: around the network it spends more host CPU per frame than
decoding the frame does (on a 720p frame here: a BGR copy of the whole frame, 2.4 ms; a float blob
from ``cv2.dnn.blobFromImage``, 2.5 ms; every anchor's box and keypoints decoded before the
threshold). A front-end worker whose network runs on the GPU would be bound by that host work,
not by the GPU. Here the frame stays RGB, the blob is built per channel plane (about 15x faster,
bit-identical), only anchors above the threshold are decoded, and under PyTorch the letterboxed
uint8 image goes to the device (a quarter of the float blob's bytes; a frame smaller than its
letterbox goes as decoded and is letterboxed there), is normalised there inside the CUDA graph,
and only the candidates come back. The arithmetic is InsightFace's, in its order,
so the faces are the ones its ``detect`` finds (tested bit for bit on ONNX Runtime; PyTorch's
resize on the device is within a grey level of OpenCV's, see `TorchSession.run_frame`); what the
graph's outputs mean (strides, anchors per cell, keypoints, normalisation) and the NMS are still
read from its adapter (`ScrfdLayout.of`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fame.faces.scrfd_graph import split_rows

MAX_ANCHOR_TABLES = 100  # input sizes whose anchor centres are kept (InsightFace keeps as many)


@dataclass(frozen=True)
class ScrfdLayout:
    """How a SCRFD graph's outputs are laid out, as InsightFace's adapter read them."""

    output_names: tuple[str, ...]
    strides: tuple[int, ...]
    anchors_per_cell: int
    keypoints: bool
    mean: float
    std: float

    @classmethod
    def of(cls, adapter: Any) -> ScrfdLayout:
        """From an ``insightface.model_zoo.scrfd.SCRFD`` (its ``_init_vars`` read the graph)."""
        return cls(
            output_names=tuple(adapter.output_names),
            strides=tuple(int(s) for s in adapter._feat_stride_fpn),
            anchors_per_cell=int(adapter._num_anchors),
            keypoints=bool(adapter.use_kps),
            mean=float(adapter.input_mean),
            std=float(adapter.input_std),
        )

    def split(self, outputs: list[Any], frames: int = 1) -> tuple[list[Any], list[Any], list[Any]]:
        """Outputs in ``output_names`` order, of a batch of ``frames``, as (scores, box
        distances, keypoint distances) per stride, each ``[frames, anchors, ...]`` (rows come
        frame after frame: `fame.faces.scrfd_graph.detector_graph` checked it)."""
        count = len(self.strides)
        scores = [split_rows(o, frames)[..., 0] for o in outputs[:count]]
        boxes = [split_rows(o, frames) for o in outputs[count : 2 * count]]
        points = [split_rows(o, frames) for o in outputs[2 * count : 3 * count]]
        return scores, boxes, points if self.keypoints else []


@dataclass(frozen=True)
class Fit:
    """Where a frame goes in the detector input: resized to ``width`` x ``height`` in its
    top-left corner (aspect kept), ``scale`` detector-input pixels per frame pixel."""

    width: int
    height: int
    scale: float

    def enlarges(self, frame_shape: tuple[int, ...]) -> bool:
        """Whether the resized frame has more pixels than the frame as decoded."""
        return self.width * self.height > frame_shape[0] * frame_shape[1]


def fit(frame_shape: tuple[int, ...], size: tuple[int, int]) -> Fit:
    """The frame fitted into ``size`` (width, height), aspect kept, zero padding right and below:
    InsightFace's ``_detect_candidates`` sizing."""
    width, height = size
    frame_ratio = float(frame_shape[0]) / frame_shape[1]
    if frame_ratio > float(height) / width:
        new_height, new_width = height, max(1, int(height / frame_ratio))
    else:
        new_height, new_width = max(1, int(width * frame_ratio)), width
    return Fit(new_width, new_height, float(new_height) / frame_shape[0])


@dataclass(frozen=True)
class Letterboxed:
    image: np.ndarray  # uint8 [H_in, W_in, 3] RGB: the frame resized into the top-left corner
    scale: float  # detector-input pixels per frame pixel


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> Letterboxed:
    """The frame resized straight into the padded detector input (see `fit`)."""
    return Letterboxed(letterbox_frames([rgb], size)[0], fit(rgb.shape, size).scale)


def letterbox_frames(frames: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """uint8 [B, H_in, W_in, 3]: frames of one shape, each letterboxed as `letterbox` does,
    straight into one array (a batch for the network, with no copy to stack it)."""
    width, height = size
    placed = fit(frames[0].shape, size)
    images = np.zeros((len(frames), height, width, 3), np.uint8)
    for image, rgb in zip(images, frames, strict=True):
        cv2.resize(rgb, (placed.width, placed.height), dst=image[: placed.height, : placed.width])
    return images


def blob(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """float32 [B, 3, H, W] ``(x - mean) / std`` of uint8 [B, H, W, 3] images (or one [H, W,
    3] image, B = 1): what ``cv2.dnn.blobFromImage(image, 1 / std, mean=(mean,) * 3)`` gives
    (the same float operations), one channel plane at a time."""
    images = images.reshape(-1, *images.shape[-3:])
    count, height, width = images.shape[:3]
    out = np.empty((count, 3, height, width), np.float32)
    scale = 1.0 / std
    for image, planes in zip(images, out, strict=True):
        for channel, plane in enumerate(cv2.split(image)):
            cv2.addWeighted(
                plane, scale, plane, 0.0, -mean * scale, dst=planes[channel], dtype=cv2.CV_32F
            )
    return out


class AnchorTables:
    """Anchor centres (x, y) and strides, one row per anchor over all strides, per input size."""

    def __init__(self, layout: ScrfdLayout) -> None:
        self._layout = layout
        self._tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(centres float32 [N, 2], strides float32 [N]) for an input of this size."""
        table = self._tables.get((height, width))
        if table is None:
            table = self._build(height, width)
            if len(self._tables) < MAX_ANCHOR_TABLES:
                self._tables[(height, width)] = table
        return table

    def _build(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        centres, strides = [], []
        for stride in self._layout.strides:
            rows, columns = np.mgrid[: height // stride, : width // stride]
            grid = np.stack([columns, rows], axis=-1)  # (x, y) per cell, row-major
            cells = (grid.astype(np.float32) * stride).reshape(-1, 2)
            if self._layout.anchors_per_cell > 1:
                cells = np.repeat(cells, self._layout.anchors_per_cell, axis=0)
            centres.append(cells)
            strides.append(np.full(len(cells), stride, np.float32))
        return np.concatenate(centres), np.concatenate(strides)


@dataclass(frozen=True)
class Candidates:
    """Anchors whose score passed the threshold, in anchor order (stride by stride)."""

    index: np.ndarray  # int64 [K] row in `AnchorTables.get`
    scores: np.ndarray  # float32 [K]
    boxes: np.ndarray  # float32 [K, 4] distances to the box sides, in strides
    points: np.ndarray | None  # float32 [K, 10] keypoint offsets, in strides


def candidates_numpy(
    layout: ScrfdLayout, outputs: list[np.ndarray], threshold: float, frames: int = 1
) -> list[Candidates]:
    """Each frame's candidates, from the outputs of a batch of ``frames``."""
    scores, boxes, points = layout.split(outputs, frames)
    all_scores = np.concatenate(scores, axis=1)
    all_boxes = np.concatenate(boxes, axis=1)
    all_points = np.concatenate(points, axis=1) if points else None
    found = []
    for frame in range(frames):
        index = np.flatnonzero(all_scores[frame] >= threshold)
        found.append(
            Candidates(
                index=index,
                scores=all_scores[frame, index],
                boxes=all_boxes[frame, index],
                points=None if all_points is None else all_points[frame, index],
            )
        )
    return found


def candidates_torch(
    layout: ScrfdLayout, outputs: list[Any], threshold: float, frames: int = 1, keep: int = 0
) -> list[Candidates]:
    """The same selection on the device, for the first ``keep`` frames (0: all; the rest pad a
    batch to a size captured before): one synchronisation, and only K rows come back."""
    import torch

    scores, boxes, points = layout.split(outputs, frames)
    kept = keep or frames
    all_scores = torch.cat(scores, dim=1)[:kept]
    hits = torch.nonzero(all_scores >= threshold)  # [K, 2]: (frame, anchor), frame by frame
    rows = torch.cat(
        [
            all_scores.unsqueeze(2),
            torch.cat(boxes, dim=1)[:kept],
            *([torch.cat(points, dim=1)[:kept]] if points else []),
        ],
        dim=2,
    )
    picked = rows[hits[:, 0], hits[:, 1]].float().cpu().numpy()
    hits_host = hits.cpu().numpy()
    bounds = np.searchsorted(hits_host[:, 0], np.arange(kept + 1))
    return [
        Candidates(
            index=hits_host[start:end, 1],
            scores=picked[start:end, 0],
            boxes=picked[start:end, 1:5],
            points=picked[start:end, 5:15] if points else None,
        )
        for start, end in itertools.pairwise(bounds)
    ]


def decode(
    found: Candidates, anchors: tuple[np.ndarray, np.ndarray], scale: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """``pre_det`` float32 [K, 5] (x1, y1, x2, y2 in frame pixels, score) and keypoints float32
    [K, 5, 2], best score first: InsightFace's ``distance2bbox`` / ``distance2kps`` and sort."""
    centres, strides = anchors
    centre = centres[found.index]
    stride = strides[found.index][:, None]
    distance = found.boxes * stride
    boxes = np.stack(
        [
            centre[:, 0] - distance[:, 0],
            centre[:, 1] - distance[:, 1],
            centre[:, 0] + distance[:, 2],
            centre[:, 1] + distance[:, 3],
        ],
        axis=-1,
    )
    order = np.argsort(-found.scores, kind="stable")
    pre_det = np.hstack((boxes / scale, found.scores[:, None])).astype(np.float32, copy=False)
    if found.points is None:
        return pre_det[order], None
    offsets = found.points * stride
    points = np.empty_like(offsets)
    points[:, 0::2] = centre[:, 0:1] + offsets[:, 0::2]
    points[:, 1::2] = centre[:, 1:2] + offsets[:, 1::2]
    return pre_det[order], (points / scale).reshape(-1, 5, 2)[order]
