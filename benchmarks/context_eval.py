"""Scene context -> fix trust, measured offline (no bus) on VALIDATION drives, fitted and scored by drive.

Each drive's fixes go through the fusion filter (`benchmarks/fusion_eval.py`: the same PoseFilter, top-5
hypotheses, the node's validity flags and the drive's noisy odometry) twice: as PoseNet sends them, and
with each fix's covariance times the context model's inflation (what the fusion node does with
``context=...``: `localization.context.ContextModel.assess`). The model applied to a drive is fitted on the
drives of the *other* fold (two folds, by drive: no drive is scored by a model that saw it).

    PYTHONPATH=. nice -n 10 python benchmarks/context_eval.py --fold-a A.mcap... --fold-b B.mcap... \
        --cache /work/context_data/cache [--json]
    # a fitted model applied as it is (no fitting here: held-out drives allowed, for the ablation)
    PYTHONPATH=. nice -n 10 python benchmarks/context_eval.py --model perception/weights/context_synthetic_city.json \
        --drives HELD_OUT.mcap... --cache DIR

Prints per drive and pooled: median / p95 / > 20 m share / 95 % ellipse coverage / availability of the
fused pose without and with context, for three ways to apply it: ``scale`` (the inlier covariance scale
only), ``trust`` (1 / trust only), ``both`` (what the node does), and ``constant`` (every fix of the drive
inflated by the mean of ``both`` over it: what the same average inflation does without context). The two-fold fit refuses held-out
drives; ``--model`` fits nothing and takes any.
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

from localization.context import FEATURES, FIX_FEATURES, ContextModel, fit_context, score_context  # noqa: E402
from localization.filter import FilterParams  # noqa: E402

HELD_OUT = re.compile(r"(heldout|kidnap_s404|_s(101|202|303|404)\b|_7\d\d\d)")
MODES = ("scale", "trust", "both", "constant")


def inflation(model: ContextModel, x: np.ndarray, mode: str) -> np.ndarray:
    """Per frame the covariance factor; x float [N, F] in `FEATURES` order (the model's columns taken)."""
    x = x[:, [FEATURES.index(f) for f in model.features]]
    p = model.p_outlier(x)
    scale = model.cov_scale(x)
    trust = np.maximum(1.0 - p, model.min_trust)
    return {"scale": scale, "trust": 1.0 / trust, "both": scale / trust}[mode]


SUBSETS = {
    "scene": [f for f in FEATURES if f not in FIX_FEATURES],
    "posenet": list(FIX_FEATURES),
    "all": list(FEATURES),
}


def fit_on(drives: list, l2: float, features: list[str] | None = None) -> ContextModel:
    cols = [FEATURES.index(f) for f in (features or FEATURES)]
    x = np.concatenate([d.x[d.valid][:, cols] for d in drives])
    return fit_context(
        x,
        np.concatenate([d.err_m[d.valid] for d in drives]),
        np.concatenate([d.mahal2[d.valid] for d in drives]),
        l2=l2,
        features=features or FEATURES,
    )


def subset_scores(fit: list, check: list, l2: float) -> dict[str, dict]:
    """What each feature group tells alone: fitted on ``fit``, scored on ``check``."""
    out = {}
    for name, feats in SUBSETS.items():
        cols = [FEATURES.index(f) for f in feats]
        m = fit_on(fit, l2, feats)
        out[name] = score_context(
            m,
            np.concatenate([d.x[d.valid][:, cols] for d in check]),
            np.concatenate([d.err_m[d.valid] for d in check]),
            np.concatenate([d.mahal2[d.valid] for d in check]),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fold-a", nargs="+", default=[], metavar="DRIVE", help="validation drives, fold a")
    ap.add_argument("--fold-b", nargs="+", default=[], metavar="DRIVE", help="validation drives, fold b")
    ap.add_argument("--model", default=None, help="apply this fitted model to --drives instead of fitting")
    ap.add_argument("--drives", nargs="+", default=[], metavar="DRIVE", help="drives --model is applied to")
    ap.add_argument(
        "--cache", required=True, metavar="DIR", help="feature and PoseNet caches (reruns skip the CNNs)"
    )
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument(
        "--drop-below",
        type=float,
        default=0.0,
        help="also a row skipping the fixes trusted less than this (0: no such row)",
    )
    ap.add_argument(
        "--features",
        choices=sorted(SUBSETS),
        default="all",
        help="features of the fitted models (the shipped one: all)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if (
        bool(args.model) == bool(args.fold_a or args.fold_b)
        or (args.model and not args.drives)
        or (not args.model and not (args.fold_a and args.fold_b))
    ):
        raise SystemExit(
            "give --fold-a A... --fold-b B... (fit and score by drive) or --model FILE --drives D..."
        )
    for p in args.fold_a + args.fold_b:
        if HELD_OUT.search(Path(p).name) or "/heldout/" in p:
            raise SystemExit(f"{p}: a held-out drive; tune on validation drives only")
    import torch

    torch.set_num_threads(1)
    from perception.context_data import ContextExtractor

    extractor = ContextExtractor()
    report: dict = {"per_drive": {}, "check": {}}
    if args.model:
        paths = {"a": args.drives}
        folds = {"a": [extractor.drive(p, cache_dir=args.cache) for p in args.drives]}
        models = {"a": ContextModel.load(args.model)}
    else:
        paths = {"a": args.fold_a, "b": args.fold_b}
        folds = {k: [extractor.drive(p, cache_dir=args.cache) for p in v] for k, v in paths.items()}
        models = {
            "a": fit_on(folds["b"], args.l2, SUBSETS[args.features]),
            "b": fit_on(folds["a"], args.l2, SUBSETS[args.features]),
        }  # each fold: the other's model
        report["subsets"] = {
            "a": subset_scores(folds["b"], folds["a"], args.l2),
            "b": subset_scores(folds["a"], folds["b"], args.l2),
        }
    params = FilterParams()
    rows: dict[str, list[dict]] = {"without": [], **{m: [] for m in MODES}}
    if args.drop_below > 0:
        rows["drop"] = []
    for fold, drives in folds.items():
        model = models[fold]
        cols = [FEATURES.index(f) for f in model.features]
        report["check"][fold] = score_context(
            model,
            np.concatenate([d.x[d.valid][:, cols] for d in drives]),
            np.concatenate([d.err_m[d.valid] for d in drives]),
            np.concatenate([d.mahal2[d.valid] for d in drives]),
        )
        for ctx, path in zip(drives, paths[fold], strict=True):
            data = load_drive(
                path, checkpoint=None, hypotheses=5, odometry_noise="typical", cache_dir=args.cache
            )
            where = {int(s): k for k, s in enumerate(ctx.stamps_ns)}
            per = {"without": run_filter(data, params, use_odometry=True, hypotheses=5, fix_std_m=None)}
            for mode in MODES:
                if (
                    mode == "constant"
                ):  # no context: every fix inflated by the model's mean ("both", valid fixes)
                    infl = np.full(len(ctx.x), float(np.mean(inflation(model, ctx.x[ctx.valid], "both"))))
                else:
                    infl = inflation(model, ctx.x, mode)
                scaled = dataclasses.replace(
                    data,
                    fixes=[
                        [h._replace(cov_enu_m2=h.cov_enu_m2 * float(infl[where[int(s)]])) for h in hyps]
                        if int(s) in where
                        else hyps
                        for s, hyps in zip(data.stamps_ns, data.fixes, strict=True)
                    ],
                )
                per[mode] = run_filter(scaled, params, use_odometry=True, hypotheses=5, fix_std_m=None)
            if args.drop_below > 0:  # fixes the model trusts less than this skipped (as a flagged fix)
                cols = [FEATURES.index(f) for f in model.features]
                low = 1.0 - model.p_outlier(ctx.x[:, cols]) < args.drop_below
                flags = [
                    (["low_trust"] if int(s) in where and low[where[int(s)]] else [])
                    + (list(data.flags[k]) if data.flags else [])
                    for k, s in enumerate(data.stamps_ns)
                ]
                per["drop"] = run_filter(
                    dataclasses.replace(data, flags=flags),
                    params,
                    use_odometry=True,
                    hypotheses=5,
                    fix_std_m=None,
                )
            report["per_drive"][Path(path).name] = {k: summarize(r) for k, r in per.items()}
            for k, r in per.items():
                rows[k].append(r)
    report["pooled"] = {
        k: summarize({f: np.concatenate([r[f] for r in v]) for f in ("err", "inside", "tracking")})
        for k, v in rows.items()
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for fold, c in report["check"].items():
        which = f"model {args.model}" if args.model else f"fold {fold} (model fitted on the other fold)"
        print(
            f"{which}: outlier AUC {c['auc']:.3f}, log loss {c['log_loss']:.3f} "
            f"(constant {c['log_loss_constant']:.3f}), inlier 95% coverage {c['inlier_coverage_raw']:.1%} -> "
            f"{c['inlier_coverage_scaled']:.1%}, all fixes {c['coverage_raw']:.1%} -> {c['coverage_inflated']:.1%}"
        )
    for fold, table in report.get("subsets", {}).items():
        print(
            f"fold {fold}, outlier AUC by feature group: "
            + ", ".join(f"{k} {v['auc']:.3f}" for k, v in table.items())
        )
    head = f"{'':34s}{'median m':>9s}{'p95 m':>8s}{'>20 m':>8s}{'in 95%':>8s}{'avail':>8s}"
    for name, table in [*report["per_drive"].items(), ("pooled", report["pooled"])]:
        print(f"\n{name}\n{head}")
        for k, s in table.items():
            label = (
                "fused"
                if k == "without"
                else "fused, constant inflation"
                if k == "constant"
                else f"fused, trust < {args.drop_below:g} skipped"
                if k == "drop"
                else f"fused + context ({k})"
            )
            print(
                f"  {label:32s}{s['median_m']:9.2f}{s['p95_m']:8.1f}{s['over_20m']:8.1%}{s['in_95_ellipse']:8.1%}"
                f"{s['availability']:8.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
