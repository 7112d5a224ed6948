"""The wrong-map table of docs/landmarks.md: the filter without a map, with an exact one, one missing the
near head of every approach, one with extra signs, one with every landmark displaced 2 m, on the simulated
avenue of tests/localization/test_landmarks.py (50 s, 6 intersections). Pure numpy, a few seconds a run.

    python benchmarks/landmarks_wrong_map.py [--seeds 1 2 3] [--good-fixes] [--set key=value ...]

``--good-fixes``: fixes like the place-recognition PoseNet's (0.15 m persistent, 0.1 m white, claiming 0.3 m)
instead of the regression PoseNet's 3 m; ``--set`` overrides ``LandmarkParams`` fields
(``--set trust_map_below_std_m=0``: the map's position std always counts at least ``min_map_std_m``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "localization")]

import test_landmarks as T  # noqa: E402  (the tests' street, boxes and drive)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--good-fixes", action="store_true", help="fixes as good as the place PoseNet's")
    ap.add_argument("--set", action="append", default=[], help="LandmarkParams field=value")
    args = ap.parse_args()
    params = T.LandmarkParams(**{k: float(v) for k, v in (a.split("=", 1) for a in args.set)})
    fixes = T.GOOD_FIXES if args.good_fixes else {}
    world = T.avenue()
    maps = {"none": None, "exact": world.map(),
            "missing near heads": world.map(drop={f"sig/{k}/0/post" for k in range(7)}),
            "6 extra signs": world.map(extra=[(f"x{k}", (6.0, 40.0 + 80 * k, 2.0, 0.75, 0.6, T.TRAFFIC_SIGN))
                                              for k in range(6)]),
            "displaced 2 m": world.map(displace_m=2.0)}
    print("| map | seed | median m | p95 m | max m |")
    print("|---|---|---|---|---|")
    for name, m in maps.items():
        for seed in args.seeds:
            e = T.drive(world, m, seed=seed, params=params, **fixes)
            print(f"| {name} | {seed} | {np.median(e):.3f} | {np.percentile(e, 95):.2f} | {e.max():.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
