"""Clip- and video-level evaluation of a FAME checkpoint on the face-track cache.

Clip level scores every window (stride ``stride``). Video level aggregates windows into tracks
and tracks into one decision per video with `fame.aggregate`, exactly as the service does; its
metrics are closed-set (the winning class even when the unknown-generator rule fires, which is
reported as a rate). Metrics are the paper's: accuracy, macro F1, one-vs-rest macro AUC, plus
per-class precision/recall and confusion matrices, overall and per CRF level when known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from tqdm import tqdm

from fame import aggregate, metrics
from fame.checkpoint import CheckpointMeta
from fame.data.cache import TrackRecord, TrackStore
from fame.data.clips import SlidingWindowClips, to_model_input
from fame.errors import ModelMissingError
from fame.model import FAME
from fame.precision import Precision, resolve_precision
from fame.quantize import Int8Encoder
from fame.windows import window_stride


@dataclass(frozen=True)
class WindowPredictions:
    """One row per window: class probabilities, true label, track position, frames, attention."""

    probs: NDArray[np.float64]
    labels: NDArray[np.int64]
    tracks: NDArray[np.int64]
    frames: NDArray[np.int64]
    attention: NDArray[np.float64]

    def track_probs(self, n_tracks: int) -> NDArray[np.float64]:
        """[n_tracks, C]; every track has at least one window by construction."""
        return np.stack(
            [aggregate.track_probs(self.probs[self.tracks == t]) for t in range(n_tracks)]
        )


@torch.no_grad()
def predict_windows(
    model: FAME,
    dataset: SlidingWindowClips,
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
    precision: Precision = "auto",
    int8_encoder: Int8Encoder | None = None,
) -> WindowPredictions:
    """Every window's probabilities and attention, in the precision the service would use."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    rows: list[tuple[torch.Tensor, ...]] = []
    device = torch.device(device)
    resolved = resolve_precision(precision, device, int8_encoder is not None)
    use_bf16 = resolved == "bf16"
    if resolved == "int8" and int8_encoder is None:
        raise ModelMissingError("precision int8 needs the checkpoint's int8 encoder: fame quantize")
    for crops, mask, labels, tracks, frames in tqdm(
        loader, disable=not progress, unit="batch", desc="predict", leave=False
    ):
        x = to_model_input(model, crops.to(device))
        with (
            torch.inference_mode(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16),
        ):
            if resolved == "int8" and int8_encoder is not None:
                embedded = int8_encoder(x.flatten(0, 1).cpu().numpy())
                e = torch.from_numpy(embedded).to(device).view(*x.shape[:2], -1)
                logits, attention = model.classify_embeddings(e, mask.to(device))
            else:
                logits, attention = model(x, mask.to(device))
        probs = torch.softmax(logits.float(), dim=1)
        rows.append((probs.cpu(), labels, tracks, frames, attention.float().cpu()))
    cols = [torch.cat(col).numpy() for col in zip(*rows, strict=True)]
    return WindowPredictions(
        cols[0].astype(np.float64), cols[1], cols[2], cols[3], cols[4].astype(np.float64)
    )


def _window_stride(model: FAME, stride: int | None) -> int:
    return window_stride(model.config.clip_len, stride)


def _predict_records(
    model: FAME,
    records: Sequence[TrackRecord],
    classes: Sequence[str],
    cache_dir: str | Path,
    stride_frames: int,
    *,
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    precision: Precision,
    int8_encoder: Int8Encoder | None,
) -> WindowPredictions:
    """`predict_windows` over the sliding windows of cached tracks (both reports use this)."""
    clip_len = model.config.clip_len
    dataset = SlidingWindowClips(records, TrackStore(cache_dir), classes, clip_len, stride_frames)
    return predict_windows(
        model,
        dataset,
        batch_size=batch_size,
        device=device,
        progress=progress,
        precision=precision,
        int8_encoder=int8_encoder,
    )


