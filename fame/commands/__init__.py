"""Subcommands of the `fame` CLI, one module each (see `fame.cli.COMMANDS`), and the arguments
several of them share."""

from __future__ import annotations

import argparse
import os


def add_detector_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detector",
        default=os.environ.get("FAME_DETECTOR_MODEL"),
        help="SCRFD .onnx or InsightFace pack dir (default: $FAME_DETECTOR_MODEL, then shared/)",
    )


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="FAME checkpoint (default: $FAME_CHECKPOINT, then checkpoints/fame_default.pt)",
    )
