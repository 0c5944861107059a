"""`fame export`: TorchScript and ONNX files from a checkpoint, with a parity check."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "export",
        help="export a checkpoint to TorchScript and ONNX (dynamic batch) and check parity",
        description="Write fame.ts, fame.onnx and meta.json; fail if outputs differ from eager.",
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--max-abs-diff", type=float, default=1e-4, help="parity tolerance (default 1e-4)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fame.export import export_checkpoint

    meta, parity = export_checkpoint(args.checkpoint, args.out)
    ok = max(parity.torchscript_max_abs, parity.onnx_max_abs) <= args.max_abs_diff
    print(
        json.dumps(
            {
                "out": args.out,
                "checkpoint_sha256": meta.sha256,
                "torchscript_max_abs_diff": parity.torchscript_max_abs,
                "onnx_max_abs_diff": parity.onnx_max_abs,
                "parity_ok": ok,
            }
        )
    )
    return 0 if ok else 1
