"""Where a drive's fused frames more than 20 m off (or outside the 95 % ellipse) come from: per frame the
filter's status, error, reported std and candidate tracks beside PoseNet's hypotheses near the truth.
Validation drives only for tuning (the same refusal as fusion_tune.py).

    python benchmarks/fusion_why.py VAL.mcap... [--checkpoint CKPT] [--param NAME=V] [--verbose]

Per drive: frames, valid frames, valid frames > 20 m off split by cause ("no hypothesis within 20 m this
frame": PoseNet's bound; "right street is a candidate": a candidate track within 20 m of the truth;
"right hypothesis present, no candidate"), and the frames outside the 95 % ellipse by error band.
``--verbose`` adds one line per frame that is valid and off (> 20 m or outside), or whose status changes:
time s, status, error m, reported std m (largest axis), inside, confirmed, flagged, candidates
(distance to the truth m, log-likelihood ratio nats), hypotheses within 20 m (rank, weight).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fusion_eval import CHI2_2DOF_95, load_drive  # noqa: E402
from benchmarks.fusion_tune import parse_setting  # noqa: E402
from localization.filter import FilterParams, PoseFilter  # noqa: E402
from localization.measurements import ODOMETRY, POSENET, FixMeasurement, OdometryMeasurement  # noqa: E402


def frames(path: str, params: FilterParams, checkpoint: str | None, cache: str) -> tuple[str, list[dict]]:
    """One row per camera frame of ``path`` (PoseNet cached in ``cache``): what the filter reported then."""
    d = load_drive(path, checkpoint=checkpoint, hypotheses=5, odometry_noise="typical", cache_dir=cache)
    f = PoseFilter(params)
    events = [(s, 0, ODOMETRY, OdometryMeasurement(v, w)) for s, v, w in d.odometry]
    for k, (s, hyps) in enumerate(zip(d.stamps_ns, d.fixes, strict=True)):
        flagged = bool(d.flags and d.flags[k])
        events.append((int(s), 1, POSENET, (k, None if flagged else FixMeasurement(hyps[:5]))))
    events.sort(key=lambda e: (e[0], e[1]))
    rows = []
    for s, _, kind, m in events:
        k = None
        if kind == POSENET:
            k, m = m
        if m is not None:
            f.handle(kind, s, m)
        if k is None:
            continue
        pose = f.pose(s)
        truth = d.truth_en_m[k]
        off = truth - np.array([pose.east_m, pose.north_m])
        cov = np.array(pose.cov_enu_m2).reshape(2, 2)
        near = [(i, h.weight) for i, h in enumerate(d.fixes[k]) if np.hypot(h.east_m - truth[0], h.north_m - truth[1]) <= 20]
        rows.append({"t_s": (s - d.stamps_ns[0]) * 1e-9, "status": pose.status, "err_m": float(np.hypot(*off)),
                     "valid": pose.valid, "inside": float(off @ np.linalg.solve(cov, off)) < CHI2_2DOF_95,
                     "std_m": float(np.sqrt(np.linalg.eigvalsh(cov)[-1])), "confirmed": f._core.confirmed,
                     "flagged": bool(d.flags and d.flags[k]), "near": near,
                     "candidates": [(float(np.hypot(c.x[0] - truth[0], c.x[1] - truth[1])), c.llr)
                                    for c in f._core.candidates]})
    return d.name, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drives", nargs="+")
    ap.add_argument("--cache", default="/work/fusion_data/cache", help="fusion_eval's PoseNet cache folder")
    ap.add_argument("--checkpoint", default=None, help="PoseNet checkpoint (default: the default weights)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=V", help="a FilterParams field")
    ap.add_argument("--verbose", action="store_true", help="a line per off frame and per status change")
    args = ap.parse_args(argv)
    for d in args.drives:
        if any(f"s{s}" in Path(d).name for s in ("101", "202", "303", "404")) or "_s7" in Path(d).name:
            raise SystemExit(f"{d}: a held-out drive; look at validation drives (route seeds 600-699) only")
    params = FilterParams(**parse_setting(",".join(args.param)))
    for path in args.drives:
        name, rows = frames(path, params, args.checkpoint, args.cache)
        valid = [r for r in rows if r["valid"]]
        off = [r for r in valid if r["err_m"] > 20]
        causes: dict[str, int] = {}
        for r in off:
            cause = ("no hypothesis within 20 m this frame" if not r["near"] else "right street is a candidate"
                     if any(dist < 20 for dist, _ in r["candidates"]) else "right hypothesis present, no candidate")
            causes[cause] = causes.get(cause, 0) + 1
        outside = [r["err_m"] for r in valid if not r["inside"]]
        bands = {"< 5 m": sum(e < 5 for e in outside), "5-20 m": sum(5 <= e < 20 for e in outside),
                 "> 20 m": sum(e >= 20 for e in outside)}
        print(f"{name}: frames {len(rows)}, valid {len(valid)}, > 20 m {len(off)} {causes}; "
              f"outside the 95 % ellipse {len(outside)} {bands}")
        if args.verbose:
            prev = None
            for r in rows:
                key = (r["status"], r["err_m"] > 20, r["inside"])
                if (r["valid"] and (r["err_m"] > 20 or not r["inside"])) or key != prev:
                    print(f"  t={r['t_s']:6.1f} {r['status']:12s} err {r['err_m']:7.1f} std {r['std_m']:6.1f} "
                          f"in95 {r['inside']:d} conf {r['confirmed']:d} flag {r['flagged']:d} candidates "
                          f"{[(round(c), round(llr, 1)) for c, llr in r['candidates']]} near "
                          f"{[(i, round(w, 2)) for i, w in r['near']]}")
                prev = key
    return 0


if __name__ == "__main__":
    sys.exit(main())
