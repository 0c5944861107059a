"""Dataset layouts -> labelled videos with identities, and identity-disjoint splitting.

Each adapter reads one benchmark's real folder layout and naming; none opens a video. Identities
(the people whose faces appear) let `identity_disjoint_split` keep every person on one side of a
split, so a model cannot score by recognising faces instead of generators.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fame.aggregate import REAL_LABEL

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    label: str
    identities: tuple[str, ...]
    crf: int | None = None
    split: str | None = None
    group: str = ""


def videos_under(folder: Path) -> list[Path]:
    """Every video file below ``folder`` (by suffix), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found at {path}")


# --------------------------------------------------------------------------- DFDM

DFDM_MODELS = ("faceswap", "lightweight", "iae", "dfaker", "dfl-h128")
# The public DFDM has fakes only; `fame synth build` adds pristine videos through the same
# encoder as ``idXX_idXX_<scene>_real.mp4`` so that "real" is a class there.
_DFDM_NAME = re.compile(
    r"^(?P<a>id\d+)_(?P<b>id\d+)_(?P<scene>.+)_(?P<model>"
    + "|".join((*DFDM_MODELS, "real"))
    + r")$"
)
_CRF_DIR = re.compile(r"^(?:crf)?[_-]?(?P<crf>\d+)$", re.IGNORECASE)


def dfdm(root: str | Path) -> list[LabelledVideo]:
    """DFDM: ``<root>/<crf>/.../idXX_idYY_<scene>_<model>.mp4`` with crf folders like ``crf23``
    or ``23``; the label is the generating model (five classes), or "real" for pristine videos
    named ``idXX_idXX_<scene>_real`` (in benchmarks built by `fame synth build`)."""
    root = Path(root)
    _require_dir(root, "DFDM root")
    videos: list[LabelledVideo] = []
    for crf_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        crf_match = _CRF_DIR.match(crf_dir.name)
        if crf_match is None:
            continue
        for path in videos_under(crf_dir):
            match = _DFDM_NAME.match(path.stem)
            if match is None:
                raise ValueError(f"DFDM file name {path.name!r} is not idXX_idYY_<scene>_<model>")
            videos.append(
                LabelledVideo(
                    path, match["model"], (match["a"], match["b"]), crf=int(crf_match["crf"])
                )
            )
    if not videos:
        raise FileNotFoundError(f"no DFDM videos in CRF folders under {root}")
    return videos


# --------------------------------------------------------------------------- FaceForensics++

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


def _ffpp_splits(root: Path) -> dict[str, str]:
    """Identity id -> official split, from ``splits/{train,val,test}.json`` pair lists."""
    owner: dict[str, str] = {}
    for split in SPLITS:
        path = root / "splits" / f"{split}.json"
        if path.is_file():
            for pair in json.loads(path.read_text()):
                for identity in pair:
                    owner[str(identity)] = split
    return owner


def ffpp(root: str | Path, compression: str = "c23") -> list[LabelledVideo]:
    """FaceForensics++: originals ``original_sequences/youtube/<c>/videos/XXX.mp4`` ("real") and
    ``manipulated_sequences/<Method>/<c>/videos/TTT_SSS.mp4``; official splits if present."""
    root = Path(root)
    originals = root / "original_sequences" / "youtube" / compression / "videos"
    _require_dir(originals, "FF++ original videos")
    owner = _ffpp_splits(root)
    videos = [
        LabelledVideo(p, REAL_LABEL, (p.stem,), split=owner.get(p.stem))
        for p in videos_under(originals)
    ]
    for method in FFPP_METHODS:
        folder = root / "manipulated_sequences" / method / compression / "videos"
        if not folder.is_dir():
            continue
        for path in videos_under(folder):
            ids = tuple(path.stem.split("_"))
            if len(ids) != 2:
                raise ValueError(f"FF++ manipulated name {path.name!r} is not <target>_<source>")
            split = owner.get(ids[0])
            videos.append(LabelledVideo(path, method.lower(), ids, split=split))
    return videos


# --------------------------------------------------------------------------- FakeAVCeleb


