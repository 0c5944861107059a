"""CPU smoke run: a tiny FAME learns three visibly different 'generators' on real face crops.

Classes: ``real`` (untouched), ``tint`` (a colour cast) and ``flicker`` (every other frame
darkened, which only a model looking across frames can tell from a static darkening). Identities
are split train/val/test, so held-out accuracy above chance means it learned the artefact.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fame.checkpoint import load_checkpoint
from fame.cli import main
from fame.data.cache import TrackRecord, TrackStore, read_index, write_index, write_track
from fame.evaluate import evaluate
from fame.quantize import find_int8_encoder, quantize_encoder, select_precision, sidecar_path
from fame.train import TrainConfig, fit
from tests.conftest import shared_dir

FRAMES_PER_TRACK = 12
SMOKE_CONFIG = TrainConfig(
    model="fame_tiny",
    epochs=12,
    batch_size=8,
    lr=3e-3,
    weight_decay=1e-4,
    patience=12,
    clips_per_epoch=48,
    model_overrides={"clip_len": 8},
)
CLASSES = ("flicker", "real", "tint")


def _face_frames(n_people: int) -> list[np.ndarray]:
    """Centre crops of the shared face videos, or smooth random textures without shared/."""
    import av
    import cv2

    videos = sorted((shared_dir() / "data" / "faces").glob("*.mp4"))[:n_people]
    if len(videos) < n_people:
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (n_people, 3 * FRAMES_PER_TRACK, 8, 8, 3), dtype=np.uint8)
        return [np.stack([cv2.resize(f, (112, 112)) for f in person]) for person in small]
    people = []
    for path in videos:
        with av.open(str(path)) as container:
            frames = []
            for frame in container.decode(video=0):
                rgb = frame.to_ndarray(format="rgb24")
                h, w = rgb.shape[:2]
                side = min(h, w) // 2
                top, left = (h - side) // 2, (w - side) // 2
                frames.append(cv2.resize(rgb[top : top + side, left : left + side], (112, 112)))
                if len(frames) == 3 * FRAMES_PER_TRACK:
                    break
        people.append(np.stack(frames))
    return people


def _manipulate(frames: np.ndarray, label: str) -> np.ndarray:
    out = frames.astype(np.int16)
    if label == "tint":
        out[..., 0] += 50
        out[..., 2] -= 30
    elif label == "flicker":
        out[::2] = out[::2] * 0.55
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core box: OpenMP spin-waiting makes 2 threads ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    records = []
    for person, frames in enumerate(_face_frames(len(splits))):
        for k, label in enumerate(CLASSES):
            segment = frames[k * FRAMES_PER_TRACK : (k + 1) * FRAMES_PER_TRACK]
            record = TrackRecord(
                video=f"person{person}_{label}.mp4",
                label=label,
                track_file=f"tracks/p{person}_{label}.npz",
                n_frames=len(segment),
                identities=(f"p{person}",),
                group=f"p{person}",
                split=splits[person],
                crf=23 if person % 2 else 0,
            )
            n = len(segment)
            write_track(
                root,
                record.track_file,
                _manipulate(segment, label),
                np.arange(n),
                np.arange(n) / 25.0,
            )
            records.append(record)
    write_index(root, records)
    return root


@pytest.fixture(scope="module")
def trained(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    result = fit(cache, out, SMOKE_CONFIG)
    assert result.best_checkpoint.is_file()
    assert result.best_val_macro_f1 > 0.5
    return out


def test_training_learns_held_out_identities(cache: Path, trained: Path) -> None:
    model, meta = load_checkpoint(trained / "best.pt")
    assert meta.classes == list(CLASSES)
    assert meta.data_fingerprint.startswith("sha256:")
    assert 0 < meta.unknown_threshold <= 0.5
    test = [r for r in read_index(cache) if r.split == "test"]
    report = evaluate(model, meta, cache, test, stride=4, progress=False)
    assert report["clip"]["accuracy"] > 0.6  # chance is 1/3
    assert report["video"]["n"] == 6
    assert set(report["by_crf"]) == {"0", "23"}


def test_evaluate_runs_the_int8_encoder_beside_the_checkpoint(
    cache: Path, trained: Path, tmp_path: Path
) -> None:
    """`auto` on a CPU evaluates with the checkpoint's int8 encoder, and scores as fp32 does."""
    checkpoint = tmp_path / "best.pt"
    shutil.copy(trained / "best.pt", checkpoint)
    model, meta = load_checkpoint(checkpoint)
    records = read_index(cache)
    store = TrackStore(cache)
    crops = np.concatenate([store.get(r).crops for r in records if r.split == "train"])
    quantize_encoder(model, meta.sha256, crops, sidecar_path(checkpoint))
    test = [r for r in records if r.split == "test"]
    reports = {}
    for name in ("fp32", "auto"):
        precision, encoder = select_precision(
            name, torch.device("cpu"), find_int8_encoder(checkpoint), meta.sha256
        )
        reports[name] = evaluate(
            model,
            meta,
            cache,
            test,
            stride=4,
            progress=False,
            precision=precision,
            int8_encoder=encoder,
        )
    assert reports["auto"]["precision"] == "int8"
    assert reports["auto"]["clip"]["accuracy"] > 0.6
    assert abs(reports["auto"]["clip"]["accuracy"] - reports["fp32"]["clip"]["accuracy"]) < 0.1


