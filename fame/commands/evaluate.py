"""`fame evaluate`: clip- and video-level metrics of a checkpoint, as JSON plus confusion PNGs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fame.commands.preprocess import add_data_arguments


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a cache (or a dataset, preprocessed first)",
        description=(
            "Accuracy, macro-F1, one-vs-rest macro AUC, per-class precision/recall and "
            "confusion matrices at clip and video level, overall and per CRF level."
        ),
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--report", required=True, help="JSON report path (PNGs go beside it)")
    parser.add_argument("--cache", help="cache folder; with --data it is where to preprocess to")
    parser.add_argument("--split", default="test", help="train, val, test or all (default test)")
    parser.add_argument("--stride", type=int, default=None, help="frames between windows")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help=(
            "as the service's FAME_PRECISION (auto: bf16 on CUDA; on a CPU int8 where the "
            "checkpoint has an int8 encoder beside it, else bf16 where native, else fp32)"
        ),
    )
    parser.add_argument(
        "--held-out-class",
        metavar="CLASS",
        help=(
            "open set: a class the checkpoint was not trained on (fame train --exclude-classes); "
            "adds the AUROC with which the unknown-generator score separates its videos"
        ),
    )
    add_data_arguments(parser, required=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fame.checkpoint import load_checkpoint
    from fame.data.cache import read_index
    from fame.evaluate import evaluate, open_set_report
    from fame.quantize import find_int8_encoder, select_precision
    from fame.train import resolve_device

    report_path = Path(args.report)
    if args.data is None and args.cache is None:
        raise SystemExit("fame evaluate: give --cache, or --data with --layout")
    cache = Path(args.cache) if args.cache else report_path.parent / "cache"
    if args.data is not None:
        from fame.commands.preprocess import preprocess_dataset

        preprocess_dataset(args, cache)
    records = read_index(cache)
    if args.split != "all":
        records = [r for r in records if r.split == args.split]
    if not records:
        raise SystemExit(f"fame evaluate: no tracks in split {args.split!r} of {cache}")
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    precision, int8_encoder = select_precision(
        args.precision, torch.device(device), find_int8_encoder(args.checkpoint), meta.sha256
    )
    if args.held_out_class in meta.classes:
        raise SystemExit(
            f"fame evaluate: --held-out-class {args.held_out_class!r} is one of the checkpoint's "
            f"classes {meta.classes}: train with --exclude-classes {args.held_out_class} first"
        )
    report = evaluate(
        model,
        meta,
        cache,
        [r for r in records if r.label != args.held_out_class],
        stride=args.stride,
        batch_size=args.batch_size,
        device=device,
        figures_dir=report_path.parent,
        precision=precision,
        int8_encoder=int8_encoder,
    )
    report["split"] = args.split
    if args.held_out_class:
        report["open_set"] = open_set_report(
            model,
            meta,
            cache,
            records,
            args.held_out_class,
            stride=args.stride,
            batch_size=args.batch_size,
            device=device,
            precision=precision,
            int8_encoder=int8_encoder,
        )
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    summary = {
        level: {k: report[level][k] for k in ("accuracy", "macro_f1", "macro_auc")}
        for level in ("clip", "video")
    }
    if args.held_out_class:
        summary["open_set_auroc"] = report["open_set"]["auroc"]
    print(json.dumps({"report": str(report_path), **summary}))
    return 0
