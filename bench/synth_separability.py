"""Do longer-trained face-swap generators leave fingerprints that carry across people and
instances? A cheap probe, run before choosing the `small` synth preset's step count.

Four people from the shared faces folder, aligned as `fame synth build` aligns them, train two
instances (two seeds) of each of the three 64 -> 64 architectures (the hardest to tell apart) for
each step count. Each instance renders the swaps 1 -> 0, 0 -> 1, 3 -> 2 and 2 -> 3; every 16-frame
window of a swap gives one sample of log radial power spectra (face centre and whole crop). A
logistic regression fitted on instance A's swaps onto people 0 and 1 is scored on instance A's
swaps onto people 2 and 3 (new people), and on instance B's (new instance, new people). Chance is
1/3. No compositing or H.264: an upper bound on what the full pipeline leaves.

    .venv/bin/python -m bench.synth_separability --steps 160 480 1200   # ~15 min on 2 cores
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

from fame.faces.detector import load_detector, shared_dir
from fame.synth.aligned import align_video
from fame.synth.build import deterministic_torch, list_face_videos
from fame.synth.generators import build_generator
from fame.synth.presets import PRESETS
from fame.synth.training import render_identity, train_generator

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


def run(steps_list: list[int], lr: float, faces: list[np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for steps in steps_list:
        preset = dataclasses.replace(
            PRESETS["small"], train_steps=steps, learning_rate=lr, epoch_steps=max(1, steps // 4)
        )
        samples: list[tuple[int, str, int, np.ndarray]] = []
        losses: dict[str, list[float]] = {}
        for instance in (0, 1):
            for index, name in enumerate(ARCHITECTURES):
                seed = 100 * instance + index
                with deterministic_torch(seed, None):
                    model = build_generator(name, PEOPLE, preset.width_divisor)
                    log = train_generator(
                        model, faces, preset, np.random.default_rng(seed), torch.device("cpu")
                    )
                losses[f"{name}/{instance}"] = log.epoch_losses
                for source, target in SWAPS:
                    out = render_identity(model, faces[target], source, torch.device("cpu"))
                    for start in range(0, len(out) - WINDOW + 1, WINDOW // 2):
                        window = out[start : start + WINDOW]
                        samples.append((instance, name, target, features(window)))
        instance_of = np.array([s[0] for s in samples])
        label = np.array([s[1] for s in samples])
        target_of = np.array([s[2] for s in samples])
        x = np.stack([s[3] for s in samples])
        fit = (instance_of == 0) & (target_of < 2)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1))
        probe.fit(x[fit], label[fit])
        scored = {
            "same_instance_same_people": fit,
            "same_instance_new_people": (instance_of == 0) & (target_of >= 2),
            "new_instance_new_people": (instance_of == 1) & (target_of >= 2),
        }
        accuracy = {k: float((probe.predict(x[m]) == label[m]).mean()) for k, m in scored.items()}
        rows.append({"steps": steps, "lr": lr, "accuracy": accuracy, "final_loss": losses})
        print(f"{steps} steps: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth_separability", description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=[160, 480, 1200])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    detector = load_detector(shared_dir() / "models" / "scrfd_500m_bnkps.onnx")
    small = PRESETS["small"]
    videos = list_face_videos(shared_dir() / "data" / "faces", PEOPLE)
    faces = [
        align_video(v, detector, small.frames_per_video, small.max_side_px).face_crops
        for v in videos
    ]
    started = time.perf_counter()
    rows = run(args.steps, args.lr, faces)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or REPO_ROOT / "bench" / "results" / f"synth-separability-{stamp}.json"
    result = {
        "command": " ".join(["python -m bench.synth_separability", *(argv or sys.argv[1:])]),
        "people": [v.name for v in videos],
        "architectures": list(ARCHITECTURES),
        "torch_threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - started,
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
