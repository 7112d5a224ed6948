"""Landmarks (issue 14 item 2): fused pose with and without the city's landmark map, through the real graph.

For each drive: the map of its city (``streetloc sim --export-map --map-of DRIVE``), then two lock-step
replays through launch/replay.toml, recorded and scored by ``streetloc eval``:

* ``fused``            PoseNet + odometry (the fusion issue's graph)
* ``fused+landmarks``  the same + the detector + ``map=`` (lock-step then waits for the detections too)

and one table: median / p95 / max / > 20 m share / 95 % ellipse coverage / availability of the fused pose
at the fixes' stamps, and landmarks used per fix. Every run's recording and eval JSON stay in OUT.

    nice -n 10 python benchmarks/landmarks_measure.py /work/fusion_data/val/val_s601_day.mcap ... --out /tmp/lm
    python benchmarks/landmarks_measure.py DRIVES... --out DIR --table-only    # reprint from DIR

Validation drives only for tuning (route seeds 600-699); the lead's ablation runs the held-out ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = (("fused", {}), ("fused+landmarks", {"detector": "true", "map": "{map}"}))


# a bus of its own: graphs that others run on this machine (tests, benchmarks) never see these messages
IPC_DIR = os.environ.get("STREETLOC_IPC_DIR") or tempfile.mkdtemp(prefix="streetloc-landmarks-")


def streetloc(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "STREETLOC_IPC_DIR": IPC_DIR}
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)


def run_drive(drive: Path, out: Path, table_only: bool) -> dict[str, dict]:
    name = drive.stem
    map_path = out / f"{name}.map.geojson"
    results = {}
    if not table_only:
        streetloc("sim", "--export-map", str(map_path), "--map-of", str(drive))
    for row, launch_args in ROWS:
        run = out / f"{name}.{row}.mcap"
        scored = out / f"{name}.{row}.json"
        if not table_only:
            args = ["replay", str(drive), "--lockstep", "--launch", "launch/replay.toml", "--arg", "monitor=false",
                    "--record", str(run)]
            for k, v in launch_args.items():
                args += ["--arg", f"{k}={v.format(map=map_path)}"]
            t0 = time.monotonic()
            streetloc(*args)
            print(f"  {name} {row}: replayed in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            report = json.loads(streetloc("eval", str(run), "--drive", str(drive), "--json").stdout)
            report["landmarks_per_fix"] = landmarks_per_fix(run)
            scored.write_text(json.dumps(report, indent=1))
        results[row] = json.loads(scored.read_text())
    return results


def landmarks_per_fix(run: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from perception.drives import DriveReader
    from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC

    with DriveReader(str(run)) as r:
        used = sum(p.landmarks_used for p in r.fixes(POSE_TOPIC))
        fixes = sum(1 for _ in r.fixes(POSENET_TOPIC))
    return used / max(fixes, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("drives", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder for maps, recordings, eval JSON")
    ap.add_argument("--table-only", action="store_true", help="reprint the table from --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| drive | run | median m | p95 m | max m | > 20 m | in 95 % ellipse | availability | landmarks/fix | kidnap recovery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for drive in args.drives:
        for row, rep in run_drive(drive, args.out, args.table_only).items():
            f = rep["fused_at_fixes"]
            kidnaps = rep["fused"].get("kidnaps", [])
            recovery = ", ".join("never" if k["recover_s"] is None else f"{k['recover_s']:.1f} s"
                                 + ("" if k["lost_reported"] else " (no LOST)") for k in kidnaps) or "-"
            print(f"| {drive.stem} | {row} | {f['median_m']:.2f} | {f['p95_m']:.2f} | {f['max_m']:.1f} | "
                  f"{100 * f['over_20m']:.1f} % | {100 * f['in_95_ellipse']:.0f} % | {100 * f['availability']:.0f} % | "
                  f"{rep['landmarks_per_fix']:.2f} | {recovery} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
