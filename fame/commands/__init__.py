"""Subcommands of the `fame` CLI, one module each (see `fame.cli.COMMANDS`), and the arguments
several of them share."""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any

from fame.faces.detector import DETECTOR_BACKENDS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help, except where the help already says its
    default (e.g. an environment variable first) or there is none worth showing (None, or False
    for a flag). Descriptions are wrapped to the terminal: none relies on its line breaks."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _has_default(action):  # argparse skips the help of these
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return str(super()._format_action(action))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not _has_default(action) or "default" in text.lower():
            return text
        return str(super()._get_help_string(action))


def _has_default(action: argparse.Action) -> bool:
    """An option whose default is worth showing: not None, not a flag's False (``0`` is)."""
    default = action.default
    shown = default is not None and default is not False and default is not argparse.SUPPRESS
    return shown and bool(action.option_strings)


class FameArgumentParser(argparse.ArgumentParser):
    """The parser of `fame` and, through ``add_subparsers`` (which makes parsers of its own
    class), of every subcommand and sub-subcommand: all of them use `HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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
