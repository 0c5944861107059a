"""What the speed levers do to the verdicts.

Runs `fame attribute --json` with the default checkpoint over the shared face videos and two
samples, once with the default settings and once per lever: detecting on every k-th sampled
frame (`--every`, as `FAME_DETECT_EVERY`), a smaller detector input (`--size`, as
`FAME_DETECT_SIZE`), another model precision (`--precision`, as `FAME_PRECISION`: the default
`auto` is int8 on a CPU where the checkpoint has its int8 encoder) and another detector runtime
(`--backend`, as `FAME_DETECTOR_BACKEND`: `torch` is what a GPU machine without onnxruntime-gpu
runs, letterboxing frames smaller than the detector input on the device; compared with ONNX
Runtime on the CPU, not with the default, which may be PyTorch there). Each lever is
compared with the default: same video label, and the largest change of any class probability of
the dominant track. Speed is `bench.run`'s job (front-end and end-to-end sections); this is the
price in fidelity.

    .venv/bin/python -m bench.fidelity --every 2 3 --size 320     # ~1 min per lever on 2 cores
    .venv/bin/python -m bench.fidelity --every --size --precision fp32 bf16
    .venv/bin/python -m bench.fidelity --every --size --backend torch
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from fame.checkpoint import DEFAULT_CHECKPOINT
from fame.faces.detector import shared_dir
from fame.precision import resolve_precision
from fame.quantize import find_int8_encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("carphone_pristine.mp4", "bikes.mp4")


def attribute(videos: list[Path], options: list[str]) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "fame.cli", "attribute", *map(str, videos), "--json"]
    out = subprocess.run([*command, *options], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def compare(base: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    changes = []
    for a, b in zip(base, other, strict=True):
        pa, pb = a["tracks"][0]["probabilities"], b["tracks"][0]["probabilities"]
        changes.append(
            {
                "video": a["video_id"],
                "label": a["label"],
                "same_label": a["label"] == b["label"],
                "max_probability_change": max(abs(pa[c] - pb[c]) for c in pa),
            }
        )
    return {
        "videos": len(changes),
        "same_label": sum(c["same_label"] for c in changes),
        "max_probability_change": max(c["max_probability_change"] for c in changes),
        "mean_max_probability_change": sum(c["max_probability_change"] for c in changes)
        / len(changes),
        "per_video": changes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--every", type=int, nargs="*", default=[2, 3], help="FAME_DETECT_EVERY values to test"
    )
    parser.add_argument(
        "--size", type=int, nargs="*", default=[320], help="FAME_DETECT_SIZE values to test"
    )
    parser.add_argument(
        "--precision", nargs="*", default=[], help="FAME_PRECISION values to test (fp32 bf16 int8)"
    )
    parser.add_argument(
        "--backend", nargs="*", default=[], help="FAME_DETECTOR_BACKEND values to test (torch)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    data = shared_dir() / "data"
    videos = sorted((data / "faces").glob("*.mp4")) + [data / "samples" / s for s in SAMPLES]
    levers = {f"detect_every={k}": ["--detect-every", str(k)] for k in args.every}
    levers |= {f"detect_size={s}": ["--detect-size", str(s)] for s in args.size}
    levers |= {f"precision={p}": ["--precision", p] for p in args.precision}
    levers |= {f"detector_backend={b}": ["--detector-backend", b] for b in args.backend}
    base = attribute(videos, [])
    # a runtime is compared with ONNX Runtime's CPU provider, the reference the shipped
    # checkpoint was evaluated with (`auto` may itself resolve to PyTorch on a GPU machine)
    reference = attribute(videos, ["--detector-backend", "onnxruntime"]) if args.backend else base
    rows = {
        name: compare(
            reference if name.startswith("detector_backend") else base, attribute(videos, options)
        )
        for name, options in levers.items()
    }
    for name, row in rows.items():
        print(
            f"{name}: same label {row['same_label']}/{row['videos']}, largest "
            f"probability change {row['max_probability_change']:.3f} "
            f"(mean over videos {row['mean_max_probability_change']:.3f})"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or REPO_ROOT / "bench" / "results" / f"fidelity-{stamp}.json"
    default_precision = resolve_precision(
        "auto", torch.device("cpu"), find_int8_encoder(DEFAULT_CHECKPOINT) is not None
    )
    report = {"checkpoint": base[0]["model"], "default_precision": default_precision}
    report["levers"] = rows
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
