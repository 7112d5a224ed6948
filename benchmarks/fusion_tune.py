"""Tune the pose filter on VALIDATION drives only (route seeds 600-699; never the held-out 101/202/303/404,
7000-7999): each ``--try NAME=V,NAME=V`` setting of `FilterParams` is run over the drives (PoseNet outputs
cached by `benchmarks.fusion_eval`), one line of figures per setting, the issue-13 targets beside them.

    python benchmarks/fusion_tune.py /work/fusion_data/val/*.mcap --cache /work/fusion_data/cache \\
        --try "" --try switch_llr=6 --try switch_llr=12,fix_cov_scale=2

Figures: all frames of the drives together (median / p95 m, share > 20 m, 95 % coverage, availability),
the kidnap drives' worst recovery time (s; inf: not within the drive), the blackout drives' DEGRADED share,
coverage in the dark and error when the camera returns (worst). Camera only with ``--no-odometry``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fusion_eval import load_drive, run_filter, summarize  # noqa: E402
from localization.filter import FilterParams  # noqa: E402


def parse_setting(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in FilterParams.__dataclass_fields__ or not value:
            raise SystemExit(f"--try {text!r}: {item!r} is not NAME=VALUE with NAME a FilterParams field")
        out[name] = type(getattr(FilterParams(), name))(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drives", nargs="+")
    ap.add_argument("--cache", required=True, help="fusion_eval's PoseNet cache folder")
    ap.add_argument("--hypotheses", type=int, default=5)
    ap.add_argument("--checkpoint", default=None, help="PoseNet checkpoint (default: the default weights)")
    ap.add_argument("--no-odometry", action="store_true")
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="NAME=V,...")
    ap.add_argument("--per-drive", action="store_true", help="also a line per drive")
    ap.add_argument("--use-flagged", default="", metavar="REASON,...",
                    help="fixes flagged only for these reasons are used anyway (e.g. out_of_area)")
    args = ap.parse_args(argv)
    for d in args.drives:
        if any(f"s{s}" in Path(d).name for s in ("101", "202", "303", "404")) or "_s7" in Path(d).name:
            raise SystemExit(f"{d}: a held-out drive; tune on validation drives (route seeds 600-699) only")
    data = [load_drive(d, checkpoint=args.checkpoint, hypotheses=args.hypotheses, odometry_noise="typical",
                       cache_dir=args.cache) for d in args.drives]
    print(f"{'setting':44s}{'med':>6s}{'p95':>7s}{'>20m':>7s}{'in95':>6s}{'avail':>6s}{'kidnap s':>9s}"
          f"{'bo deg':>7s}{'bo in95':>8s}{'bo m':>6s}{'us':>5s}")
    for t in args.tries or [""]:
        params = FilterParams(**parse_setting(t))
        results = [run_filter(dd, params, use_odometry=not args.no_odometry, hypotheses=args.hypotheses,
                              fix_std_m=None, use_flagged=frozenset(filter(None, args.use_flagged.split(","))))
                   for dd in data]
        s = summarize({f: np.concatenate([r[f] for r in results]) for f in ("err", "inside", "tracking")})
        kid = [r["kidnap_recover_s"] if r.get("kidnap_lost_reported") else np.inf
               for r in results if "kidnap_recover_s" in r]
        bo = [r for r in results if "blackout_degraded" in r]
        line = (f"{s['median_m']:6.2f}{s['p95_m']:7.1f}{s['over_20m']:7.1%}{s['in_95_ellipse']:6.1%}"
                f"{s['availability']:6.0%}{max(kid, default=np.nan):9.1f}"
                f"{min((r['blackout_degraded'] for r in bo), default=np.nan):7.0%}"
                f"{min((r['blackout_in_95'] for r in bo), default=np.nan):8.0%}"
                f"{max((r['blackout_return_err_m'] for r in bo), default=np.nan):6.1f}"
                f"{np.median([r['update_us_median'] for r in results]):5.0f}")
        print(f"{t or '(defaults)':44s}{line}", flush=True)
        if args.per_drive:
            for dd, r in zip(data, results, strict=True):
                s = summarize(r)
                shares = " ".join(f"{st[:4]} {np.mean(r['status'] == st):.0%}"
                                  for st in ("degraded", "lost", "initializing"))
                e_any = r["err_any"][np.isfinite(r["err_any"])]
                print(f"    {dd.name:40s}{s['median_m']:6.2f}{s['p95_m']:7.1f}{s['over_20m']:7.1%}"
                      f"{s['in_95_ellipse']:6.1%}{s['availability']:6.0%}  {shares}; with LOST: >20m "
                      f"{np.mean(e_any > 20):.1%} p95 {np.percentile(e_any, 95):.1f}; relocs {r['relocalisations']}"
                      f"{'  kidnap {:.1f} s'.format(r['kidnap_recover_s']) if 'kidnap_recover_s' in r else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
