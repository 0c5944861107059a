"""What detecting on every k-th frame (`FAME_DETECT_EVERY`) does to the verdicts.

Runs `fame attribute --json` with the default checkpoint over the shared face videos and two
samples, once per k, and compares each k > 1 with k = 1: same video label, and the largest change
of any class probability of the dominant track. Speed is `bench.run`'s job (front-end and
end-to-end sections); this is the price in fidelity.

    .venv/bin/python -m bench.keyframe_fidelity --every 2 3     # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fame.faces.detector import shared_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ("carphone_pristine.mp4", "bikes.mp4")


def attribute(videos: list[Path], every: int) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "fame.cli", "attribute", *map(str, videos), "--json"]
    out = subprocess.run(
        [*command, "--detect-every", str(every)], check=True, capture_output=True, text=True
    ).stdout
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
        prog="python -m bench.keyframe_fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--every", type=int, nargs="+", default=[2, 3], help="k values to test")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    data = shared_dir() / "data"
    videos = sorted((data / "faces").glob("*.mp4")) + [data / "samples" / s for s in SAMPLES]
    base = attribute(videos, 1)
    rows = {str(k): compare(base, attribute(videos, k)) for k in args.every}
    for k, row in rows.items():
        print(
            f"detect every {k}: same label {row['same_label']}/{row['videos']}, largest "
            f"probability change {row['max_probability_change']:.3f} "
            f"(mean over videos {row['mean_max_probability_change']:.3f})"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or REPO_ROOT / "bench" / "results" / f"keyframe-fidelity-{stamp}.json"
    out.write_text(json.dumps({"checkpoint": base[0]["model"], "every": rows}, indent=2) + "\n")
    print(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
