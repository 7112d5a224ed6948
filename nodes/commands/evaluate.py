"""``streetloc evaluate MODEL --model CKPT --data DRIVE...``: score a checkpoint against a drive's ground
truth (PoseNet: position/heading errors and whether the predicted uncertainty is honest; the segmenter:
per-class IoU and mIoU). The subcommands come from the model registry: every model with an evaluation
module (``evaluate``, ``format_report``: `perception.evaluation`) gets one."""

from __future__ import annotations

import argparse
import json
import math


def _clean(value):
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _run(args: argparse.Namespace) -> int:
    from perception.models import get_model_entry

    module = get_model_entry(args.model_name).evaluation_module()
    result = module.evaluate(args.model, args.data, device=args.device, batch_size=args.batch_size,
                             cache_dir=args.cache_dir, record=args.record)
    if args.json:
        print(json.dumps(_clean(result), indent=1))
    else:
        print(module.format_report(result))
    return 0


def add_parser(subparsers) -> None:
    from perception.models import get_model_entry, list_models

    parser = subparsers.add_parser(
        "evaluate", help="score a trained model on drives (errors, uncertainty honesty, IoU)",
        description="Run a checkpoint over every frame of the drives and compare with their ground truth.")
    models = parser.add_subparsers(dest="model_name", metavar="MODEL")
    for name in list_models():
        entry = get_model_entry(name)
        if not entry.evaluation:
            continue
        p = models.add_parser(name, help=entry.description)
        p.add_argument("--model", default=None, metavar="CKPT",
                       help="checkpoint file or registered weights name (default: the shipped default)")
        p.add_argument("--data", nargs="+", required=True, metavar="DRIVE",
                       help="drives to score; DRIVE@START:STOP:STEP takes a slice of the frames")
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default %(default)s)")
        p.add_argument("--cache-dir", default=None, help="cache of decoded frames (see streetloc train)")
        p.add_argument("--record", action="store_true",
                       help="store the figures in the checkpoint's record (meta.metrics)")
        p.add_argument("--json", action="store_true", help="print the figures as JSON")
        p.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