def classification_report(
    y_true: NDArray[np.int64],
    y_pred: NDArray[np.int64],
    probs: NDArray[np.float64],
    classes: Sequence[str],
) -> dict[str, Any]:
    labels = np.arange(len(classes))
    scores = metrics.per_class(y_true, y_pred, labels)
    present = np.isin(labels, y_true) | np.isin(labels, y_pred)
    auc = metrics.macro_auc_ovr(y_true, probs)
    return {
        "n": len(y_true),
        "accuracy": metrics.accuracy(y_true, y_pred),
        "macro_f1": float(np.mean(scores.f1[present])),
        "macro_auc": auc.macro,
        "auc_skipped_classes": [classes[c] for c in auc.skipped],
        "per_class": {
            classes[int(c)]: {
                "precision": float(scores.precision[c]),
                "recall": float(scores.recall[c]),
                "f1": float(scores.f1[c]),
                "support": int(scores.support[c]),
            }
            for c in labels
        },
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, len(classes)).tolist(),
    }


@dataclass(frozen=True)
class VideoResults:
    videos: list[str]
    labels: NDArray[np.int64]
    probs: NDArray[np.float64]
    decisions: list[aggregate.VideoDecision]


def video_results(
    records: Sequence[TrackRecord],
    track_probs: NDArray[np.float64],
    classes: Sequence[str],
    unknown_threshold: float,
) -> VideoResults:
    by_video: dict[str, list[int]] = {}
    for t, record in enumerate(records):
        by_video.setdefault(record.video, []).append(t)
    lookup = {name: i for i, name in enumerate(classes)}
    videos = sorted(by_video)
    decisions = [
        aggregate.decide_video(
            [track_probs[t] for t in by_video[v]], classes, unknown_threshold=unknown_threshold
        )
        for v in videos
    ]
    labels = np.array([lookup[records[by_video[v][0]].label] for v in videos], dtype=np.int64)
    probs = np.stack([d.probs for d in decisions])
    return VideoResults(videos, labels, probs, decisions)


def _level_reports(
    windows: WindowPredictions,
    video: VideoResults,
    records: Sequence[TrackRecord],
    classes: Sequence[str],
) -> dict[str, Any]:
    closed_set = np.array([d.class_index for d in video.decisions], dtype=np.int64)
    report_video = classification_report(video.labels, closed_set, video.probs, classes)
    report_video["unknown_generator_rate"] = float(np.mean([d.is_unknown for d in video.decisions]))
    clip_pred = windows.probs.argmax(axis=1)
    return {
        "clip": classification_report(windows.labels, clip_pred, windows.probs, classes),
        "video": report_video,
        "n_tracks": len(records),
    }


def evaluate(
    model: FAME,
    meta: CheckpointMeta,
    cache_dir: str | Path,
    records: Sequence[TrackRecord],
    *,
    stride: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    figures_dir: str | Path | None = None,
    progress: bool = True,
    precision: Precision = "auto",
    int8_encoder: Int8Encoder | None = None,
) -> dict[str, Any]:
    """The JSON report; with ``figures_dir``, confusion-matrix PNGs are written there."""
    if not records:
        raise ValueError("nothing to evaluate: no track records")
    classes = meta.classes
    stride_frames = _window_stride(model, stride)
    windows = _predict_records(
        model,
        records,
        classes,
        cache_dir,
        stride_frames,
        batch_size=batch_size,
        device=device,
        progress=progress,
        precision=precision,
        int8_encoder=int8_encoder,
    )
    tracks = windows.track_probs(len(records))
    video = video_results(records, tracks, classes, meta.unknown_threshold)
    report: dict[str, Any] = {
        "checkpoint_sha256": meta.sha256,
        "model_name": meta.model_name,
        "classes": list(classes),
        "stride_frames": stride_frames,
        "precision": resolve_precision(precision, torch.device(device), int8_encoder is not None),
        **_level_reports(windows, video, records, classes),
        "by_crf": {},
    }
    for crf in sorted({r.crf for r in records if r.crf is not None}):
        keep = np.array([r.crf == crf for r in records])
        sub_records = [r for r, k in zip(records, keep, strict=True) if k]
        window_keep = keep[windows.tracks]
        sub_windows = WindowPredictions(
            windows.probs[window_keep],
            windows.labels[window_keep],
            windows.tracks[window_keep],
            windows.frames[window_keep],
            windows.attention[window_keep],
        )
        sub_video = video_results(sub_records, tracks[keep], classes, meta.unknown_threshold)
        report["by_crf"][str(crf)] = _level_reports(sub_windows, sub_video, sub_records, classes)
    if figures_dir is not None:
        _write_figures(report, classes, Path(figures_dir))
    return report


