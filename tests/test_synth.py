"""Unit tests of the synth pieces that need no shared data: networks, mask, blending, encoder."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fame.synth.aligned import CROP_PX, crop_template
from fame.synth.compositing import face_mask, mask_in_frame, match_colour, paste_face
from fame.synth.encode import sha256_of, write_h264
from fame.synth.generators import (
    GENERATOR_NAMES,
    SPECS,
    IntermediateAutoencoder,
    SharedEncoderAutoencoder,
    build_generator,
)
from fame.synth.presets import PRESETS
from fame.synth.training import render_identity, train_generator
from fame.synth.warp import random_warp
from tests.media import read_frames

EXPECTED_PX = {
    "faceswap": (64, 64),
    "lightweight": (64, 64),
    "iae": (64, 64),
    "dfaker": (64, 128),
    "dfl-h128": (128, 128),
}


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_generator_resolutions(name: str) -> None:
    model = build_generator(name, identities=3, width_divisor=16)
    input_px, output_px = EXPECTED_PX[name]
    assert (model.input_px, model.output_px) == (input_px, output_px)
    with torch.no_grad():
        out = model(torch.rand(2, 3, input_px, input_px), 2)
    assert out.shape == (2, 3, output_px, output_px)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="takes"):
        model(torch.rand(2, 3, input_px + 8, input_px + 8), 0)
    with pytest.raises(ValueError, match="identity 3"):
        model(torch.rand(1, 3, input_px, input_px), 3)


@pytest.mark.parametrize("width_divisor", [1, 16])
def test_generators_differ_in_size_the_dfdm_way(width_divisor: int) -> None:
    with torch.device("meta"):
        models = {n: build_generator(n, 2, width_divisor) for n in GENERATOR_NAMES}
    counts = {n: _parameters(m) for n, m in models.items()}
    assert len(set(counts.values())) == len(counts), counts
    assert counts["lightweight"] < counts["faceswap"]
    assert counts["faceswap"] < counts["dfaker"]
    assert len(SPECS["lightweight"].encoder_channels) < len(SPECS["faceswap"].encoder_channels)
    assert len(SPECS["dfaker"].decoder_channels) > len(SPECS["faceswap"].decoder_channels)


def test_identity_parts_are_per_identity_and_the_rest_is_shared() -> None:
    plain = build_generator("faceswap", 3, 16)
    assert isinstance(plain, SharedEncoderAutoencoder)
    assert len(plain.decoders) == 3
    iae = build_generator("iae", 3, 16)
    assert isinstance(iae, IntermediateAutoencoder)
    assert len(iae.inter_identity) == 3
    faces = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.equal(iae(faces, 0), iae(faces, 1))
        assert not torch.equal(plain(faces, 0), plain(faces, 1))


def test_build_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("stylegan", 2)
    with pytest.raises(ValueError, match="at least 2 identities"):
        build_generator("faceswap", 1)
    with pytest.raises(ValueError, match="width_divisor"):
        build_generator("faceswap", 2, 0)


def test_preset_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="train_steps"):
        dataclasses.replace(PRESETS["tiny"], train_steps=0)
    with pytest.raises(ValueError, match="at least 2 identities"):
        dataclasses.replace(PRESETS["tiny"], identities=1)


def test_face_mask_covers_the_inner_face_and_fades_out() -> None:
    mask = face_mask()
    assert mask.shape == (CROP_PX, CROP_PX)
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    points = crop_template()
    for x, y in points:  # eyes, nose and mouth corners are fully replaced
        assert mask[round(y), round(x)] > 0.99
    assert mask[0].max() == 0.0 and mask[-1].max() == 0.0
    assert mask[:, 0].max() == 0.0 and mask[:, -1].max() == 0.0
    assert float(((mask > 0) & (mask < 1)).mean()) > 0.0  # a feathered edge exists


def _smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def test_paste_face_changes_only_pixels_under_the_mask() -> None:
    frame = _smooth_image(0, 240, 320)
    face = np.full((CROP_PX, CROP_PX, 3), 255, np.uint8)
    # A similarity placing a 100-px face around (160, 120), slightly rotated.
    matrix = cv2.getRotationMatrix2D((160.0, 120.0), 12.0, CROP_PX / 100.0)
    matrix[:, 2] += np.array([CROP_PX / 2 - 160.0, CROP_PX / 2 - 120.0])
    out = paste_face(frame, face, matrix)
    alpha = mask_in_frame(frame.shape, matrix)
    outside = alpha == 0.0
    inside = alpha > 0.99
    assert outside.mean() > 0.7 and inside.sum() > 1000
    assert np.array_equal(out[outside], frame[outside])
    assert np.abs(out[inside].astype(int) - frame[inside]).mean() > 20


def test_match_colour_moves_statistics_to_the_target() -> None:
    mask = face_mask()
    generated = _smooth_image(1, CROP_PX, CROP_PX)
    target = np.clip(_smooth_image(2, CROP_PX, CROP_PX).astype(int) // 2 + 100, 0, 255)
    target = target.astype(np.uint8)
    matched = match_colour(generated, target, mask)
    inside = mask > 0.5

    def lab_mean(image: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(float)
        return np.asarray(lab[inside].mean(0))

    before = np.abs(lab_mean(generated) - lab_mean(target)).max()
    after = np.abs(lab_mean(matched) - lab_mean(target)).max()
    assert after < 3.0 < before


def test_random_warp_is_seeded_and_keeps_shapes() -> None:
    crops = np.stack([_smooth_image(i, CROP_PX, CROP_PX) for i in range(3)])
    warped_a, target_a = random_warp(crops, np.random.default_rng(5))
    warped_b, target_b = random_warp(crops, np.random.default_rng(5))
    assert warped_a.shape == target_a.shape == (3, CROP_PX, CROP_PX, 3)
    assert np.array_equal(warped_a, warped_b) and np.array_equal(target_a, target_b)
    assert not np.array_equal(warped_a, target_a)
    assert warped_a.min() >= 0.0 and warped_a.max() <= 1.0


def _train_once(seed: int) -> tuple[list[float], np.ndarray]:
    preset = dataclasses.replace(PRESETS["tiny"], train_steps=3, epoch_steps=1, batch_size=2)
    faces = [
        np.stack([_smooth_image(10 * k + i, CROP_PX, CROP_PX) for i in range(4)]) for k in (0, 1)
    ]
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = build_generator("lightweight", 2, 16)
    log = train_generator(model, faces, preset, np.random.default_rng(seed), torch.device("cpu"))
    return log.epoch_losses, render_identity(model, faces[0], 1, torch.device("cpu"))


def test_training_is_deterministic_given_the_seed() -> None:
    threads = torch.get_num_threads()
    try:
        losses_a, swapped_a = _train_once(3)
        losses_b, swapped_b = _train_once(3)
        losses_c, _ = _train_once(4)
    finally:
        torch.set_num_threads(threads)
    assert len(losses_a) == 3 and all(np.isfinite(losses_a))
    assert losses_a == losses_b and np.array_equal(swapped_a, swapped_b)
    assert losses_a != losses_c
    assert swapped_a.shape == (4, CROP_PX, CROP_PX, 3) and swapped_a.dtype == np.uint8


def test_write_h264_round_trip_and_is_deterministic(tmp_path: Path) -> None:
    frames = [_smooth_image(i, 96, 128) for i in range(6)]
    errors = {}
    for crf in (0, 23):
        path = tmp_path / f"a{crf}.mp4"
        write_h264(path, frames, Fraction(25), crf, "ultrafast")
        decoded, fps = read_frames(path)
        assert len(decoded) == 6 and decoded[0].shape == (96, 128, 3) and fps == 25
        errors[crf] = np.abs(np.stack(decoded).astype(int) - np.stack(frames)).mean()
    # CRF 0 is lossless in YUV; what is left is the 4:2:0 chroma subsampling.
    assert errors[0] < 5.0 and errors[0] < errors[23] < 10.0
    write_h264(tmp_path / "b0.mp4", frames, Fraction(25), 0, "ultrafast")
    assert sha256_of(tmp_path / "a0.mp4") == sha256_of(tmp_path / "b0.mp4")
    with pytest.raises(ValueError, match="crf"):
        write_h264(tmp_path / "bad.mp4", frames, Fraction(25), 52, "ultrafast")


def test_swap_groups_partition_identities_and_pairs_stay_inside_them() -> None:
    from types import SimpleNamespace

    from fame.synth.build import plan_pairs, swap_groups
    from fame.synth.presets import PRESETS

    groups = swap_groups(13, 3)
    assert sorted(i for g in groups for i in g) == list(range(13))
    assert [len(g) for g in groups] == [3, 3, 3, 4]
    assert swap_groups(5, 3) == [[0, 1, 2, 3, 4]]
    identities = [SimpleNamespace(aligned=SimpleNamespace(frames=[None] * 200)) for _ in range(13)]
    pairs = plan_pairs(identities, PRESETS["small"])  # type: ignore[arg-type]
    group_of = {i: n for n, g in enumerate(groups) for i in g}
    assert pairs and all(group_of[p.source] == group_of[p.target] for p in pairs)
    assert all(p.source != p.target for p in pairs)


def test_too_many_swap_groups_are_refused_before_any_work(tmp_path: Path) -> None:
    """Instance seeds stay unique only up to MAX_SWAP_GROUPS groups: refuse more, up front."""
    from fame.synth.build import MAX_SWAP_GROUPS, SynthBuilder

    people = 3 * (MAX_SWAP_GROUPS + 1)
    for i in range(people):
        (tmp_path / f"person{i:03d}.mp4").write_bytes(b"")  # never opened: refused first
    builder = SynthBuilder(tmp_path, tmp_path / "out", PRESETS["small"], 1, detector=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="swap groups, more than 50: use --identities"):
        builder.run()