def test_resume_continues_from_last_state(cache: Path, trained: Path) -> None:
    history = json.loads((trained / "train_config.json").read_text())
    assert history["model"] == "fame_tiny"
    config = TrainConfig(
        model="fame_tiny",
        epochs=13,
        batch_size=8,
        lr=3e-3,
        patience=12,
        clips_per_epoch=16,
        model_overrides={"clip_len": 8},
    )
    result = fit(cache, trained, config, resume=True)
    assert result.epochs_run == 13
    assert [h["epoch"] for h in result.history] == list(range(1, 14))


def test_evaluate_command_writes_report_and_figures(
    cache: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "eval" / "report.json"
    code = main(
        [
            "evaluate",
            "--cache",
            str(cache),
            "--checkpoint",
            str(trained / "best.pt"),
            "--report",
            str(report_path),
            "--split",
            "test",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and report["classes"] == list(CLASSES)
    for level in ("clip", "video"):
        assert Path(report[level]["confusion_png"]).stat().st_size > 1000
        assert set(report[level]["per_class"]) == set(CLASSES)
        assert 0 <= report[level]["macro_auc"] <= 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["report"] == str(report_path)


def test_open_set_held_out_generator(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Train without "flicker", then score how well the unknown score singles it out."""
    config = dataclasses.replace(SMOKE_CONFIG, exclude_classes=("flicker",))
    result = fit(cache, tmp_path / "run", config)
    _, meta = load_checkpoint(result.best_checkpoint)
    assert meta.classes == ["real", "tint"]
    report_path = tmp_path / "open_set.json"
    args = [
        "evaluate",
        "--cache",
        str(cache),
        "--checkpoint",
        str(result.best_checkpoint),
        "--report",
        str(report_path),
        "--device",
        "cpu",
        "--held-out-class",
        "flicker",
    ]
    assert main(args) == 0
    open_set = json.loads(report_path.read_text())["open_set"]
    assert open_set["held_out_class"] == "flicker"
    assert (open_set["n_held_out_videos"], open_set["n_known_videos"]) == (2, 2)
    assert 0.5 < open_set["auroc"] <= 1.0  # flicker looks like no known generator
    assert set(open_set["by_crf"]) == {"0", "23"}
    with pytest.raises(SystemExit):
        main([*args[:-1], "tint"])  # a known class cannot be "held out"


def test_train_command_overrides_reach_the_checkpoint(cache: Path, tmp_path: Path) -> None:
    """`--img-size` and `--clip-len` change the trained model, and the checkpoint remembers them
    (evaluation and the service resize crops to what the checkpoint says)."""
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--model",
            "fame_tiny",
            "--epochs",
            "1",
            "--clips-per-epoch",
            "8",
            "--batch-size",
            "4",
            "--clip-len",
            "4",
            "--img-size",
            "48",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    model, meta = load_checkpoint(out / "best.pt")
    assert (meta.fame_config.img_size, meta.fame_config.clip_len) == (48, 4)
    assert model.config.img_size == 48
