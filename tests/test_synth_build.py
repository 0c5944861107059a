"""`fame synth build --preset tiny` end to end on two shared identities (skips without shared/)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fame.cli import main
from fame.data.adapters import DFDM_MODELS, dfdm
from fame.faces.detector import load_detector
from fame.synth.build import MANIFEST_NAME, REAL_MODEL, BuildResult, SynthBuilder
from fame.synth.compositing import mask_in_frame
from fame.synth.encode import sha256_of
from fame.synth.generators import GENERATOR_NAMES
from fame.synth.presets import CRF_LEVELS, PRESETS
from fame.synth.preview import COLUMNS, sample_grid
from tests.media import read_frames

SEED = 7
_NAME = re.compile(r"^(id\d\d)_(id\d\d)_(\d{4})_(.+)\.mp4$")


def _detector_path(shared: Path) -> Path:
    return shared / "models" / "scrfd_500m_bnkps.onnx"


@pytest.fixture(scope="module")
def build(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    builder = SynthBuilder(
        shared / "data" / "faces",
        tmp_path_factory.mktemp("synth_a"),
        PRESETS["tiny"],
        SEED,
        load_detector(_detector_path(shared), allow_fallback=False),
    )
    return builder.run()


@pytest.fixture(scope="module")
def cli_build(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_b")
    code = main(
        [
            "synth", "build", "--faces", str(shared / "data" / "faces"), "--out", str(out),
            "--preset", "tiny", "--seed", str(SEED), "--detector", str(_detector_path(shared)),
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_tree_has_dfdm_layout_for_every_crf_generator_and_real(build: BuildResult) -> None:
    expected_labels = {*GENERATOR_NAMES, REAL_MODEL}
    for crf in CRF_LEVELS:
        names = sorted(p.name for p in (build.out / f"crf{crf}").iterdir())
        parsed = [_NAME.match(n) for n in names]
        assert all(parsed), names
        labels = {m[4] for m in parsed if m}
        assert labels == expected_labels
        for match in parsed:
            assert match is not None
            source, target, model = match[1], match[2], match[4]
            assert (source == target) == (model == REAL_MODEL)
    assert sorted(p.name for p in build.out.iterdir()) == [
        *(f"crf{c}" for c in sorted(CRF_LEVELS, key=str)),
        MANIFEST_NAME,
    ]


def test_tree_reads_unchanged_with_the_dfdm_adapter(build: BuildResult) -> None:
    videos = dfdm(build.out)
    assert len(videos) == len(build.manifest["files"])
    assert {v.label for v in videos} == {*DFDM_MODELS, REAL_MODEL} == {*GENERATOR_NAMES, "real"}
    assert {v.crf for v in videos} == set(CRF_LEVELS)
    fakes = {v.identities for v in videos if v.label != REAL_MODEL}
    assert fakes == {("id00", "id01"), ("id01", "id00")}
    assert {v.identities for v in videos if v.label == REAL_MODEL} == {
        ("id00", "id00"),
        ("id01", "id01"),
    }


def test_videos_decode_and_manifest_hashes_match(build: BuildResult) -> None:
    files = build.manifest["files"]
    on_disk = {p.relative_to(build.out).as_posix() for p in build.out.rglob("*.mp4")}
    assert set(files) == on_disk
    frames_per_scene = PRESETS["tiny"].frames_per_scene
    for relative, info in files.items():
        path = build.out / relative
        assert sha256_of(path) == info["sha256"]
        frames, fps = read_frames(path)
        assert len(frames) == info["frames"] == frames_per_scene and fps > 0
    manifest = json.loads((build.out / MANIFEST_NAME).read_text())
    assert manifest["seed"] == SEED and manifest["preset"]["name"] == "tiny"
    assert set(manifest["identities"]) == {"id00", "id01"}
    for name, log in manifest["generators"].items():
        # two people make one swap group: one instance of each architecture
        (instance,) = log["instances"]
        assert instance["group"] == ["id00", "id01"], name
        assert len(instance["epoch_losses"]) == PRESETS["tiny"].train_steps, name
        assert all(np.isfinite(instance["epoch_losses"]))
    sizes = {log["instances"][0]["parameters"] for log in manifest["generators"].values()}
    assert len(sizes) == 5


def test_two_builds_with_one_seed_are_identical(build: BuildResult, cli_build: Path) -> None:
    first = json.loads((build.out / MANIFEST_NAME).read_text())
    other = json.loads((cli_build / MANIFEST_NAME).read_text())
    for key in ("generators", "pairs", "identities", "files"):
        assert other[key] == first[key], key


def test_swaps_change_the_face_and_nothing_else(build: BuildResult) -> None:
    """CRF 0 fakes against the CRF 0 real video of the same target scene: outside the mask
    (grown by 2 px for 4:2:0 chroma) every pixel matches; inside, the face changed."""
    identities = build.identities
    for model in GENERATOR_NAMES:
        for target in (0, 1):
            source = 1 - target
            fake, _ = read_frames(
                build.out / "crf0" / f"id{source:02d}_id{target:02d}_0000_{model}.mp4"
            )
            real, _ = read_frames(
                build.out / "crf0" / f"id{target:02d}_id{target:02d}_0000_{REAL_MODEL}.mp4"
            )
            aligned = identities[target].aligned
            changed_inside = []
            for i, (f, r) in enumerate(zip(fake, real, strict=True)):
                if not aligned.has_face[i]:
                    assert np.array_equal(f, r)
                    continue
                alpha = mask_in_frame(f.shape, aligned.matrices[i])
                grown = np.zeros_like(alpha, dtype=bool)
                ys, xs = np.nonzero(alpha > 0)
                for dy in (-2, 0, 2):
                    for dx in (-2, 0, 2):
                        grown[
                            np.clip(ys + dy, 0, alpha.shape[0] - 1),
                            np.clip(xs + dx, 0, alpha.shape[1] - 1),
                        ] = True
                assert np.array_equal(f[~grown], r[~grown]), (model, target, i)
                inside = alpha > 0.9
                changed_inside.append(np.abs(f[inside].astype(int) - r[inside]).mean())
            assert changed_inside and float(np.mean(changed_inside)) > 5.0, (model, changed_inside)


def test_preview_grid_has_a_column_per_class(build: BuildResult, tmp_path: Path) -> None:
    grid = sample_grid(build.out, crf=0, rows=2, tile_px=64)
    assert grid.shape[1] == 64 * len(COLUMNS)
    assert grid.shape[0] > 2 * 64


def test_every_swap_group_gets_its_own_generator_instance(shared: Path, tmp_path: Path) -> None:
    """Four people in groups of two: two faceswap instances, each trained on its group alone
    (its own seed, two decoders) and rendering only that group's swaps."""
    preset = dataclasses.replace(PRESETS["tiny"], sources_per_target=1, frames_per_scene=6)
    result = SynthBuilder(
        shared / "data" / "faces",
        tmp_path,
        preset,
        SEED,
        load_detector(_detector_path(shared), allow_fallback=False),
        generators=("faceswap",),
        identities=4,
    ).run()
    instances = result.manifest["generators"]["faceswap"]["instances"]
    assert [i["group"] for i in instances] == [["id00", "id01"], ["id02", "id03"]]
    assert len({i["seed"] for i in instances}) == 2
    assert instances[0]["parameters"] == instances[1]["parameters"]  # two decoders each
    fakes = {
        (info["source"], info["target"])
        for info in result.manifest["files"].values()
        if info["label"] == "faceswap"
    }
    assert fakes == {("id01", "id00"), ("id00", "id01"), ("id03", "id02"), ("id02", "id03")}
