"""`fame`: model and data tooling (front end, preprocessing, training, evaluation, export).

Each subcommand lives in ``fame/commands/<name>.py`` and exposes ``register(subparsers)``; heavy
imports (torch, onnxruntime) happen inside the command, so ``fame --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fame.commands import FameArgumentParser
from fame.errors import FameError

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
    """Every subcommand's parser shows its options' defaults in ``--help`` (`HelpFormatter`)."""
    parser = FameArgumentParser(
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
    """Exit 0 on success, 1 where a command says its check failed (e.g. export parity), 2 on a
    usage or input error: a missing file, a bad value, a model that cannot load."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FameError, FileNotFoundError, ValueError) as error:
        print(f"fame {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
