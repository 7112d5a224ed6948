"""Issue 14's ablation: what each perception input does to the fused pose, on the same drives.

Every row is a lock-step replay of each drive through the real graph (launch/replay.toml), recorded and
scored with ``streetloc eval``'s scorer; figures are pooled over the drives (per-sample errors
concatenated, shares weighted by samples):

    python benchmarks/ablation.py DRIVE... [--out DIR] [--rows fusion,context,...]

The landmark map of each drive's city is exported with ``streetloc sim --export-map MAP --map-of DRIVE``.

Rows (launch arguments):
  raw PoseNet        the top fix of each frame as PoseNet published it (from the ``fusion`` row's run)
  fusion             PoseNet + odometry (issue 13)
  context            + scene context (detector + segmenter -> fix trust; issue 14 item 1)
  landmarks          + landmarks of the map (detector -> bearings/ranges to map landmarks; item 2)
  all                context + landmarks
  camera only, all   all, without odometry

Runs are kept in ``--out`` (one RUN.mcap per row and drive) and re-used: delete a run to re-make it.

``--offline`` re-scores recorded runs without the graph: this tree's fusion node, with the parameters
launch/replay.toml gives it for the row, re-run (``nodes.clock.run_offline``) on the inputs each run
recorded (posenet/fix, odometry, detections, segmentation). Seconds instead of a graph replay per drive:
for a filter change. The perception nodes are not re-run (their outputs are the recorded ones).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodes.commands.eval import OFF_M, Track, load, score  # noqa: E402
from perception.drives.topics import (  # noqa: E402
    DETECTIONS_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
)

ROWS: dict[str, list[str]] = {
    "fusion": [],
    "context": ["detector=true", "segmenter=true", "context=default"],
    "landmarks": ["detector=true", "map={map}"],
    "all": ["detector=true", "segmenter=true", "context=default", "map={map}"],
    "camera_only_all": ["detector=true", "segmenter=true", "context=default", "map={map}", "odometry=false"],
}


def city_map(drive: Path, out_dir: Path) -> Path:
    """The landmark map of ``drive``'s synthetic city (exported once)."""
    path = out_dir / f"map__{drive.stem}.geojson"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "nodes.cli", "sim", "--export-map", str(path), "--map-of", str(drive)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return path


