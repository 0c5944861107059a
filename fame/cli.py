"""`fame`: model and data tooling (front end, preprocessing, training, evaluation, export).

Each subcommand lives in ``fame/commands/<name>.py`` and exposes ``register(subparsers)``; heavy
imports (torch, onnxruntime) happen inside the command, so ``fame --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# One line per subcommand module, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "info",
    "faces",
    "preprocess",
    "train",
    "evaluate",
    "export",
    "quantize",
    "attribute",
    "synth",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fame",
        description=(
            "FAME deepfake model attribution: face front end, preprocessing, training, "
            "evaluation, export and one-off attribution. Environment variables with the prefix "
            "FAME_ (e.g. FAME_DETECTOR_MODEL, FAME_CHECKPOINT, FAME_SHARED_DIR) set defaults."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"fame.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
