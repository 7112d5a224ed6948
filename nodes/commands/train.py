"""``streetloc train MODEL --data DRIVE...``: train a registered model on drives (the loop in
`perception.training`, shared by every model). Multi-GPU: ``torchrun --nproc-per-node=N -m nodes.cli
train MODEL ...`` (see docs/posenet.md)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from nodes.commands import positive_float, positive_int


def _run(args: argparse.Namespace) -> int:
    from perception.models import get_model_entry
    from perception.training import TrainConfig, fit, log

    entry = get_model_entry(args.model)
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val-fraction {args.val_fraction!r} is outside [0, 1)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # before decoding too: data loading uses torch ops
    task, train_set, val_set = entry.task_factory(args)
    config = TrainConfig(
        out_dir=Path(args.out), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device,
        amp=not args.no_amp, num_workers=args.workers, threads=args.threads, resume=args.resume,
        progress=not args.quiet)
    result = fit(task, train_set, val_set, config)
    if result.model_path is None:  # a DDP rank other than 0
        return 0
    log(f"done in {result.wall_s / 60:.1f} min: best epoch {result.best_epoch}, "
        + " ".join(f"{k} {v:.4g}" for k, v in result.best_metrics.items()))
    print(result.model_path)
    if args.export:
        dest = Path(args.export)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.model_path, dest)
        print(f"exported {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
    return 0


def add_parser(subparsers) -> None:
    from perception.models import get_model_entry, list_models

    parser = subparsers.add_parser(
        "train", help="train a model (posenet, ...) on drives",
        description="Train a model from scratch on drives (synthetic or imported), validating every epoch. "
        "Writes OUT/model.pt (the best epoch), OUT/train_state.pt (for --resume) and OUT/history.jsonl.")
    models = parser.add_subparsers(dest="model", metavar="MODEL")
    for name in list_models():
        entry = get_model_entry(name)
        if entry.task_factory is None:
            continue
        p = models.add_parser(name, help=entry.description)
        p.add_argument("--data", nargs="+", required=True, metavar="DRIVE",
                       help="training drives; DRIVE@START:STOP:STEP takes a slice of the frames (lund.mcap@0::2)")
        p.add_argument("--val-data", nargs="+", metavar="DRIVE",
                       help="validation drives (default: --val-fraction of the training frames, in blocks)")
        p.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of training frames held out for validation, in 4 s blocks (default %(default)s)")
        p.add_argument("--out", default=f"runs/{name}", help="output directory (default %(default)s)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
        p.add_argument("--export", metavar="PATH", help="also copy the best checkpoint here")
        p.add_argument("--epochs", type=positive_int, default=30, help="(default %(default)s)")
        p.add_argument("--batch-size", type=positive_int, default=32, help="per process (default %(default)s)")
        p.add_argument("--lr", type=positive_float, default=2e-3, help="peak learning rate (default %(default)s)")
        p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default %(default)s)")
        p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up (default %(default)s)")
        p.add_argument("--seed", type=int, default=0, help="seed of everything random (default %(default)s)")
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
        p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
        p.add_argument("--cache-dir", default=None,
                       help="cache decoded, resized frames here (a second run skips JPEG decoding)")
        p.add_argument("--quiet", action="store_true", help="no progress bar (epoch lines only)")
        if entry.add_train_arguments is not None:
            entry.add_train_arguments(p)
        p.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