def record_run(drive: Path, row: str, map_path: str, out_dir: Path) -> Path:
    """Replay ``drive`` lock-step through launch/replay.toml with ``row``'s arguments; the recorded run."""
    run = out_dir / f"{row}__{drive.stem}.mcap"
    if run.exists():
        return run
    args = [a.format(map=map_path) for a in ROWS[row]]
    lockstep = [POSENET_TOPIC]
    if any(a.startswith("detector=true") for a in args):
        lockstep.append(DETECTIONS_TOPIC)
    if any(a.startswith("segmenter=true") for a in args):
        lockstep.append(SEGMENTATION_TOPIC)
    cmd = [sys.executable, "-m", "nodes.cli", "replay", str(drive), "--lockstep",
           "--lockstep-topics", ",".join(lockstep), "--launch", "launch/replay.toml",
           "--record", str(run) + ".part", "--arg", "monitor=false"]
    for a in args:
        cmd += ["--arg", a]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streetloc-ablation-") as ipc_dir:  # a bus of its own
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "STREETLOC_IPC_DIR": ipc_dir})
    Path(str(run) + ".part").rename(run)
    print(f"ablation: {row} on {drive.name}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return run


def refuse_missing(run: Path) -> None:
    if not run.exists():
        raise SystemExit(f"ablation --offline: {run} has not been recorded; run without --offline first")


def fused_offline(run: Path, row: str, map_path: str) -> list:
    """The poses this tree's fusion node publishes at the fixes' stamps when fed ``run``'s recorded inputs,
    with the parameters launch/replay.toml gives it for ``row``."""
    from nodes.clock import run_offline
    from nodes.fusion import FusionNode, FusionParams
    from nodes.launcher.description import load_launch, parse_arg_assignments
    from nodes.params import load_params
    from perception.drives import DriveReader
    from perception.drives.topics import ODOMETRY_TOPIC

    args = parse_arg_assignments([a.format(map=map_path) for a in ROWS[row]] + ["monitor=false"])
    spec = load_launch(ROOT / "launch" / "replay.toml", args).nodes["fusion"]
    node = FusionNode(load_params(FusionParams, values=spec.entry.params, node="fusion"))
    with DriveReader(str(run)) as reader:
        topics = [t for t in (POSENET_TOPIC, ODOMETRY_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC)
                  if t in node.subscribes and t in reader.topics]
        msgs = sorted(((t, m) for t in topics for m in reader.read(t)), key=lambda tm: tm[1].header.stamp_ns)
    fix_stamps = {m.header.stamp_ns for t, m in msgs if t == POSENET_TOPIC}
    poses = {m.header.stamp_ns: m for t, m in run_offline(node, msgs) if t == POSE_TOPIC}
    return [poses[s] for s in sorted(poses) if s in fix_stamps]


def pooled(parts: list[tuple[dict, np.ndarray]]) -> dict:
    """One row's figures over several drives: errors concatenated, shares weighted by their samples."""
    err = np.concatenate([e[~np.isnan(e)] for _, e in parts])
    claims = np.array([np.sum(~np.isnan(e)) for _, e in parts], float)
    known = np.array([s["samples"] for s, _ in parts], float)

    def weighted(key: str, w: np.ndarray) -> float | None:
        vals = [(s[key], wi) for (s, _), wi in zip(parts, w, strict=True) if s.get(key) is not None]
        return float(sum(v * wi for v, wi in vals) / sum(wi for _, wi in vals)) if vals else None

    kidnaps = [k["recover_s"] for s, _ in parts for k in s.get("kidnaps", [])]
    return {
        "median_m": float(np.median(err)) if len(err) else None,
        "p95_m": float(np.percentile(err, 95)) if len(err) else None,
        "max_m": float(np.max(err)) if len(err) else None,
        "over_20m": float(np.mean(err > OFF_M)) if len(err) else None,
        "in_95_ellipse": weighted("in_95_ellipse", claims),
        "availability": weighted("availability", known),
        "kidnap_recover_s": kidnaps,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("drives", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("/tmp/streetloc-ablation"))
    p.add_argument("--rows", default=",".join(ROWS), help="rows to run (comma-separated)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--offline", action="store_true",
                   help="re-score the recorded runs with this tree's fusion node, without the graph")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in args.rows.split(",") if r]
    per_row: dict[str, list] = {}
    for row in rows:
        for drive in args.drives:
            map_path = str(city_map(drive, args.out).resolve())
            if args.offline:
                refuse_missing(args.out / f"{row}__{drive.stem}.mcap")
            run = record_run(drive, row, map_path, args.out)
            tracks, truth, kidnaps, frame = load(str(run), str(drive))
            # every pose at a fix's stamp: the per-frame figure, comparable with raw PoseNet
            fused = tracks.get("fused_at_fixes", tracks.get("fused"))
            if args.offline:
                poses = fused_offline(run, row, map_path)
                fused = Track.of(poses, frame) if poses else None
            if fused is None:  # no pose at all (e.g. every fix flagged at night): no claim at any frame
                raw = tracks["posenet"]
                fused = Track(raw.stamps_ns, raw.en_m, raw.cov, raw.heading_deg, np.zeros(len(raw.valid), bool),
                              np.full(len(raw.valid), "initializing", object))
            per_row.setdefault(row, []).append(score(fused, truth, kidnaps, fused=True))
            if row == rows[0] and "posenet" in tracks:
                per_row.setdefault("raw_posenet", []).append(score(tracks["posenet"], truth, kidnaps, fused=False))
    table = {row: pooled(parts) for row, parts in per_row.items()}
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    print(f"{len(args.drives)} drives: {', '.join(d.name for d in args.drives)}  (poses at fix stamps, {POSE_TOPIC})")
    print(f"{'row':18s}{'median m':>10s}{'p95 m':>9s}{'max m':>8s}{'>20 m':>8s}{'in 95%':>8s}{'avail':>8s}  kidnap")
    order = ["raw_posenet", *rows]
    for row in order:
        if row not in table:
            continue
        t = table[row]
        kid = ", ".join("never" if k is None else f"{k:.1f} s" for k in t["kidnap_recover_s"]) or "-"
        print(f"{row:18s}{t['median_m']:10.2f}{t['p95_m']:9.1f}{t['max_m']:8.0f}{t['over_20m']:8.1%}"
              f"{t['in_95_ellipse']:8.1%}{t['availability']:8.1%}  {kid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
