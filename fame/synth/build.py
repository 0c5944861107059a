"""`fame synth build`: real one-person videos in, a DFDM-layout attribution benchmark out.

    <out>/crf0/idSS_idTT_<scene>_<model>.mp4   SS's face swapped onto TT's video by <model>
    <out>/crf0/idTT_idTT_<scene>_real.mp4      TT's video through the same encoder
    <out>/crf10/..., <out>/crf23/...           the same videos at CRF 10 and 23
    <out>/manifest.json                        seeds, preset, losses, identities, pairs, hashes

Identities are numbered ``id00``, ``id01``, ... in the sorted order of the input file names. The
pipeline around the networks (`aligned`, `compositing`, `encode`) is the same for every
generator; only the network from `generators` changes. Each swap group gets its own instance of
every architecture, trained on that group's people alone (as DFDM trained one model per swap):
a test split of other groups then holds both unseen people and unseen generator instances, and
training sees several instances per architecture.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fame.faces.detector import FaceDetector
from fame.synth.aligned import AlignedVideo, align_video
from fame.synth.compositing import face_mask, match_colour, paste_face
from fame.synth.encode import sha256_of, write_h264
from fame.synth.generators import GENERATOR_NAMES, FaceSwapModel, build_generator, scaled_spec
from fame.synth.presets import CRF_LEVELS, SynthPreset
from fame.synth.training import deterministic_torch, render_identity, train_generator

REAL_MODEL = "real"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "fame-synth/2"  # 2: one generator instance per swap group
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
MIN_FACE_FRAMES = 4
MAX_SWAP_GROUPS = 50  # instance seeds are seed * 1000 + 50 * generator + group: unique below this


@dataclass(frozen=True)
class Pair:
    """One rendered scene: ``source``'s face on ``target``'s frames ``[start, stop)``."""

    source: int
    target: int
    scene: int
    start: int
    stop: int


@dataclass
class Identity:
    name: str
    video: Path
    aligned: AlignedVideo


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]
    identities: list[Identity] = field(default_factory=list)  # the aligned inputs, in memory


def identity_name(index: int) -> str:
    return f"id{index:02d}"


def video_name(pair: Pair, model: str) -> str:
    """DFDM's ``<src>_<tgt>_<scene>_<model>.mp4``; a real video is its own source."""
    return f"{identity_name(pair.source)}_{identity_name(pair.target)}_{pair.scene:04d}_{model}.mp4"


def list_face_videos(faces_dir: Path, limit: int | None) -> list[Path]:
    if not faces_dir.is_dir():
        raise FileNotFoundError(f"faces folder not found: {faces_dir}")
    videos = sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if limit is not None:
        videos = videos[:limit]
    if len(videos) < 2:
        raise ValueError(f"need at least 2 one-person videos in {faces_dir}, found {len(videos)}")
    return videos


def swap_groups(count: int, group_size: int) -> list[list[int]]:
    """Identities in consecutive groups of `group_size` (the last absorbs the remainder): faces
    are swapped only within a group, so groups are identity-disjoint units that train, val and
    test splits can take whole. Fewer than two groups' worth of identities make one group."""
    if count < 2 * group_size:
        return [list(range(count))]
    starts = list(range(0, count - count % group_size, group_size))
    groups = [list(range(start, start + group_size)) for start in starts]
    groups[-1].extend(range(starts[-1] + group_size, count))
    return groups


