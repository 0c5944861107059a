"""Do face-swap generators leave fingerprints that carry across people and instances, and do
more training instances per architecture make them carry further? A cheap probe, run before
choosing a synth preset.

Four people from the shared faces folder, aligned as `fame synth build` aligns them, train
``--instances`` instances (seeds) of each architecture (default: the three 64 -> 64 ones, the
hardest to tell apart) for each step count. Each instance renders the swaps 1 -> 0, 0 -> 1, 3 -> 2
and 2 -> 3; every 16-frame window of a swap gives one sample of log radial power spectra (face
centre and whole crop). For each k in ``--fit-instances`` a logistic regression is fitted on the
first k instances' swaps onto people 0 and 1 and scored on the same instances' swaps onto people
2 and 3 (new people), and on the held-out instances' (the last ``instances - max(k)``) swaps onto
people 2 and 3 (new instances, new people). Chance is 1/len(architectures). No compositing or
H.264: an upper bound on what the full pipeline leaves.

    .venv/bin/python -m bench.synth_separability --steps 160 480 1200   # ~15 min on 2 cores
    # instance scaling, torch alone (a bare GPU image): align here, carry the crops
    .venv/bin/python -m bench.synth_separability --save-crops .gpu/crops.npz --steps 0
    python3 -m bench.synth_separability --crops .gpu/crops.npz --steps 500 --instances 12 \
        --fit-instances 1 2 4 8 --architectures faceswap lightweight iae dfaker dfl-h128
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fame.synth.generators import GENERATOR_NAMES, build_generator
from fame.synth.presets import PRESETS
from fame.synth.training import deterministic_torch, render_identity, train_generator

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("faceswap", "lightweight", "iae")
PEOPLE = 4
WINDOW = 16
SWAPS = ((1, 0), (0, 1), (3, 2), (2, 3))  # (source, target); targets 0, 1 fit, 2, 3 score


def radial_spectrum(gray: np.ndarray) -> np.ndarray:
    """Mean log power over a window of frames [N, S, S], in integer-radius rings."""
    size = gray.shape[1]
    gray = gray - gray.mean(axis=(1, 2), keepdims=True)
    window = np.hanning(size)[:, None] * np.hanning(size)[None]
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray * window), axes=(1, 2))) ** 2
    log_power = np.log(power.mean(0) + 1e-6)
    yy, xx = np.mgrid[-size // 2 : size // 2, -size // 2 : size // 2]
    radius = np.sqrt(yy**2 + xx**2).astype(int)
    return np.array([log_power[radius == r].mean() for r in range(1, size // 2)])


def features(crops: np.ndarray) -> np.ndarray:
    gray = crops.astype(np.float32).mean(-1)
    return np.concatenate([radial_spectrum(gray[:, 32:96, 32:96]), radial_spectrum(gray)])


def run(
    steps_list: list[int],
    lr: float,
    faces: list[np.ndarray],
    instances: int = 2,
    fit_instances: tuple[int, ...] = (1,),
    architectures: tuple[str, ...] = ARCHITECTURES,
    device: torch.device | None = None,
    width_divisor: int | None = None,
) -> list[dict[str, Any]]:
    """One row per step count: the probe's accuracy for each number of fitted instances."""
    if not fit_instances or min(fit_instances) < 1 or max(fit_instances) >= instances:
        raise ValueError(
            f"fit instances {fit_instances} must be >= 1 and leave held-out ones of {instances}"
        )
    device = device or torch.device("cpu")
    rows = []
    for steps in steps_list:
        preset = dataclasses.replace(
            PRESETS["small"], train_steps=steps, learning_rate=lr, epoch_steps=max(1, steps // 4)
        )
        if width_divisor is not None:
            preset = dataclasses.replace(preset, width_divisor=width_divisor)
        samples: list[tuple[int, str, int, np.ndarray]] = []
        losses: dict[str, list[float]] = {}
        for instance in range(instances):
            for index, name in enumerate(architectures):
                seed = 100 * instance + index
                trained = time.perf_counter()
                with deterministic_torch(seed, None):
                    model = build_generator(name, PEOPLE, preset.width_divisor)
                    log = train_generator(model, faces, preset, np.random.default_rng(seed), device)
                losses[f"{name}/{instance}"] = log.epoch_losses
                print(f"{name}/{instance}: {steps} steps in {time.perf_counter() - trained:.1f} s")
                for source, target in SWAPS:
                    out = render_identity(model, faces[target], source, device)
                    for start in range(0, len(out) - WINDOW + 1, WINDOW // 2):
                        window = out[start : start + WINDOW]
                        samples.append((instance, name, target, features(window)))
        instance_of = np.array([s[0] for s in samples])
        label = np.array([s[1] for s in samples])
        target_of = np.array([s[2] for s in samples])
        x = np.stack([s[3] for s in samples])
        held_out = instance_of >= max(fit_instances)
        fits = []
        for k in fit_instances:
            fit = (instance_of < k) & (target_of < 2)
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1))
            probe.fit(x[fit], label[fit])
            scored = {
                "same_instance_same_people": fit,
                "same_instance_new_people": (instance_of < k) & (target_of >= 2),
                "new_instance_new_people": held_out & (target_of >= 2),
            }
            accuracy = {
                key: float((probe.predict(x[m]) == label[m]).mean()) for key, m in scored.items()
            }
            new = scored["new_instance_new_people"]
            recall = {
                name: float((probe.predict(x[new & (label == name)]) == name).mean())
                for name in architectures
            }
            fits.append(
                {
                    "fit_instances": k,
                    "fit_windows": int(fit.sum()),
                    "new_instance_windows": int(new.sum()),
                    "accuracy": accuracy,
                    "new_instance_recall": recall,
                }
            )
            print(
                f"{steps} steps, fit on {k} instance(s): "
                + ", ".join(f"{key} {v:.3f}" for key, v in accuracy.items())
            )
        rows.append(
            {
                "steps": steps,
                "lr": lr,
                "width_divisor": preset.width_divisor,
                "instances": instances,
                "held_out_instances": list(range(max(fit_instances), instances)),
                "fits": fits,
                "final_loss": losses,
            }
        )
    return rows


