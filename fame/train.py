"""Training loop for FAME and its baselines (the same code trains all registry variants).

AdamW with linear warm-up then cosine decay, gradient clipping, bf16 autocast on CUDA,
class-balanced random windows, early stopping on validation clip macro-F1. ``best.pt`` is a
regular checkpoint (`fame.checkpoint`); ``last.pt`` additionally holds the optimiser, scheduler
and history so that ``resume=True`` continues where a run stopped. Every random choice derives
from ``seed`` (and the epoch), so a run is reproducible where torch's kernels allow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from fame import aggregate
from fame.checkpoint import build_meta, save_checkpoint
from fame.data.cache import TrackRecord, TrackStore, fingerprint, read_index
from fame.data.clips import (
    RandomWindowClips,
    SlidingWindowClips,
    balanced_sampler,
    class_indices,
    to_model_input,
)
from fame.evaluate import classification_report, predict_windows
from fame.model import FAME, create_model
from fame.windows import window_stride

log = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
RESUME_STATE = "last.pt"


@dataclass
class TrainConfig:
    """``clips_per_epoch`` defaults to the number of training tracks; ``eval_stride`` to half a
    clip. ``model_overrides`` are `FAMEConfig` fields (e.g. ``{"clip_len": 8}``)."""

    model: str = "fame"
    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 5
    clips_per_epoch: int | None = None
    eval_stride: int | None = None
    num_workers: int = 0
    device: str = "auto"
    fp16_checkpoint: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # classes left out of training entirely (open-set experiments: the held-out generator)
    exclude_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.warmup_frac < 1:
            raise ValueError(f"bad lr {self.lr} or warmup_frac {self.warmup_frac}")


@dataclass
class TrainResult:
    best_checkpoint: Path
    best_val_macro_f1: float
    epochs_run: int
    history: list[dict[str, float]]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def split_records(records: Sequence[TrackRecord]) -> dict[str, list[TrackRecord]]:
    """Tracks by split; training needs a non-empty train and val split."""
    by_split: dict[str, list[TrackRecord]] = {"train": [], "val": [], "test": []}
    for record in records:
        if record.split not in by_split:
            raise ValueError(f"track {record.track_file} has split {record.split!r}")
        by_split[record.split].append(record)
    for needed in ("train", "val"):
        if not by_split[needed]:
            raise ValueError(f"the cache has no {needed!r} tracks (re-run `fame preprocess`)")
    return by_split


def warmup_cosine(
    total_steps: int, warmup_frac: float, min_factor: float = 0.01
) -> Callable[[int], float]:
    """LR factor per step: linear warm-up, then cosine down to ``min_factor``."""
    warmup = max(1, int(total_steps * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


class Trainer:
    """Holds the run's state; `fit` is the whole run, `train_epoch`/`validate` one step each."""

    def __init__(self, cache_dir: str | Path, out_dir: str | Path, config: TrainConfig) -> None:
        self.cache_dir = Path(cache_dir)
        self.out_dir = Path(out_dir)
        self.config = config
        self.device = resolve_device(config.device)
        _seed_everything(config.seed)
        self.splits = split_records(
            [r for r in read_index(self.cache_dir) if r.label not in config.exclude_classes]
        )
        self.classes = sorted({r.label for r in self.splits["train"]})
        self.fingerprint = fingerprint(self.cache_dir)
        self.model: FAME = create_model(
            config.model, len(self.classes), **config.model_overrides
        ).to(self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        store = TrackStore(self.cache_dir)
        clip_len = self.model.config.clip_len
        self.train_set = RandomWindowClips(
            self.splits["train"], store, self.classes, clip_len, seed=config.seed
        )
        stride = window_stride(clip_len, config.eval_stride)
        self.val_set = SlidingWindowClips(self.splits["val"], store, self.classes, clip_len, stride)
        self.clips_per_epoch = config.clips_per_epoch or len(self.train_set)
        steps_per_epoch = math.ceil(self.clips_per_epoch / config.batch_size)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(steps_per_epoch * config.epochs, config.warmup_frac)
        )
        self.epoch = 0
        self.best_f1 = -1.0
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------- one epoch

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        self.train_set.set_epoch(self.epoch)
        sampler = balanced_sampler(
            self.train_set.labels, self.clips_per_epoch, self.config.seed * 1000 + self.epoch
        )
        loader = DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        use_bf16 = self.device.type == "cuda"
        total_loss, seen, started = 0.0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{self.config.epochs}", unit="batch")
        for crops, mask, labels in bar:
            x = to_model_input(self.model, crops.to(self.device, non_blocking=True))
            x = x.contiguous()
            labels = labels.to(self.device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits, _ = self.model(x, mask.to(self.device))
            loss = F.cross_entropy(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            total_loss += loss.item() * len(labels)
            seen += len(labels)
            rate = seen / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", clips_per_s=f"{rate:.1f}")
        return {"train_loss": total_loss / max(seen, 1), "train_clips_per_s": rate}

    def validate(self) -> tuple[dict[str, Any], float]:
        """Clip-level report on the val split and the calibrated unknown threshold."""
        windows = predict_windows(
            self.model,
            self.val_set,
            batch_size=self.config.batch_size,
            device=self.device,
            progress=False,
        )
        report = classification_report(
            windows.labels, windows.probs.argmax(axis=1), windows.probs, self.classes
        )
        tracks = windows.track_probs(len(self.val_set.records))
        threshold = aggregate.calibrate_unknown_threshold(
            tracks, class_indices(self.val_set.records, self.classes), self.classes
        )
        return report, threshold

    # ----------------------------------------------------------------- whole run

    def fit(self) -> TrainResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "train_config.json").write_text(
            json.dumps(dataclasses.asdict(self.config), indent=2)
        )
        while self.epoch < self.config.epochs and self.bad_epochs < self.config.patience:
            stats = self.train_epoch()
            report, threshold = self.validate()
            stats.update(
                epoch=self.epoch + 1,
                val_accuracy=report["accuracy"],
                val_macro_f1=report["macro_f1"],
                lr=float(self.scheduler.get_last_lr()[0]),
            )
            self.history.append(stats)
            log.info("epoch %d: %s", self.epoch + 1, stats)
            if report["macro_f1"] > self.best_f1:
                self.best_f1 = report["macro_f1"]
                self.bad_epochs = 0
                self._save_best(report, threshold)
            else:
                self.bad_epochs += 1
            self.epoch += 1
            self._save_resume_state()
        return TrainResult(
            self.out_dir / BEST_CHECKPOINT, self.best_f1, len(self.history), self.history
        )

    def _save_best(self, report: dict[str, Any], threshold: float) -> None:
        meta = build_meta(
            self.model,
            self.config.model,
            self.classes,
            data_fingerprint=self.fingerprint,
            metrics={"epoch": self.epoch + 1, "val_clip": report},
            unknown_threshold=threshold,
        )
        save_checkpoint(
            self.out_dir / BEST_CHECKPOINT, self.model, meta, fp16=self.config.fp16_checkpoint
        )

    def _save_resume_state(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_f1": self.best_f1,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "classes": self.classes,
            "fingerprint": self.fingerprint,
        }
        tmp = self.out_dir / (RESUME_STATE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out_dir / RESUME_STATE)

    def resume(self) -> bool:
        """Loads ``last.pt`` if present (same classes and data required); True if it did."""
        path = self.out_dir / RESUME_STATE
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["classes"] != self.classes or state["fingerprint"] != self.fingerprint:
            raise ValueError(f"{path} was trained on other data or classes; use a new --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.best_f1 = state["best_f1"]
        self.bad_epochs = state["bad_epochs"]
        self.history = state["history"]
        log.info("resumed from %s at epoch %d", path, self.epoch)
        return True


def fit(
    cache_dir: str | Path, out_dir: str | Path, config: TrainConfig, *, resume: bool = False
) -> TrainResult:
    trainer = Trainer(cache_dir, out_dir, config)
    if resume:
        trainer.resume()
    return trainer.fit()
