"""The five face-swap autoencoders of DFDM, as one table and two model classes.

DFDM (Khormali et al.) rendered its fakes with the same Faceswap pipeline and changed only the
network; these reproduce the ways the networks differ:

| name        | input -> output | how it differs                                           |
|-------------|-----------------|----------------------------------------------------------|
| faceswap    | 64 -> 64        | baseline: 4 stride-2 convs, dense bottleneck, upscalers  |
| lightweight | 64 -> 64        | smaller encoder (3 convs) and bottleneck                 |
| iae         | 64 -> 64        | shared + per-identity intermediate layers, one decoder   |
| dfaker      | 64 -> 128       | one more upscaler and residual blocks in the decoder     |
| dfl-h128    | 128 -> 128      | 128-px input, 8x8 latent grid, wider decoder             |

Channel counts are the originals divided by ``width_divisor`` (1 = DFDM-sized, for the GPU).
Every model maps faces in [0, 1] to faces in [0, 1] and renders identity ``k`` with
``model(x, k)``: training reconstructs identity k's faces through its own decoder; a swap feeds
identity A's face and asks for identity B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GENERATOR_NAMES = ("faceswap", "lightweight", "iae", "dfaker", "dfl-h128")
_MIN_CHANNELS = 4


@dataclass(frozen=True)
class GeneratorSpec:
    """One architecture at DFDM size. The bottleneck is a dense layer whose output is reshaped
    to a ``latent_channels`` x ``latent_px`` grid; each decoder stage doubles the size."""

    name: str
    input_px: int
    output_px: int
    encoder_channels: tuple[int, ...]
    dense_units: int
    latent_px: int
    latent_channels: int
    decoder_channels: tuple[int, ...]
    residual_blocks: bool = False
    shared_intermediate: bool = False


SPECS: dict[str, GeneratorSpec] = {
    spec.name: spec
    for spec in (
        GeneratorSpec("faceswap", 64, 64, (128, 256, 512, 1024), 1024, 4, 1024, (256, 128, 64)),
        GeneratorSpec("lightweight", 64, 64, (128, 256, 512), 512, 4, 512, (256, 128, 64)),
        GeneratorSpec(
            "iae", 64, 64, (128, 256, 512, 1024), 256, 4, 512, (512, 256, 128, 64),
            shared_intermediate=True,
        ),
        GeneratorSpec(
            "dfaker", 64, 128, (128, 256, 512, 1024), 1024, 4, 1024, (512, 256, 128, 64),
            residual_blocks=True,
        ),
        GeneratorSpec("dfl-h128", 128, 128, (128, 256, 512, 1024), 512, 8, 512, (512, 256, 128)),
    )
}  # fmt: skip


# --------------------------------------------------------------------------- blocks


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Faceswap's downscaler: 5x5 stride-2 convolution, leaky ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2), nn.LeakyReLU(0.1)
    )


def _upscale(in_channels: int, out_channels: int) -> nn.Sequential:
    """Faceswap's upscaler: 3x3 convolution to 4x the channels, then pixel shuffle (x2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels * 4, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.PixelShuffle(2),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(x + self.body(x))
        return out


class _Dense(nn.Module):
    """Flattened features -> dense bottleneck -> a ``channels`` x ``px`` x ``px`` grid."""

    def __init__(self, in_features: int, units: int, channels: int, px: int) -> None:
        super().__init__()
        self.grid = (channels, px, px)
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, units), nn.Linear(units, channels * px * px)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid: torch.Tensor = self.layers(x).view(x.shape[0], *self.grid)
        return grid


def _convs(channels: tuple[int, ...]) -> nn.Sequential:
    return nn.Sequential(*(_conv(a, b) for a, b in zip((3, *channels), channels, strict=False)))