def plan_pairs(identities: list[Identity], preset: SynthPreset) -> list[Pair]:
    """Every target's scenes, each swapped with the next ``sources_per_target`` identities of its
    swap group (cyclically), so within a group every identity is a source and a target equally
    often and no pair crosses groups."""
    pairs = []
    for group in swap_groups(len(identities), preset.sources_per_target + 1):
        sources = min(preset.sources_per_target, len(group) - 1)
        for position, target in enumerate(group):
            frames = len(identities[target].aligned.frames)
            scenes = max(1, min(preset.scenes_per_video, frames // preset.frames_per_scene))
            for scene in range(scenes):
                start = scene * preset.frames_per_scene
                stop = min(frames, start + preset.frames_per_scene)
                for step in range(1, sources + 1):
                    source = group[(position + step) % len(group)]
                    pairs.append(Pair(source, target, scene, start, stop))
    return pairs


def render_pair(
    identities: list[Identity], pair: Pair, swapped_crops: np.ndarray
) -> list[np.ndarray]:
    """Target frames with the generated face (already rendered as ``pair.source``) colour-
    matched and blended in; frames without a detected face pass through unchanged."""
    aligned = identities[pair.target].aligned
    mask = face_mask()
    frames = []
    for i in range(pair.start, pair.stop):
        frame = aligned.frames[i]
        if aligned.has_face[i]:
            face = match_colour(swapped_crops[i], aligned.crops[i], mask)
            frame = paste_face(frame, face, aligned.matrices[i])
        frames.append(frame)
    return frames


class SynthBuilder:
    """One build; `run` does align -> (train -> render -> encode) per generator -> manifest."""

    def __init__(
        self,
        faces_dir: Path,
        out: Path,
        preset: SynthPreset,
        seed: int,
        detector: FaceDetector,
        *,
        generators: tuple[str, ...] = GENERATOR_NAMES,
        identities: int | None = None,
        max_frames: int | None = None,
    ) -> None:
        unknown = set(generators) - set(GENERATOR_NAMES)
        if unknown:
            raise ValueError(f"unknown generators {sorted(unknown)}; known: {GENERATOR_NAMES}")
        if max_frames is not None and max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        self.faces_dir, self.out, self.preset, self.seed = faces_dir, out, preset, seed
        self.detector = detector
        self.generators = generators
        self.identity_limit = identities if identities is not None else preset.identities
        self.max_frames = max_frames or preset.frames_per_video
        use_cuda = preset.prefer_cuda and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.identities: list[Identity] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.timings_s: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}

    def run(self) -> BuildResult:
        started, started_cpu = time.perf_counter(), time.process_time()
        with self._timed("align"):
            identities = self.identities = self._align_identities()
        pairs = plan_pairs(identities, self.preset)
        with self._timed("encode_real"):
            self._encode_real(identities, pairs)
        groups = swap_groups(len(identities), self.preset.sources_per_target + 1)
        generator_logs = {}
        for index, name in enumerate(self.generators):
            generator_logs[name] = self._build_generator(index, name, identities, pairs, groups)
        self.timings_s["total"] = time.perf_counter() - started
        self.cpu_s["total"] = time.process_time() - started_cpu
        manifest = self._manifest(identities, pairs, generator_logs)
        (self.out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        return BuildResult(self.out, manifest, identities)

    def _align_identities(self) -> list[Identity]:
        identities = []
        videos = list_face_videos(self.faces_dir, self.identity_limit)
        groups = swap_groups(len(videos), self.preset.sources_per_target + 1)
        if len(groups) > MAX_SWAP_GROUPS:
            raise ValueError(
                f"{len(videos)} identities make {len(groups)} swap groups, more than "
                f"{MAX_SWAP_GROUPS}: use --identities to build from fewer people"
            )
        for index, path in enumerate(tqdm(videos, desc="detect+align", unit="video")):
            aligned = align_video(path, self.detector, self.max_frames, self.preset.max_side_px)
            if int(aligned.has_face.sum()) < MIN_FACE_FRAMES:
                raise ValueError(
                    f"{path.name}: faces in {int(aligned.has_face.sum())} frames, "
                    f"need at least {MIN_FACE_FRAMES}"
                )
            identities.append(Identity(identity_name(index), path, aligned))
        return identities

    def _encode_real(self, identities: list[Identity], pairs: list[Pair]) -> None:
        scenes = sorted({(p.target, p.scene, p.start, p.stop) for p in pairs})
        for target, scene, start, stop in tqdm(scenes, desc="encode real", unit="video"):
            pair = Pair(target, target, scene, start, stop)
            frames = list(identities[target].aligned.frames[start:stop])
            self._encode(pair, REAL_MODEL, frames)

    def _build_generator(
        self,
        index: int,
        name: str,
        identities: list[Identity],
        pairs: list[Pair],
        groups: list[list[int]],
    ) -> dict[str, Any]:
        """One instance of architecture ``name`` per swap group: train, render, encode."""
        instances = [
            self._build_instance(index, name, group_index, group, identities, pairs)
            for group_index, group in enumerate(groups)
        ]
        spec = scaled_spec(name, self.preset.width_divisor)
        return {
            "input_px": spec.input_px,
            "output_px": spec.output_px,
            "spec": {k: v for k, v in vars(spec).items() if k != "name"},
            "train_steps": self.preset.train_steps,
            "instances": instances,
        }

    def _build_instance(
        self,
        index: int,
        name: str,
        group_index: int,
        group: list[int],
        identities: list[Identity],
        pairs: list[Pair],
    ) -> dict[str, Any]:
        """Seeds are ``seed * 1000 + 50 * generator + group``: every instance draws its own."""
        instance_seed = self.seed * 1000 + 50 * index + group_index
        with deterministic_torch(instance_seed, self.preset.torch_threads):
            model = build_generator(name, len(group), self.preset.width_divisor)
            rng = np.random.default_rng(instance_seed)
            faces = [identities[i].aligned.face_crops for i in group]
            with self._timed(f"train_{name}"):
                log = train_generator(model, faces, self.preset, rng, self.device)
            members = set(group)
            with self._timed(f"render_encode_{name}"):
                self._render(
                    model,
                    name,
                    identities,
                    [p for p in pairs if p.target in members],
                    {identity: local for local, identity in enumerate(group)},
                )
        return {
            "group": [identity_name(i) for i in group],
            "seed": instance_seed,
            "parameters": sum(p.numel() for p in model.parameters()),
            "epoch_losses": log.epoch_losses,
        }

    def _render(
        self,
        model: FaceSwapModel,
        name: str,
        identities: list[Identity],
        pairs: list[Pair],
        local: dict[int, int],
    ) -> None:
        """``local`` maps a global identity index to its decoder in this group's ``model``."""
        swapped: dict[tuple[int, int], np.ndarray] = {}
        for pair in tqdm(pairs, desc=f"render {name}", unit="video"):
            key = (pair.source, pair.target)
            if key not in swapped:
                crops = identities[pair.target].aligned.crops
                swapped[key] = render_identity(model, crops, local[pair.source], self.device)
            self._encode(pair, name, render_pair(identities, pair, swapped[key]))

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Wall and process CPU seconds per stage, summed over repeats (the per-group instances);
        CPU time extrapolates on a shared machine."""
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.timings_s[stage] = self.timings_s.get(stage, 0.0) + time.perf_counter() - started
            self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + time.process_time() - started_cpu

    def _encode(self, pair: Pair, model: str, frames: list[np.ndarray]) -> None:
        fps = self.identities[pair.target].aligned.fps
        for crf in CRF_LEVELS:
            relative = Path(f"crf{crf}") / video_name(pair, model)
            path = self.out / relative
            write_h264(path, frames, fps, crf, self.preset.x264_preset)
            self.files[relative.as_posix()] = {
                "sha256": sha256_of(path),
                "label": model,
                "crf": crf,
                "source": identity_name(pair.source),
                "target": identity_name(pair.target),
                "scene": pair.scene,
                "frames": len(frames),
            }

    def _manifest(
        self, identities: list[Identity], pairs: list[Pair], generators: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "seed": self.seed,
            "preset": self.preset.as_dict(),
            "device": self.device.type,
            "torch": torch.__version__,
            "crf_levels": list(CRF_LEVELS),
            "detector": getattr(self.detector, "name", type(self.detector).__name__),
            "identities": {
                identity.name: {
                    "video": identity.video.name,
                    "sha256": sha256_of(identity.video),
                    "frames": len(identity.aligned.frames),
                    "face_frames": int(identity.aligned.has_face.sum()),
                    "fps": str(identity.aligned.fps),
                    "size": list(identity.aligned.frames.shape[2:0:-1]),
                }
                for identity in identities
            },
            "pairs": [
                {
                    "source": identity_name(p.source),
                    "target": identity_name(p.target),
                    "scene": p.scene,
                    "frames": [p.start, p.stop],
                }
                for p in pairs
            ],
            "generators": generators,
            "files": dict(sorted(self.files.items())),
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
            "cpu_s": {k: round(v, 2) for k, v in self.cpu_s.items()},
        }