def aligned_faces() -> tuple[list[str], list[np.ndarray]]:
    """The first PEOPLE shared face videos, aligned as the small preset aligns them (needs the
    media stack: PyAV and onnxruntime)."""
    from fame.faces.detector import load_detector, shared_dir
    from fame.synth.aligned import align_video
    from fame.synth.build import list_face_videos

    detector = load_detector(shared_dir() / "models" / "scrfd_500m_bnkps.onnx")
    small = PRESETS["small"]
    videos = list_face_videos(shared_dir() / "data" / "faces", PEOPLE)
    faces = [
        align_video(v, detector, small.frames_per_video, small.max_side_px).face_crops
        for v in videos
    ]
    return [v.name for v in videos], faces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.synth_separability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[160, 480, 1200])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--instances", type=int, default=2, help="instances per architecture")
    parser.add_argument(
        "--width-divisor",
        type=int,
        default=None,
        help="divides DFDM's channel counts (default: the small preset's 8; 1 = DFDM's sizes)",
    )
    parser.add_argument(
        "--fit-instances", type=int, nargs="+", default=[1], help="instance counts to fit on"
    )
    parser.add_argument(
        "--architectures", nargs="+", choices=GENERATOR_NAMES, default=list(ARCHITECTURES)
    )
    parser.add_argument(
        "--crops", type=Path, help="aligned crops from --save-crops (then no media stack)"
    )
    parser.add_argument("--save-crops", type=Path, help="write the aligned crops here (.npz)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.crops:
        saved = np.load(args.crops)
        people = [str(p) for p in saved["people"]]
        faces = [saved[f"face{i}"] for i in range(len(people))]
    else:
        people, faces = aligned_faces()
    if args.save_crops:
        args.save_crops.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.save_crops, people=np.array(people), **{f"face{i}": f for i, f in enumerate(faces)}
        )
        print(f"aligned crops: {args.save_crops}")
    steps = [s for s in args.steps if s > 0]
    if not steps:
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    rows = run(
        steps,
        args.lr,
        faces,
        args.instances,
        tuple(args.fit_instances),
        tuple(args.architectures),
        device,
        args.width_divisor,
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or REPO_ROOT / "bench" / "results" / f"synth-separability-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python -m bench.synth_separability", *(argv or sys.argv[1:])]),
        "people": people,
        "architectures": list(args.architectures),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - started,
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