def _decoder(in_channels: int, channels: tuple[int, ...], residual: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip((in_channels, *channels), channels, strict=False):
        layers.append(_upscale(a, b))
        if residual:
            layers.append(_Residual(b))
    layers += [nn.Conv2d(channels[-1], 3, 5, padding=2), nn.Sigmoid()]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- models


class FaceSwapModel(nn.Module):
    """Shared interface: ``forward(faces [B, 3, input_px, input_px], identity) -> faces
    [B, 3, output_px, output_px]``, all in [0, 1]."""

    spec: GeneratorSpec
    identities: int

    @property
    def input_px(self) -> int:
        return self.spec.input_px

    @property
    def output_px(self) -> int:
        return self.spec.output_px

    def _check(self, faces: torch.Tensor, identity: int) -> None:
        if faces.shape[-3:] != (3, self.input_px, self.input_px):
            raise ValueError(
                f"{self.spec.name} takes [B, 3, {self.input_px}, {self.input_px}], "
                f"got {tuple(faces.shape)}"
            )
        if not 0 <= identity < self.identities:
            raise ValueError(f"identity {identity} not in [0, {self.identities})")


class SharedEncoderAutoencoder(FaceSwapModel):
    """The classic deepfake: one encoder (with the dense bottleneck) for every identity, one
    decoder per identity (faceswap, lightweight, dfaker, dfl-h128)."""

    def __init__(self, spec: GeneratorSpec, identities: int) -> None:
        super().__init__()
        self.spec, self.identities = spec, identities
        reduced_px = spec.input_px >> len(spec.encoder_channels)
        flat = spec.encoder_channels[-1] * reduced_px * reduced_px
        up_channels = spec.latent_channels // 2
        self.encoder = nn.Sequential(
            _convs(spec.encoder_channels),
            _Dense(flat, spec.dense_units, spec.latent_channels, spec.latent_px),
            _upscale(spec.latent_channels, up_channels),
        )
        self.decoders = nn.ModuleList(
            _decoder(up_channels, spec.decoder_channels, spec.residual_blocks)
            for _ in range(identities)
        )

    def forward(self, faces: torch.Tensor, identity: int) -> torch.Tensor:
        self._check(faces, identity)
        decoder = self.decoders[identity]
        decoded: torch.Tensor = decoder(self.encoder(faces))
        return decoded


class IntermediateAutoencoder(FaceSwapModel):
    """Faceswap's IAE: the encoder feeds a shared intermediate (``inter_both``) and one
    intermediate per identity; their concatenation goes through ONE shared decoder, so the
    identity lives in the per-identity intermediate layers."""

    def __init__(self, spec: GeneratorSpec, identities: int) -> None:
        super().__init__()
        self.spec, self.identities = spec, identities
        reduced_px = spec.input_px >> len(spec.encoder_channels)
        flat = spec.encoder_channels[-1] * reduced_px * reduced_px

        def inter() -> _Dense:
            return _Dense(flat, spec.dense_units, spec.latent_channels, spec.latent_px)

        self.encoder = _convs(spec.encoder_channels)
        self.inter_both = inter()
        self.inter_identity = nn.ModuleList(inter() for _ in range(identities))
        self.decoder = _decoder(2 * spec.latent_channels, spec.decoder_channels, False)

    def forward(self, faces: torch.Tensor, identity: int) -> torch.Tensor:
        self._check(faces, identity)
        features = self.encoder(faces)
        latent = torch.cat([self.inter_both(features), self.inter_identity[identity](features)], 1)
        decoded: torch.Tensor = self.decoder(latent)
        return decoded


# --------------------------------------------------------------------------- builder


def scaled_spec(name: str, width_divisor: int) -> GeneratorSpec:
    """Architecture ``name`` with every channel count divided by ``width_divisor``."""
    spec = SPECS[name]

    def div(channels: int) -> int:
        return max(_MIN_CHANNELS, channels // width_divisor)

    return GeneratorSpec(
        name=spec.name,
        input_px=spec.input_px,
        output_px=spec.output_px,
        encoder_channels=tuple(div(c) for c in spec.encoder_channels),
        dense_units=div(spec.dense_units),
        latent_px=spec.latent_px,
        latent_channels=div(spec.latent_channels),
        decoder_channels=tuple(div(c) for c in spec.decoder_channels),
        residual_blocks=spec.residual_blocks,
        shared_intermediate=spec.shared_intermediate,
    )


def build_generator(name: str, identities: int, width_divisor: int = 1) -> FaceSwapModel:
    """A freshly initialised generator (seed torch first for reproducible weights)."""
    if name not in SPECS:
        raise ValueError(f"unknown generator {name!r}; known: {GENERATOR_NAMES}")
    if identities < 2:
        raise ValueError(f"a face swap needs at least 2 identities, got {identities}")
    if width_divisor < 1:
        raise ValueError(f"width_divisor must be >= 1, got {width_divisor}")
    spec = scaled_spec(name, width_divisor)
    if spec.shared_intermediate:
        return IntermediateAutoencoder(spec, identities)
    return SharedEncoderAutoencoder(spec, identities)
