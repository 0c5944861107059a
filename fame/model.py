"""FAME: truncated VGG19 multilevel frame embeddings, a BiLSTM over the face track, attention.

One file in the timm order: config, blocks, model, builder, registry. Choices the paper leaves
open, and what we picked:

- Spatial: torchvision's VGG19 ``features`` (built with ``torchvision.models.vgg.make_layers``),
  cut after block ``vgg_cut`` (default 4: ``features[:27]``, i.e. through relu4_4, before pool4).
  Each block in ``levels`` (default 2, 3, 4) is tapped after its last ReLU, globally average
  pooled, projected by ``Linear -> level_dim`` and layer-normalised; the projections are
  concatenated into the per-frame embedding (``embed_dim = len(levels) * level_dim``). Layer norm
  keeps the levels on one scale and the values small enough for float16 storage in Redis.
  ``batch_norm=True`` builds VGG19-BN instead (``make_layers(batch_norm=True)``): without
  ImageNet weights plain VGG19's deep pooled features barely vary between images at init and
  training stalls at chance, so every model trained from scratch here uses it.
- Temporal: a bidirectional LSTM written as two one-directional LSTMs, so that the backward
  direction starts at each clip's last *valid* frame: padding never changes the logits.
- Attention: additive (Bahdanau) with a learned query, ``score_t = v^T tanh(W h_t)``, softmax over
  the valid frames; the context vector goes through dropout into a linear head.
- Baselines share everything but the temporal part: ``bilstm_mean`` (FAME without attention: mean
  of the BiLSTM outputs) and ``none`` (per-frame CNN, mean of the frame embeddings).

Masks mark valid frames and must be prefixes (valid frames first, padding at the end), which is
how `fame.data.clips` pads short tracks.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs as _VGG_CFGS
from torchvision.models.vgg import make_layers

log = logging.getLogger(__name__)

Temporal = Literal["bilstm_attention", "bilstm_mean", "none"]
TEMPORAL_MODES: tuple[str, ...] = ("bilstm_attention", "bilstm_mean", "none")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
VGG19_BN_WEIGHTS_FILE = "vgg19_bn-c79401a0.pth"
# The streaming service keeps the last T-1 frame embeddings per track in Redis as float16 within
# 32 KB: 15 * 1024 * 2 bytes = 30 KB leaves room for the record's other fields.
MAX_EMBED_DIM = 1024


@dataclass
class FAMEConfig:
    """Architecture of one FAME variant; weight metadata lives in the checkpoint, not here.

    ``pretrained``: None for random init, ``"imagenet"`` to look for torchvision's VGG19 weights
    under ``$TORCH_HOME/hub/checkpoints``, or an explicit path to that file. Never downloads.
    ``width_mult`` scales VGG channel counts (tiny test variants); ImageNet weights need 1.0.
    ``batch_norm`` uses VGG19-BN: from random init, plain VGG19's deep pooled features are nearly
    constant across images (measured: std 1e-6 at block 4) and training stalls at chance, so
    models trained without ImageNet weights use it (ImageNet init then reads vgg19_bn weights).
    """

    num_classes: int
    clip_len: int = 16
    img_size: int = 112
    vgg_cut: int = 4
    levels: tuple[int, ...] = (2, 3, 4)
    level_dim: int = 256
    lstm_hidden: int = 256
    attn_dim: int = 128
    dropout: float = 0.3
    temporal: Temporal = "bilstm_attention"
    width_mult: float = 1.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pretrained: str | None = "imagenet"
    batch_norm: bool = False

    def __post_init__(self) -> None:
        self.levels = tuple(int(level) for level in self.levels)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 1 <= self.vgg_cut <= 5:
            raise ValueError(f"vgg_cut must be a VGG19 block 1..5, got {self.vgg_cut}")
        if not self.levels or any(not 1 <= lv <= self.vgg_cut for lv in self.levels):
            raise ValueError(f"levels {self.levels} must be non-empty blocks in 1..{self.vgg_cut}")
        if sorted(set(self.levels)) != list(self.levels):
            raise ValueError(f"levels must be strictly increasing, got {self.levels}")
        if self.embed_dim > MAX_EMBED_DIM:
            raise ValueError(
                f"embed_dim {self.embed_dim} (= {len(self.levels)} levels x {self.level_dim}) "
                f"exceeds {MAX_EMBED_DIM}, the per-frame budget of the service's Redis state"
            )
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {self.temporal!r}")
        if self.clip_len < 1 or self.img_size < 32:
            raise ValueError(f"bad clip_len {self.clip_len} or img_size {self.img_size}")
        if self.width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {self.width_mult}")

    @property
    def embed_dim(self) -> int:
        return len(self.levels) * self.level_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FAMEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FAMEConfig fields {sorted(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------- blocks


class MultiLevelVGG(nn.Module):
    """VGG19 stages up to ``vgg_cut``; returns the concatenated pooled+projected level taps."""

    def __init__(self, config: FAMEConfig) -> None:
        super().__init__()
        cfg = _scaled_vgg19_cfg(config.width_mult)
        features = make_layers(cfg, batch_norm=config.batch_norm)
        self.init_source = _load_imagenet(features, config)
        ends = _block_ends(cfg, config.batch_norm)
        starts = (0, *ends[:-1])
        self.stages = nn.ModuleList(features[starts[b] : ends[b]] for b in range(config.vgg_cut))
        self.levels = config.levels
        channels = [_block_channels(b + 1, config.width_mult) for b in range(config.vgg_cut)]
        self.projections = nn.ModuleList(
            nn.Sequential(
                nn.Linear(channels[lv - 1], config.level_dim), nn.LayerNorm(config.level_dim)
            )
            for lv in config.levels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps: list[torch.Tensor] = []
        for block, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if block in self.levels:
                taps.append(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return torch.cat([proj(t) for proj, t in zip(self.projections, taps, strict=True)], dim=1)


class MaskedBiLSTM(nn.Module):
    """Bidirectional LSTM whose backward pass starts at each sequence's last valid frame."""

    def __init__(self, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.forward_lstm = nn.LSTM(input_dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(input_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        lengths = mask.sum(dim=1, keepdim=True)
        # Reverse each sequence within its valid prefix; padding positions stay in place.
        reverse = torch.where(steps < lengths, lengths - 1 - steps, steps)
        index = reverse.unsqueeze(-1)
        h_fwd, _ = self.forward_lstm(x)
        x_rev = torch.gather(x, 1, index.expand(-1, -1, x.shape[2]))
        h_rev, _ = self.backward_lstm(x_rev)
        h_bwd = torch.gather(h_rev, 1, index.expand(-1, -1, h_rev.shape[2]))
        return torch.cat([h_fwd, h_bwd], dim=2)


class AdditiveAttention(nn.Module):
    """``score_t = v^T tanh(W h_t)``; softmax over valid frames, exactly 0 on padding."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attn_dim)
        self.query = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.query(torch.tanh(self.proj(h))).squeeze(-1).float()
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)


def uniform_attention(mask: torch.Tensor) -> torch.Tensor:
    weights = mask.float()
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)


# --------------------------------------------------------------------------- model


class FAME(nn.Module):
    """Clips [B, T, 3, H, W] (normalised) -> (logits [B, C], attention [B, T]).

    The split API lets the streaming service embed each frame once and reuse the embeddings
    across overlapping windows: ``forward == classify_embeddings(embed_frames(...))``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: FAMEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = MultiLevelVGG(config)
        self.init_source: str = self.encoder.init_source
        dim = config.embed_dim
        self.temporal: MaskedBiLSTM | None = None
        self.attention: AdditiveAttention | None = None
        if config.temporal != "none":
            self.temporal = MaskedBiLSTM(dim, config.lstm_hidden)
            dim = 2 * config.lstm_hidden
        if config.temporal == "bilstm_attention":
            self.attention = AdditiveAttention(dim, config.attn_dim)
        self.num_features = dim
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(dim, config.num_classes)
        self.register_buffer("mean", torch.tensor(config.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def reset_classifier(self, num_classes: int) -> None:
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        self.head = nn.Linear(self.num_features, num_classes)

    def normalize(self, crops: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 crops [..., H, W, 3] or [..., 3, H, W] -> float [..., 3, H, W], normalised."""
        x = torch.as_tensor(crops).to(self.mean.device)
        if x.dtype != torch.uint8:
            raise ValueError(f"normalize expects uint8 crops, got {x.dtype}")
        if x.shape[-1] == 3:
            x = x.movedim(-1, -3)
        elif x.shape[-3] != 3:
            raise ValueError(f"crops need 3 channels first or last, got shape {tuple(x.shape)}")
        return (x.float() / 255.0 - self.mean) / self.std

    def embed_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, H, W] -> per-frame embeddings [N, embed_dim]."""
        embeddings: torch.Tensor = self.encoder(x)
        return embeddings

    def classify_embeddings(
        self, e: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings [B, T, D] (+ prefix mask [B, T]) -> (logits [B, C], attention [B, T])."""
        if mask is None:
            mask = torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)
        mask = mask.bool()
        if self.temporal is None:
            attention = uniform_attention(mask)
            context = (attention.unsqueeze(-1) * e.float()).sum(dim=1)
            return self.head(self.dropout(context.to(e.dtype))), attention
        h = self.temporal(e, mask)
        attention = uniform_attention(mask) if self.attention is None else self.attention(h, mask)
        context = (attention.unsqueeze(-1) * h.float()).sum(dim=1).to(h.dtype)
        return self.head(self.dropout(context)), attention

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps = x.shape[0], x.shape[1]
        e = self.embed_frames(x.flatten(0, 1)).view(batch, steps, -1)
        return self.classify_embeddings(e, mask)


# --------------------------------------------------------------------------- builder


def _scaled_vgg19_cfg(width_mult: float) -> list[str | int]:
    return [v if v == "M" else max(8, round(int(v) * width_mult)) for v in _VGG_CFGS["E"]]


def _block_ends(cfg: list[str | int], batch_norm: bool) -> tuple[int, ...]:
    """Index into ``features`` one past each block's last ReLU (before its max-pool)."""
    ends, index = [], 0
    for value in cfg:
        if value == "M":
            ends.append(index)
            index += 1
        else:
            index += 3 if batch_norm else 2
    return tuple(ends)


def _block_channels(block: int, width_mult: float) -> int:
    return max(8, round((64, 128, 256, 512, 512)[block - 1] * width_mult))


def imagenet_weights_path(pretrained: str | None, batch_norm: bool = False) -> Path | None:
    """Where ImageNet VGG19 (or VGG19-BN) weights would be read from, or None for random init."""
    if pretrained is None:
        return None
    if pretrained == "imagenet":
        name = VGG19_BN_WEIGHTS_FILE if batch_norm else VGG19_WEIGHTS_FILE
        return Path(torch.hub.get_dir()) / "checkpoints" / name
    return Path(os.path.expanduser(pretrained))


def _load_imagenet(features: nn.Sequential, config: FAMEConfig) -> str:
    """Loads torchvision VGG19(-BN) weights into ``features`` if present; returns the init
    source."""
    path = imagenet_weights_path(config.pretrained, config.batch_norm)
    if path is None:
        return "random"
    if config.width_mult != 1.0:
        raise ValueError(f"ImageNet weights need width_mult 1.0, got {config.width_mult}")
    if not path.is_file():
        log.warning(
            "VGG19 ImageNet weights not found at %s: the encoder starts from RANDOM init "
            "(put torchvision's %s there, or pass pretrained=PATH; nothing is downloaded)",
            path,
            path.name,
        )
        return "random"
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "features."
    features.load_state_dict(
        {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    )
    log.info("VGG19 encoder initialised from ImageNet weights at %s", path)
    return f"imagenet:{path}"


# name -> FAMEConfig overrides. Tiny variants keep tests fast; they never load ImageNet weights.
MODEL_REGISTRY: dict[str, dict[str, Any]] = {
    "fame": {},
    "fame_noattn": {"temporal": "bilstm_mean"},
    "cnn_mean": {"temporal": "none"},
    "fame_tiny": {
        "img_size": 64,
        "clip_len": 8,
        "width_mult": 0.125,
        "level_dim": 32,
        "lstm_hidden": 32,
        "attn_dim": 16,
        "pretrained": None,
    },
}
# The default size on VGG19-BN, to train from scratch where ImageNet weights are not at hand.
MODEL_REGISTRY["fame_bn"] = {"batch_norm": True, "pretrained": None}
# A CPU-trainable size (~1/50 of the default's FLOPs per frame) for machines without a GPU.
MODEL_REGISTRY["fame_small"] = {
    "img_size": 64,
    "width_mult": 0.25,
    "level_dim": 128,
    "lstm_hidden": 128,
    "attn_dim": 64,
    "pretrained": None,
    "batch_norm": True,
}
for _size in ("tiny", "small", "bn"):
    MODEL_REGISTRY[f"fame_noattn_{_size}"] = {
        **MODEL_REGISTRY[f"fame_{_size}"],
        "temporal": "bilstm_mean",
    }
    MODEL_REGISTRY[f"cnn_mean_{_size}"] = {**MODEL_REGISTRY[f"fame_{_size}"], "temporal": "none"}


def build_config(name: str, num_classes: int, **overrides: Any) -> FAMEConfig:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return FAMEConfig(num_classes=num_classes, **{**MODEL_REGISTRY[name], **overrides})


def create_model(name_or_config: str | FAMEConfig, num_classes: int, **overrides: Any) -> FAME:
    """A registered variant by name (or an explicit config), with field overrides."""
    if isinstance(name_or_config, FAMEConfig):
        config = dataclasses.replace(name_or_config, num_classes=num_classes, **overrides)
    else:
        config = build_config(name_or_config, num_classes, **overrides)
    return FAME(config)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_frame(config: FAMEConfig) -> float:
    """Forward FLOPs of one clip (encoder and temporal head) divided by its length."""
    from torch.utils.flop_counter import FlopCounterMode

    model = FAME(dataclasses.replace(config, pretrained=None)).eval()
    x = torch.zeros(1, config.clip_len, 3, config.img_size, config.img_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / config.clip_len
