"""``streetloc train MODEL --data DRIVE...``: train a registered model on drives (the loop in
`perception.training`, shared by every model). Several processes (GPUs, or CPU with gloo): ``--nproc N``
on one machine, or ``torchrun --nproc-per-node=N -m nodes.cli train MODEL ...`` on each of several
machines (docs/distributed.md).

The subcommands come from the model registry: every model with a training module gets one. Every option
is derived (`nodes.params`) from a config declared once: `perception.training.TrainConfig` (the loop),
`perception.training.DataConfig` (the frames) and the model's own ``Options`` struct; no default, bound or
help text is repeated here.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from nodes.commands import OneLineErrorParser
from nodes.commands.torchrun import add_nproc_argument, relaunch_under_torchrun
from nodes.params import add_params_arguments, params_from_args

# The option names the command had before its options were derived from the configs.
TRAIN_ALIASES = {"out_dir": ["--out"], "num_workers": ["--workers"]}
DATA_ALIASES = {"drives": ["--data"], "val_drives": ["--val-data"]}
# Drives are given as several words (``--data a.mcap b.mcap``), as before, as well as ``a.mcap,b.mcap``.
DRIVE_WORDS = {"nargs": "+", "metavar": "DRIVE"}


def _run(args: argparse.Namespace) -> int:
    code = relaunch_under_torchrun(args, "train")
    if code is not None:
        return code
    from perception.models import get_model_entry
    from perception.training import (
        DataConfig,
        TrainConfig,
        fit,
        init_distributed,
        log,
        resolve_device,
        saved_task_state,
    )

    module = get_model_entry(args.model).training_module()
    config = params_from_args(args, TrainConfig, dest="train", node=f"train {args.model}")
    data = params_from_args(args, DataConfig, dest="data", base={"seed": config.seed}, node=f"train {args.model}")
    options = params_from_args(args, module.Options, dest="options", node=f"train {args.model}")
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)  # before decoding too: data loading uses torch ops
    init_distributed(resolve_device(config.device))  # under torchrun: rank 0 reads a --resume state for all
    setup = module.make_task(options, data, resume_state=saved_task_state(config.out_dir) if config.resume else None)
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


def add_parser(subparsers) -> None:
    from perception.models import get_model_entry, list_models
    from perception.training import DataConfig, TrainConfig

    parser = subparsers.add_parser(
        "train", help="train a model (" + ", ".join(list_models()) + ") on drives",
        description="Train a model from scratch on drives (synthetic or imported), validating every epoch. "
        "Writes OUT/model.pt (the best epoch), OUT/train_state.pt (for --resume) and OUT/history.jsonl.")
    models = parser.add_subparsers(dest="model", metavar="MODEL", parser_class=OneLineErrorParser)
    for name in list_models():
        entry = get_model_entry(name)
        if not entry.training:
            continue
        p = models.add_parser(name, help=entry.description)
        data = p.add_argument_group("data (perception.training.DataConfig)")
        # the seed is TrainConfig's: one --seed seeds the split as well as the loop
        add_params_arguments(data, DataConfig, dest="data", exclude=("seed",), aliases=DATA_ALIASES,
                             required=("drives",), argparse_kwargs={"drives": DRIVE_WORDS, "val_drives": DRIVE_WORDS})
        loop = p.add_argument_group("training loop (perception.training.TrainConfig)")
        add_params_arguments(loop, TrainConfig, dest="train", aliases=TRAIN_ALIASES,
                             defaults={"out_dir": Path("runs") / name})
        # --quiet predates --no-progress and is kept: an inverse flag cannot be an alias of --progress
        loop.add_argument("--quiet", dest="train.progress", action="store_false", default=argparse.SUPPRESS,
                          help="same as --no-progress")
        loop.add_argument("--export", metavar="PATH", help="also copy the best checkpoint here")
        add_nproc_argument(loop)
        add_params_arguments(p.add_argument_group(f"{name} options ({entry.training_module().__name__}.Options)"),
                             entry.training_module().Options, dest="options")
        p.set_defaults(func=_run)
    from nodes.commands import context  # not a network: the scene-context trust model (docs/context.md)

    context.add_parser(models)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