def fakeavceleb(root: str | Path) -> list[LabelledVideo]:
    """FakeAVCeleb ``meta_data.csv``: its header is one column short of its rows (``path``
    labels the file name; the directory sits in an unnamed last column). Label = ``method``,
    except that a ``RealVideo-FakeAudio`` row (real footage, cloned voice; ``method`` rtvc) is
    ``real``: FAME sees frames only, and the same frames must not carry two labels."""
    root = Path(root)
    meta = root / "meta_data.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"FakeAVCeleb meta_data.csv not found at {meta}")
    with meta.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header = [h.strip() for h in rows[0]]
    columns = {name: i for i, name in enumerate(header) if name}
    for needed in ("source", "method", "path"):
        if needed not in columns:
            raise ValueError(f"{meta} header {header} lacks {needed!r}")
    videos = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header) + 1:
            raise ValueError(f"{meta}:{line} has {len(row)} fields, expected {len(header) + 1}")
        ids = tuple(
            dict.fromkeys(
                row[columns[c]].strip()
                for c in ("source", "target1", "target2")
                if c in columns and row[columns[c]].strip() not in ("", "-")
            )
        )
        path = _fakeavceleb_path(root, row[-1].strip(), row[columns["path"]].strip())
        kind = row[columns["type"]].strip() if "type" in columns else ""
        label = "real" if kind.startswith("RealVideo-") else row[columns["method"]].strip().lower()
        videos.append(LabelledVideo(path, label, ids))
    return videos


def _fakeavceleb_path(root: Path, directory: str, filename: str) -> Path:
    """The directory column starts with the dataset folder's own name (``FakeAVCeleb/...``)."""
    parts = Path(directory).parts
    if parts and not (root / directory).exists() and parts[0] == root.name:
        return root.joinpath(*parts[1:], filename)
    return root / directory / filename


# --------------------------------------------------------------------------- folder per class


def folder(root: str | Path) -> list[LabelledVideo]:
    """``<root>/<class>/**/<video>``: the label is the top folder; the identity is the file stem
    unless it starts with ``idXX_`` / ``idXX_idYY_`` (DFDM-style names)."""
    root = Path(root)
    _require_dir(root, "dataset root")
    videos = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in videos_under(class_dir):
            ids = tuple(re.findall(r"(?:^|_)(id\d+)(?=_)", path.stem)) or (path.stem,)
            videos.append(LabelledVideo(path, class_dir.name, ids))
    if not videos:
        raise FileNotFoundError(f"no videos in class folders under {root}")
    return videos


ADAPTERS: dict[str, Callable[[Path], list[LabelledVideo]]] = {
    "dfdm": dfdm,
    "ffpp": ffpp,
    "fakeavceleb": fakeavceleb,
    "folder": folder,
}


def load_layout(layout: str, root: str | Path) -> list[LabelledVideo]:
    if layout not in ADAPTERS:
        raise ValueError(f"unknown layout {layout!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[layout](Path(root))


# --------------------------------------------------------------------------- splitting


def identity_groups(videos: Iterable[LabelledVideo]) -> list[str]:
    """A group name per video; videos sharing any identity (transitively) share a group."""
    videos = list(videos)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for video in videos:
        ids = video.identities or (str(video.path),)
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
    return [find((v.identities or (str(v.path),))[0]) for v in videos]


def identity_disjoint_split(
    videos: Sequence[LabelledVideo],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[LabelledVideo]:
    """Sets ``group`` on every video and ``split`` on those without an official one.

    Whole identity groups go to train/val/test, each to the split furthest below its target
    share of videos, in a seeded random order; no identity ends up in two splits. When only as
    many groups are left as splits are still empty, they go to the empty splits, so a dataset of
    a few large groups still gets a validation and a test split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative shares summing to 1: {fractions}")
    groups = identity_groups(videos)
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    counts = dict.fromkeys(SPLITS, 0)
    split_of: dict[str, str] = {}
    total = len(videos)
    for position, group in enumerate(order):
        official = {videos[i].split for i in members[group]} - {None}
        if official:
            split_of[group] = sorted(s for s in official if s is not None)[0]
        else:
            deficits = {s: f * total - counts[s] for s, f in zip(SPLITS, fractions, strict=True)}
            empty = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0 and not counts[s]]
            candidates = empty if empty and len(order) - position <= len(empty) else SPLITS
            split_of[group] = max(candidates, key=lambda s: deficits[s])
        counts[split_of[group]] += len(members[group])
    return [
        dataclasses.replace(v, group=g, split=v.split or split_of[g])
        for v, g in zip(videos, groups, strict=True)
    ]
