"""`fame train`: train FAME or a baseline on a preprocessed face-track cache."""

from __future__ import annotations

import argparse
import json
import logging


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "train",
        help="train a model on a face-track cache (writes best.pt and resumable last.pt)",
        description=(
            "Train FAME (or the baselines fame_noattn / cnn_mean) on the train split of a cache "
            "written by `fame preprocess`; early stopping on val clip macro-F1."
        ),
    )
    parser.add_argument("--cache", required=True, help="cache folder with index.jsonl")
    parser.add_argument("--out", required=True, help="output folder for checkpoints")
    parser.add_argument("--model", default="fame", help="registry name (default: fame)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-frac", type=float, default=0.05)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--patience", type=int, default=5, help="epochs without val gain")
    parser.add_argument("--clips-per-epoch", type=int, default=None)
    parser.add_argument("--eval-stride", type=int, default=None, help="frames between windows")
    parser.add_argument("--clip-len", type=int, default=None, help="override the model's T")
    parser.add_argument(
        "--img-size", type=int, default=None, help="override the model's input side in px"
    )
    parser.add_argument(
        "--pretrained",
        default=None,
        help="VGG19 ImageNet weights file (default: look in $TORCH_HOME; never downloads)",
    )
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--fp16-checkpoint", action="store_true", help="store weights as fp16")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--exclude-classes",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="leave these classes out of training (open-set: the held-out generator; "
        "default: none)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fame.train import TrainConfig, fit

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {}
    if args.clip_len is not None:
        overrides["clip_len"] = args.clip_len
    if args.img_size is not None:
        overrides["img_size"] = args.img_size
    if args.pretrained is not None:
        overrides["pretrained"] = args.pretrained
    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_frac=args.warmup_frac,
        grad_clip=args.grad_clip,
        seed=args.seed,
        patience=args.patience,
        clips_per_epoch=args.clips_per_epoch,
        eval_stride=args.eval_stride,
        num_workers=args.num_workers,
        device=args.device,
        fp16_checkpoint=args.fp16_checkpoint,
        model_overrides=overrides,
        exclude_classes=tuple(args.exclude_classes),
    )
    result = fit(args.cache, args.out, config, resume=args.resume)
    print(
        json.dumps(
            {
                "best_checkpoint": str(result.best_checkpoint),
                "best_val_macro_f1": result.best_val_macro_f1,
                "epochs_run": result.epochs_run,
            }
        )
    )
    return 0
