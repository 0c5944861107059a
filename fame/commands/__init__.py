"""Subcommands of the `fame` CLI, one module each (see `fame.cli.COMMANDS`), and the arguments
several of them share."""

from __future__ import annotations

import argparse
import os

from fame.faces.detector import DETECTOR_BACKENDS


def add_detector_argument(parser: argparse.ArgumentParser) -> None:
    """``--detector`` and ``--detector-backend``."""
    parser.add_argument(
        "--detector",
        default=os.environ.get("FAME_DETECTOR_MODEL"),
        help="SCRFD .onnx or InsightFace pack dir (default: $FAME_DETECTOR_MODEL, then shared/)",
    )
    parser.add_argument(
        "--detector-backend",
        choices=DETECTOR_BACKENDS,
        default=os.environ.get("FAME_DETECTOR_BACKEND", "auto"),
        help="runtime for SCRFD: auto = ONNX Runtime, or PyTorch when only PyTorch reaches the "
        "GPU (default: $FAME_DETECTOR_BACKEND, else auto)",
    )


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="FAME checkpoint (default: $FAME_CHECKPOINT, then checkpoints/fame_default.pt)",
    )
