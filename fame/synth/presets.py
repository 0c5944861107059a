"""How big a build is: frames, training steps, network width, encoder settings.

A preset is data, not code: every knob a build turns is here, and the chosen preset is written
into the manifest so a benchmark says how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

PresetName = Literal["tiny", "small", "full"]
CRF_LEVELS = (0, 10, 23)


@dataclass(frozen=True)
class SynthPreset:
    """``width_divisor`` divides every channel count of the DFDM-sized networks (1 = original).

    ``frames_per_scene`` frames per rendered video; each identity's video yields
    ``scenes_per_video`` scenes, and each scene is swapped with ``sources_per_target`` source
    identities. Training sees every detected face of the same frames.
    """

    name: PresetName
    identities: int | None
    scenes_per_video: int
    frames_per_scene: int
    max_side_px: int | None
    sources_per_target: int
    width_divisor: int
    train_steps: int
    batch_size: int
    learning_rate: float
    epoch_steps: int
    x264_preset: str
    torch_threads: int | None
    prefer_cuda: bool

    def __post_init__(self) -> None:
        for field in (
            "scenes_per_video",
            "frames_per_scene",
            "sources_per_target",
            "width_divisor",
            "train_steps",
            "batch_size",
            "epoch_steps",
        ):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.identities is not None and self.identities < 2:
            raise ValueError(f"a face swap needs at least 2 identities, got {self.identities}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    @property
    def frames_per_video(self) -> int:
        return self.scenes_per_video * self.frames_per_scene

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, SynthPreset] = {
    preset.name: preset
    for preset in (
        SynthPreset(
            name="tiny",
            identities=2,
            scenes_per_video=1,
            frames_per_scene=12,
            max_side_px=192,
            sources_per_target=1,
            width_divisor=16,
            train_steps=2,
            batch_size=4,
            learning_rate=5e-4,
            epoch_steps=1,
            x264_preset="ultrafast",
            torch_threads=1,
            prefer_cuda=False,
        ),
        SynthPreset(
            name="small",
            identities=None,
            scenes_per_video=2,
            frames_per_scene=40,
            max_side_px=384,
            sources_per_target=2,
            width_divisor=8,
            # 500 steps at 1e-3 (was 160 at 5e-4): final losses 0.15-0.32 instead of ~0.35, swaps
            # closer to faces, and the 13-person build still near 18 minutes on 2 cores. Steps
            # alone do not buy attribution: bench/synth_separability.py (docs/results.md).
            train_steps=500,
            batch_size=4,
            learning_rate=1e-3,
            epoch_steps=50,
            x264_preset="veryfast",
            torch_threads=None,
            prefer_cuda=False,
        ),
        SynthPreset(
            name="full",
            identities=None,
            scenes_per_video=4,
            frames_per_scene=64,
            max_side_px=None,
            sources_per_target=4,
            width_divisor=1,
            train_steps=20_000,
            batch_size=32,
            learning_rate=5e-5,
            epoch_steps=1000,
            x264_preset="medium",
            torch_threads=None,
            prefer_cuda=True,
        ),
    )
}
