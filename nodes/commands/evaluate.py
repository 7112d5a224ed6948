"""``streetloc evaluate MODEL --model CKPT --data DRIVE...``: score a checkpoint against a drive's ground
truth (PoseNet: position/heading errors and whether the predicted uncertainty is honest; the segmenter:
per-class IoU and mIoU). The subcommands come from the model registry: every model with an evaluation
module (``evaluate``, ``format_report``: `perception.evaluation`) gets one."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from dataclasses import asdict

from nodes.commands import OneLineErrorParser, filtered_c_stderr
from nodes.commands.torchrun import add_nproc_argument, relaunch_under_torchrun
from nodes.params import add_params_arguments, params_from_args


def _clean(value):
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _drive_damage(data: list[str]) -> list[str]:
    """One line per drive file of ``--data`` that is truncated or damaged (``DriveReader.damage``); a
    folder or another format (a dataset some model reads) is the model's business."""
    from perception.datasets import DriveSpec
    from perception.drives import DriveReader

    lines = []
    for text in data:
        path = DriveSpec.parse(text).path
        if path.suffix == ".mcap" and path.is_file():
            with DriveReader(path) as reader:
                if reader.damage():
                    lines.append(reader.damage())
    return lines


def _skipped_line(result: dict, libjpeg_warnings: int) -> str:
    """One line counting the frames not scored (per reason) and the libjpeg warnings swallowed."""
    parts = [f"{n} frames skipped ({reason})" for reason, n in (result.get("skipped") or {}).items() if n]
    if libjpeg_warnings:
        parts.append(f"{libjpeg_warnings} libjpeg warnings on damaged frames that still decoded")
    return "; ".join(parts)


def _run(args: argparse.Namespace) -> int:
    code = relaunch_under_torchrun(args, "evaluate")
    if code is not None:
        return code
    from perception.distributed import env_rank, init_distributed, shutdown_distributed
    from perception.evaluation import EvalConfig
    from perception.models import get_model_entry
    from perception.training import resolve_device

    module = get_model_entry(args.model_name).evaluation_module()
    config = params_from_args(args, EvalConfig, dest="eval", node=f"evaluate {args.model_name}")
    if args.plot and not hasattr(module, "plot_report"):
        print(f"streetloc evaluate {args.model_name}: --plot is not available for this model", file=sys.stderr)
        return 2
    extra = {}
    if "allow_out_of_area" in inspect.signature(module.evaluate).parameters:  # models with a training area
        extra["allow_out_of_area"] = args.allow_out_of_area
    if "places" in inspect.signature(module.evaluate).parameters:  # PoseNet with a place index
        extra["places"] = not args.no_places
    if env_rank() == 0:
        for line in _drive_damage(args.data):  # truncated drives are scored as far as they go, and said so
            print(f"streetloc evaluate: warning: {line}", file=sys.stderr)
    # under torchrun: join the others (each process then uses its own GPU); every process gets the report
    init_distributed(resolve_device(config.device))
    try:
        with filtered_c_stderr() as libjpeg:  # counted below instead of one raw line per damaged frame
            result = module.evaluate(args.model, args.data, **asdict(config), **extra)
    finally:
        shutdown_distributed()
    if env_rank() != 0:  # one report, from rank 0
        return 0
    if line := _skipped_line(result, libjpeg.count):
        print(f"streetloc evaluate: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(_clean(result), indent=1))
    else:
        print(module.format_report(result))
    if args.plot:
        module.plot_report(result, args.plot)
    return 0


def add_parser(subparsers) -> None:
    from perception.evaluation import EvalConfig
    from perception.models import get_model_entry, list_models

    parser = subparsers.add_parser(
        "evaluate", help="score a trained model on drives (errors, uncertainty honesty, IoU)",
        description="Run a checkpoint over every frame of the drives and compare with their ground truth.")
    models = parser.add_subparsers(dest="model_name", metavar="MODEL", parser_class=OneLineErrorParser)
    for name in list_models():
        entry = get_model_entry(name)
        if not entry.evaluation:
            continue
        p = models.add_parser(name, help=entry.description)
        p.add_argument("--model", default=None, metavar="CKPT",
                       help="checkpoint file or registered weights name (default: the shipped default)")
        p.add_argument("--data", nargs="+", required=True, metavar="DRIVE",
                       help="drives to score; DRIVE@START:STOP:STEP takes a slice of the frames")
        # device, batch size, frame cache, --record: declared once in perception.evaluation.EvalConfig
        add_params_arguments(p, EvalConfig, dest="eval")
        p.add_argument("--json", action="store_true", help="print the figures as JSON")
        p.add_argument("--plot", default="", metavar="PNG",
                       help="write the model's diagnostic plot (PoseNet: hypothesis-weight reliability diagram)")
        p.add_argument("--allow-out-of-area", action="store_true",
                       help="score drives outside the model's training area (default: refuse, exit 2)")
        p.add_argument("--no-places", action="store_true",
                       help="PoseNet: score the regression alone, without the checkpoint's place index")
        add_nproc_argument(p)
        p.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
