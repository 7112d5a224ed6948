"""Landmarks (issue 14 item 2): fused pose with and without the city's landmark map, through the real graph,
one table row per drive.

The runs are `benchmarks/ablation.py`'s rows ``fusion`` (PoseNet + odometry) and ``landmarks`` (the same +
the detector + ``map=`` of the drive's city, ``streetloc sim --export-map --map-of DRIVE``): lock-step
replays through launch/replay.toml on a bus of their own, recorded in OUT and re-used on a re-run (delete a
run to re-make it). Per drive: median / p95 / max / > 20 m share / 95 % ellipse coverage / availability of
the fused pose at the fixes' stamps, landmarks used per fix, kidnap recovery.

    nice -n 10 python benchmarks/landmarks_measure.py /work/fusion_data/val/val_s601_day.mcap ... --out /tmp/lm

Validation drives only for tuning (route seeds 600-699); `benchmarks/ablation.py` pools the held-out ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import city_map, record_run  # noqa: E402

from nodes.commands.eval import evaluate  # noqa: E402
from perception.drives import DriveReader  # noqa: E402
from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC  # noqa: E402

ROWS = (("fused", "fusion"), ("fused+landmarks", "landmarks"))  # (table name, ablation row)


def landmarks_per_fix(run: Path) -> float:
    with DriveReader(str(run)) as r:
        used = sum(p.landmarks_used for p in r.fixes(POSE_TOPIC))
        fixes = sum(1 for _ in r.fixes(POSENET_TOPIC))
    return used / max(fixes, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("drives", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder for maps and recordings (re-used)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| drive | run | median m | p95 m | max m | > 20 m | in 95 % ellipse | availability | landmarks/fix | kidnap recovery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for drive in args.drives:
        map_path = str(city_map(drive, args.out).resolve())
        for name, row in ROWS:
            run = record_run(drive, row, map_path, args.out)
            rep = evaluate(str(run), str(drive))
            f = rep["fused_at_fixes"]
            kidnaps = rep["fused"].get("kidnaps", [])
            recovery = ", ".join("never" if k["recover_s"] is None else f"{k['recover_s']:.1f} s"
                                 + ("" if k["lost_reported"] else " (no LOST)") for k in kidnaps) or "-"
            print(f"| {drive.stem} | {name} | {f['median_m']:.2f} | {f['p95_m']:.2f} | {f['max_m']:.1f} | "
                  f"{100 * f['over_20m']:.1f} % | {100 * f['in_95_ellipse']:.0f} % | {100 * f['availability']:.0f} % | "
                  f"{landmarks_per_fix(run):.2f} | {recovery} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
