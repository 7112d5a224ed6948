"""``streetloc train MODEL --data DRIVE...``: train a registered model on drives (the loop in
`perception.training`, shared by every model). Multi-GPU: ``torchrun --nproc-per-node=N -m nodes.cli
train MODEL ...`` (see docs/posenet.md).

The subcommands come from the model registry: every model with a training module gets one, with the
shared flags below and the model's own from its ``Options`` struct (`perception.training`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import msgspec
from msgspec import inspect as mi

from nodes.commands import pair_of_ints, positive_float, positive_int


def _run(args: argparse.Namespace) -> int:
    from perception.models import get_model_entry
    from perception.training import DataConfig, TrainConfig, fit, log, saved_task_state

    entry = get_model_entry(args.model)
    module = entry.training_module()
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val-fraction {args.val_fraction!r} is outside [0, 1)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # before decoding too: data loading uses torch ops
    options = options_from_args(args, module.Options)
    data = DataConfig(drives=args.data, val_drives=args.val_data or (), val_fraction=args.val_fraction,
                      seed=args.seed, cache_dir=args.cache_dir)
    setup = module.make_task(options, data, resume_state=saved_task_state(args.out) if args.resume else None)
    config = TrainConfig(
        out_dir=Path(args.out), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device,
        amp=not args.no_amp, num_workers=args.workers, threads=args.threads, resume=args.resume,
        progress=not args.quiet)
    result = fit(setup.task, setup.train_set, setup.val_set, config)
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


# ------------------------------------------------------------------ a model's Options struct as flags


def add_options_arguments(parser: argparse.ArgumentParser, options_type: type[msgspec.Struct]) -> None:
    """One flag per field of ``options_type`` (``input_size`` -> ``--input-size``): type, choices and
    default from the annotation; help from ``Meta(description=...)``; a pair of ints is ``AxB`` (``extra``:
    ``metavar``, ``low``, ``high``); a bool that defaults to true is ``--no-NAME``."""
    for f in mi.type_info(options_type).fields:  # type: ignore[attr-defined]
        t, description, extra = f.type, "", {}
        if isinstance(t, mi.Metadata):
            description = (t.extra_json_schema or {}).get("description", "")
            extra = t.extra or {}
            t = t.type
        flag = "--" + f.name.replace("_", "-")
        if isinstance(t, mi.BoolType):
            if f.default:
                parser.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                                    help=f"without {description}")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=description)
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": f.default}
        if isinstance(t, mi.TupleType) and len(t.item_types) == 2:
            # parsed in options_from_args: a bad value is then one line and exit 2, as every bad input
            metavar = extra.get("metavar", "AxB")
            kw.update(metavar=metavar, type=str)
            shown = f"{f.default[0]}x{f.default[1]}"
        elif isinstance(t, mi.LiteralType):
            kw.update(choices=t.values, type=type(t.values[0]))
            shown = f.default
        else:
            kw["type"] = {mi.IntType: int, mi.FloatType: float, mi.StrType: str}[type(t)]
            shown = f.default
        parser.add_argument(flag, help=f"{description} (default {shown})".replace("%", "%%"), **kw)


def options_from_args(args: argparse.Namespace, options_type: type[msgspec.Struct]) -> msgspec.Struct:
    """The options struct from parsed flags; its bounds checked (ValueError naming the flag)."""
    values = {}
    for f in mi.type_info(options_type).fields:  # type: ignore[attr-defined]
        value = getattr(args, f.name)
        t = f.type.type if isinstance(f.type, mi.Metadata) else f.type
        if isinstance(t, mi.TupleType) and isinstance(value, str):
            extra = (f.type.extra if isinstance(f.type, mi.Metadata) else None) or {}
            try:
                value = pair_of_ints(value, option="--" + f.name.replace("_", "-"),
                                     names=extra.get("metavar", "AxB"), low=extra.get("low", 1),
                                     high=extra.get("high", 1 << 16))
            except argparse.ArgumentTypeError as exc:
                raise ValueError(str(exc)) from None
        values[f.name] = value
    try:
        return msgspec.convert(values, options_type)
    except msgspec.ValidationError as exc:
        text = str(exc)
        name = text.rpartition("`$.")[2].rstrip("`").split("[")[0]
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{flag} {values.get(name)!r}: {text.partition(' - at ')[0]}") from None


def add_parser(subparsers) -> None:
    from perception.models import get_model_entry, list_models

    parser = subparsers.add_parser(
        "train", help="train a model (" + ", ".join(list_models()) + ") on drives",
        description="Train a model from scratch on drives (synthetic or imported), validating every epoch. "
        "Writes OUT/model.pt (the best epoch), OUT/train_state.pt (for --resume) and OUT/history.jsonl.")
    models = parser.add_subparsers(dest="model", metavar="MODEL")
    for name in list_models():
        entry = get_model_entry(name)
        if not entry.training:
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
        add_options_arguments(p.add_argument_group(f"{name} options"), entry.training_module().Options)
        p.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
