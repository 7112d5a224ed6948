"""Scene context -> fix trust, measured offline (no bus) on VALIDATION drives, fitted and scored by drive.

Each drive's fixes go through the fusion filter (`benchmarks/fusion_eval.py`: the same PoseFilter, top-5
hypotheses, the node's validity flags and the drive's noisy odometry) twice: as PoseNet sends them, and
with each fix's covariance times the context model's inflation (what the fusion node does with
``context=...``: `localization.context.ContextModel.assess`). The model applied to a drive is fitted on the
drives of the *other* fold (two folds, by drive: no drive is scored by a model that saw it).

    PYTHONPATH=. nice -n 10 python benchmarks/context_eval.py --fold-a A.mcap... --fold-b B.mcap... \
        --cache /work/context_data/cache [--json]

Prints per drive and pooled: median / p95 / > 20 m share / 95 % ellipse coverage / availability of the
fused pose without and with context, for three ways to apply it: ``scale`` (the inlier covariance scale
only), ``trust`` (1 / trust only) and ``both`` (what the node does). Refuses held-out drives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_eval import load_drive, run_filter, summarize  # noqa: E402

from localization.context import ContextModel, fit_context, score_context  # noqa: E402
from localization.filter import FilterParams  # noqa: E402

HELD_OUT = re.compile(r"(heldout|kidnap_s404|_s(101|202|303|404)\b|_7\d\d\d)")
MODES = ("scale", "trust", "both")


def inflation(model: ContextModel, x: np.ndarray, mode: str) -> np.ndarray:
    p = model.p_outlier(x)
    scale = model.cov_scale(x)
    trust = np.maximum(1.0 - p, model.min_trust)
    return {"scale": scale, "trust": 1.0 / trust, "both": scale / trust}[mode]


def fit_on(drives: list, l2: float) -> ContextModel:
    x = np.concatenate([d.x[d.valid] for d in drives])
    return fit_context(x, np.concatenate([d.err_m[d.valid] for d in drives]),
                       np.concatenate([d.mahal2[d.valid] for d in drives]), l2=l2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fold-a", nargs="+", required=True, metavar="DRIVE")
    ap.add_argument("--fold-b", nargs="+", required=True, metavar="DRIVE")
    ap.add_argument("--cache", required=True, metavar="DIR", help="feature and PoseNet caches (reruns skip the CNNs)")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for p in args.fold_a + args.fold_b:
        if HELD_OUT.search(Path(p).name) or "/heldout/" in p:
            raise SystemExit(f"{p}: a held-out drive; tune on validation drives only")
    import torch

    torch.set_num_threads(1)
    from perception.context_data import ContextExtractor

    extractor = ContextExtractor()
    folds = {"a": [extractor.drive(p, cache_dir=args.cache) for p in args.fold_a],
             "b": [extractor.drive(p, cache_dir=args.cache) for p in args.fold_b]}
    models = {"a": fit_on(folds["b"], args.l2), "b": fit_on(folds["a"], args.l2)}  # each fold's model: the other's
    params = FilterParams()
    rows: dict[str, list[dict]] = {"without": [], **{m: [] for m in MODES}}
    report: dict = {"per_drive": {}, "check": {}}
    for fold, drives in folds.items():
        model = models[fold]
        v = [d for d in drives]
        report["check"][fold] = score_context(model, np.concatenate([d.x[d.valid] for d in v]),
                                              np.concatenate([d.err_m[d.valid] for d in v]),
                                              np.concatenate([d.mahal2[d.valid] for d in v]))
        for ctx, path in zip(drives, args.fold_a if fold == "a" else args.fold_b, strict=True):
            data = load_drive(path, checkpoint=None, hypotheses=5, odometry_noise="typical", cache_dir=args.cache)
            where = {int(s): k for k, s in enumerate(ctx.stamps_ns)}
            per = {"without": run_filter(data, params, use_odometry=True, hypotheses=5, fix_std_m=None)}
            for mode in MODES:
                infl = inflation(model, ctx.x, mode)
                scaled = dataclasses.replace(data, fixes=[
                    [h._replace(cov_enu_m2=h.cov_enu_m2 * float(infl[where[int(s)]])) for h in hyps]
                    if int(s) in where else hyps for s, hyps in zip(data.stamps_ns, data.fixes, strict=True)])
                per[mode] = run_filter(scaled, params, use_odometry=True, hypotheses=5, fix_std_m=None)
            report["per_drive"][Path(path).name] = {k: summarize(r) for k, r in per.items()}
            for k, r in per.items():
                rows[k].append(r)
    report["pooled"] = {k: summarize({f: np.concatenate([r[f] for r in v]) for f in ("err", "inside", "tracking")})
                        for k, v in rows.items()}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for fold, c in report["check"].items():
        print(f"fold {fold} (model fitted on the other fold): outlier AUC {c['auc']:.3f}, log loss {c['log_loss']:.3f} "
              f"(constant {c['log_loss_constant']:.3f}), inlier 95% coverage {c['inlier_coverage_raw']:.1%} -> "
              f"{c['inlier_coverage_scaled']:.1%}, all fixes {c['coverage_raw']:.1%} -> {c['coverage_inflated']:.1%}")
    head = f"{'':34s}{'median m':>9s}{'p95 m':>8s}{'>20 m':>8s}{'in 95%':>8s}{'avail':>8s}"
    for name, table in [*report["per_drive"].items(), ("pooled", report["pooled"])]:
        print(f"\n{name}\n{head}")
        for k, s in table.items():
            label = "fused" if k == "without" else f"fused + context ({k})"
            print(f"  {label:32s}{s['median_m']:9.2f}{s['p95_m']:8.1f}{s['over_20m']:8.1%}{s['in_95_ellipse']:8.1%}"
                  f"{s['availability']:8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
