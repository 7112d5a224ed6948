"""``streetloc train context --data DRIVE... [--check-data DRIVE...] [--out FILE]``: fit the scene-context
trust model (`localization.context`) on validation drives and write it as a versioned JSON file.

The CNNs (PoseNet, segmenter, detector: the nodes' predictors) run on every ``--step``-th frame of each
drive (cached per drive in ``--cache-dir``); the fit itself is numpy and takes a second. Figures on the
``--check-data`` drives (never fitted on) are stored in the file's ``check`` and printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nodes.commands import OneLineErrorParser, positive_float

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "perception" / "weights" / "context_synthetic_city.json"


def _run(args: argparse.Namespace) -> int:
    for path in [*args.data, *args.check_data]:
        if not Path(path).is_file():
            raise SystemExit(f"streetloc train context: drive {path}: no such file")
    import torch

    torch.set_num_threads(args.threads)
    from perception.context_data import ContextExtractor, fit_drives

    extractor = ContextExtractor(
        posenet=args.posenet or None, segmenter=args.segmenter or None, detector=args.detector or None
    )
    try:
        model = fit_drives(
            args.data,
            args.check_data,
            extractor=extractor,
            step=args.step,
            cache_dir=args.cache_dir,
            l2=args.l2,
            scale_l2=args.scale_l2,
            outlier_m=args.outlier_m,
        )
    except ValueError as exc:
        raise SystemExit(f"streetloc train context: {exc}") from None
    model.save(args.out)
    fit = model.recipe["fit_score"]
    print(
        f"fitted on {fit['frames']} frames of {len(model.data)} drives ({fit['outlier_rate']:.1%} over "
        f"{model.outlier_m:g} m): outlier AUC {fit['auc']:.3f}"
    )
    if model.check:
        c = model.check
        print(
            f"check on {c['frames']} frames of {len(c['drives'])} other drives: outlier AUC {c['auc']:.3f}, log loss "
            f"{c['log_loss']:.3f} (constant rate {c['log_loss_constant']:.3f}), inlier 95 % coverage "
            f"{c['inlier_coverage_raw']:.1%} -> {c['inlier_coverage_scaled']:.1%} (per drive: "
            + ", ".join(
                f"{d['inlier_coverage_raw']:.1%} -> {d['inlier_coverage_scaled']:.1%}"
                for d in c["drives"]
                if "inlier_coverage_raw" in d
            )
            + f"), inlier NLL change {c['inlier_nll_change']:+.3f}"
        )
    if args.json:
        print(json.dumps({"fit": fit, "check": model.check}, indent=1))
    print(args.out)
    return 0


def add_parser(models) -> None:
    """``context`` under ``streetloc train`` (``models``: its subparsers)."""
    p = models.add_parser(
        "context",
        help="scene context -> PoseNet fix trust (a small fitted model, JSON)",
        description=__doc__.split("\n\n")[0],
    )
    assert isinstance(p, OneLineErrorParser)
    p.add_argument("--data", nargs="+", required=True, metavar="DRIVE", help="validation drives to fit on")
    p.add_argument(
        "--check-data",
        nargs="+",
        default=[],
        metavar="DRIVE",
        help="other validation drives: the figures stored in the file's 'check'",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="the model file (default: perception/weights/context_synthetic_city.json)",
    )
    p.add_argument("--step", type=int, default=1, help="every N-th frame (default: 1)")
    p.add_argument("--l2", type=positive_float, default=1.0, help="L2 penalty of the outlier fit (default: 1)")
    p.add_argument(
        "--scale-l2",
        type=positive_float,
        default=300.0,
        help="L2 penalty of the inlier scale's quantile fit (default: 300)",
    )
    p.add_argument("--outlier-m", type=positive_float, default=20.0, help="an outlier fix is this far off, m")
    p.add_argument("--cache-dir", default=None, help="keep each drive's features here (reruns skip the CNNs)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--posenet", default="", help="PoseNet checkpoint (default: the shipped one)")
    p.add_argument("--segmenter", default="", help="segmenter checkpoint (default: the shipped one)")
    p.add_argument("--detector", default="", help="detector checkpoint (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=_run)