def _write_figures(report: dict[str, Any], classes: Sequence[str], figures_dir: Path) -> None:
    from fame.plots import plot_confusion

    for level in ("clip", "video"):
        path = plot_confusion(
            report[level]["confusion_matrix"],
            classes,
            figures_dir / f"confusion_{level}.png",
            title=f"{level}-level confusion ({report['model_name']})",
        )
        report[level]["confusion_png"] = str(path)


def open_set_report(
    model: FAME,
    meta: CheckpointMeta,
    cache_dir: str | Path,
    records: Sequence[TrackRecord],
    held_out: str,
    *,
    stride: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
    precision: Precision = "auto",
    int8_encoder: Int8Encoder | None = None,
) -> dict[str, Any]:
    """How well the unknown-generator score separates videos of a generator the model never saw
    (`held_out`, positives) from videos of the generators it knows (negatives).

    The score is ``1 - max(p(known generator))`` of the video's deciding track: low confidence in
    every known generator means "made by something else". Reported as AUROC (overall and per CRF)
    and as the rate at which the checkpoint's calibrated threshold flags each group."""
    classes = list(meta.classes)
    if held_out in classes:
        raise ValueError(f"{held_out!r} is one of the checkpoint's classes: not held out")
    generators = [i for i, name in enumerate(classes) if name != aggregate.REAL_LABEL]
    fakes = [
        r
        for r in records
        if r.label == held_out or (r.label in classes and r.label != aggregate.REAL_LABEL)
    ]
    if not any(r.label == held_out for r in fakes):
        raise ValueError(f"no {held_out!r} tracks to evaluate")
    stand_in = classes[generators[0]]  # the dataset needs a known label; it is not used
    scored = [dataclasses.replace(r, label=stand_in) if r.label == held_out else r for r in fakes]
    windows = _predict_records(
        model,
        scored,
        classes,
        cache_dir,
        _window_stride(model, stride),
        batch_size=batch_size,
        device=device,
        progress=progress,
        precision=precision,
        int8_encoder=int8_encoder,
    )
    video = video_results(scored, windows.track_probs(len(scored)), classes, meta.unknown_threshold)
    original = {r.video: (r.label, r.crf) for r in fakes}
    unknown = np.array([original[v][0] == held_out for v in video.videos])
    score = 1.0 - video.probs[:, generators].max(axis=1)
    flagged = np.array([d.is_unknown for d in video.decisions])

    def summary(keep: NDArray[np.bool_]) -> dict[str, Any]:
        return {
            "auroc": metrics.binary_auc(unknown[keep], score[keep]),
            "n_held_out_videos": int(unknown[keep].sum()),
            "n_known_videos": int((~unknown[keep]).sum()),
            "flagged_unknown_rate_held_out": float(flagged[keep & unknown].mean()),
            "flagged_unknown_rate_known": float(flagged[keep & ~unknown].mean()),
        }

    crfs = np.array([original[v][1] if original[v][1] is not None else -1 for v in video.videos])
    return {
        "held_out_class": held_out,
        "score": "1 - max known-generator probability (video's deciding track)",
        "unknown_threshold": meta.unknown_threshold,
        **summary(np.ones(len(unknown), dtype=bool)),
        "by_crf": {str(c): summary(crfs == c) for c in sorted(set(crfs.tolist())) if c >= 0},
    }
