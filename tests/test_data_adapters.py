"""Each layout adapter on a tiny fixture tree (placeholder files: only the names count)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fame.data import adapters
from fame.data.adapters import LabelledVideo, identity_disjoint_split


def _touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_dfdm_reads_models_crf_and_identities(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "crf0/id00_id01_scene_a_faceswap.mp4",
        "crf10/id00_id01_scene_a_dfl-h128.mp4",
        "23/id02_id03_talk_lightweight.mp4",
        "notes/readme.mp4",
    )
    videos = {v.path.relative_to(tmp_path).as_posix(): v for v in adapters.dfdm(tmp_path)}
    assert set(videos) == {
        "crf0/id00_id01_scene_a_faceswap.mp4",
        "crf10/id00_id01_scene_a_dfl-h128.mp4",
        "23/id02_id03_talk_lightweight.mp4",
    }
    swap = videos["crf0/id00_id01_scene_a_faceswap.mp4"]
    assert (swap.label, swap.crf, swap.identities) == ("faceswap", 0, ("id00", "id01"))
    assert videos["crf10/id00_id01_scene_a_dfl-h128.mp4"].label == "dfl-h128"
    assert videos["23/id02_id03_talk_lightweight.mp4"].crf == 23


def test_dfdm_reads_pristine_videos_as_real(tmp_path: Path) -> None:
    _touch(tmp_path, "crf23/id04_id04_0000_real.mp4", "crf23/id01_id04_0000_iae.mp4")
    videos = {v.path.name: v for v in adapters.dfdm(tmp_path)}
    real = videos["id04_id04_0000_real.mp4"]
    assert (real.label, real.identities, real.crf) == ("real", ("id04", "id04"), 23)
    assert videos["id01_id04_0000_iae.mp4"].label == "iae"


def test_dfdm_rejects_unknown_names(tmp_path: Path) -> None:
    _touch(tmp_path, "crf0/id00_id01_scene_stylegan.mp4")
    with pytest.raises(ValueError, match="stylegan"):
        adapters.dfdm(tmp_path)


def test_ffpp_reads_tree_and_official_splits(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "original_sequences/youtube/c23/videos/000.mp4",
        "original_sequences/youtube/c23/videos/003.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
        "manipulated_sequences/FaceShifter/c23/videos/003_000.mp4",
        "manipulated_sequences/Face2Face/c40/videos/000_003.mp4",
    )
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.json").write_text(json.dumps([["000", "003"]]))
    (tmp_path / "splits" / "test.json").write_text(json.dumps([["005", "007"]]))
    videos = adapters.ffpp(tmp_path)
    labels = sorted((v.path.name, v.label, v.identities, v.split) for v in videos)
    assert labels == [
        ("000.mp4", "real", ("000",), "train"),
        ("000_003.mp4", "deepfakes", ("000", "003"), "train"),
        ("003.mp4", "real", ("003",), "train"),
        ("003_000.mp4", "faceshifter", ("003", "000"), "train"),
    ]


def test_fakeavceleb_handles_the_shifted_header(tmp_path: Path) -> None:
    root = tmp_path / "FakeAVCeleb"
    (root).mkdir()
    (root / "meta_data.csv").write_text(
        "source,target1,target2,method,category,type,race,gender,path\n"
        "id00076,id00076,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,"
        "FakeAVCeleb/RealVideo-RealAudio/African/men/id00076\n"
        "id00166,id00173,-,fsgan-wav2lip,D,FakeVideo-FakeAudio,Asian,women,00053_id00173.mp4,"
        "FakeAVCeleb/FakeVideo-FakeAudio/Asian/women/id00166\n"
        "id00076,id00076,-,rtvc,B,RealVideo-FakeAudio,African,men,00109_fake.mp4,"
        "FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076\n"
    )
    real, fake, cloned_voice = adapters.fakeavceleb(root)
    assert cloned_voice.label == "real"  # real frames, fake audio: FAME sees frames only
    assert real.label == "real" and real.identities == ("id00076",)
    assert real.path == root / "RealVideo-RealAudio/African/men/id00076/00109.mp4"
    assert fake.label == "fsgan-wav2lip" and fake.identities == ("id00166", "id00173")
    assert fake.path.name == "00053_id00173.mp4"


def test_fakeavceleb_rejects_rows_of_the_wrong_width(tmp_path: Path) -> None:
    (tmp_path / "meta_data.csv").write_text("source,method,path\nid1,real,a.mp4\n")
    with pytest.raises(ValueError, match="fields"):
        adapters.fakeavceleb(tmp_path)


def test_folder_layout_labels_by_folder(tmp_path: Path) -> None:
    _touch(tmp_path, "real/clip1.mp4", "real/sub/clip2.MOV", "sora/id03_x.mp4", "sora/notes.txt")
    videos = sorted(adapters.load_layout("folder", tmp_path), key=lambda v: v.path.name)
    assert [(v.path.name, v.label, v.identities) for v in videos] == [
        ("clip1.mp4", "real", ("clip1",)),
        ("clip2.MOV", "real", ("clip2",)),
        ("id03_x.mp4", "sora", ("id03",)),
    ]
    with pytest.raises(ValueError, match="unknown layout"):
        adapters.load_layout("kinetics", tmp_path)


def test_identity_disjoint_split_keeps_people_on_one_side() -> None:
    videos = [
        LabelledVideo(Path(f"v{i}.mp4"), "x", (f"id{i % 12:02d}", f"id{(i * 5) % 12 + 12:02d}"))
        for i in range(60)
    ]
    videos.append(LabelledVideo(Path("official.mp4"), "x", ("id99",), split="test"))
    split = identity_disjoint_split(videos, seed=3)
    owner: dict[str, str] = {}
    for video in split:
        assert video.split is not None and video.group
        for identity in video.identities:
            assert owner.setdefault(identity, video.split) == video.split
    assert split[-1].split == "test"
    assert identity_disjoint_split(videos, seed=3) == split


def test_few_large_groups_still_fill_every_split() -> None:
    """Four swap groups (as `fame synth build` makes from 13 people) give train, val and test."""
    videos = [
        LabelledVideo(Path(f"g{g}_{i}.mp4"), "x", (f"id{g}a", f"id{g}b"))
        for g in range(4)
        for i in range(50)
    ]
    for seed in range(5):
        splits = [v.split for v in identity_disjoint_split(videos, seed=seed)]
        assert {s: splits.count(s) for s in adapters.SPLITS} == {
            "train": 100,
            "val": 50,
            "test": 50,
        }


def test_split_balances_many_independent_groups() -> None:
    videos = [LabelledVideo(Path(f"v{i}.mp4"), "x", (f"id{i}",)) for i in range(100)]
    counts = {s: 0 for s in adapters.SPLITS}
    for video in identity_disjoint_split(videos, (0.6, 0.2, 0.2)):
        counts[video.split or ""] += 1
    assert counts == {"train": 60, "val": 20, "test": 20}
    with pytest.raises(ValueError, match="fractions"):
        identity_disjoint_split(videos, (0.5, 0.5, 0.5))
