"""Do the graph's poses equal the filter run offline on the same inputs?

For a run recorded from a lock-step replay (``streetloc record`` + ``streetloc replay --lockstep --launch
launch/replay.toml``), feeds the run's own recorded ``posenet/fix`` and ``odometry`` through the fusion
node offline (``nodes.clock.run_offline``: no bus, no processes) and compares its per-fix poses with the
ones the graph published at the same stamps. Also scores the camera-only variant (``use_odometry=false``)
offline on the same fixes, and, with ``--fusion-eval-cache DIR``, compares with benchmarks/fusion_eval.py's
filter on its cached PoseNet output for the same drive (PoseNet run by the benchmark itself).

    .venv/bin/python benchmarks/fusion_graph_check.py RUN.mcap DRIVE.mcap [--fusion-eval-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.clock import run_offline  # noqa: E402
from nodes.commands.eval import Track, load, score  # noqa: E402
from nodes.fusion import FusionNode, FusionParams  # noqa: E402
from perception.drives import DriveReader  # noqa: E402
from perception.drives.topics import ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC  # noqa: E402


def offline_poses(run_path: str, params: FusionParams) -> list:
    """The node's poses for the run's recorded inputs (in stamp order, as the merger delivers them)."""
    with DriveReader(run_path) as run:
        msgs = [(ODOMETRY_TOPIC, m) for m in run.odometry()] if params.use_odometry else []
        msgs += [(POSENET_TOPIC, m) for m in run.fixes(POSENET_TOPIC)]
    node = FusionNode(params)
    return [m for t, m in run_offline(node, msgs) if t == POSE_TOPIC]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("drive")
    ap.add_argument("--fusion-eval-cache", help="benchmarks/fusion_eval.py --cache-dir of the same drive (k=1)")
    args = ap.parse_args()
    tracks, truth, kidnaps, frame = load(args.run, args.drive)
    graph = tracks["fused_at_fixes"]
    out: dict = {"run": args.run}
    for name, params in (("offline", FusionParams()), ("offline_camera_only", FusionParams(use_odometry=False))):
        poses = {p.header.stamp_ns: p for p in offline_poses(args.run, params)}
        at = [poses[s] for s in graph.stamps_ns if s in poses]
        track = Track.of(at, frame)
        out[name] = score(track, truth, kidnaps, fused=True)[0]
        if name == "offline":
            same = np.isin(graph.stamps_ns, track.stamps_ns)
            d = np.hypot(*(graph.en_m[same] - track.en_m).T)
            out["graph_vs_offline"] = {
                "poses_compared": int(same.sum()), "graph_poses_at_fixes": int(len(graph.stamps_ns)),
                "max_position_difference_m": float(np.nanmax(d)) if len(d) else None,
                "status_mismatches": int(np.sum(graph.status[same] != track.status)),
            }
    if args.fusion_eval_cache:
        out["fusion_eval"] = _fusion_eval(args.drive, args.fusion_eval_cache, graph, frame)
    print(json.dumps(out, indent=2))
    return 0


def _fusion_eval(drive: str, cache_dir: str, graph: Track, frame) -> dict:
    """fusion_eval's run_filter on its cached k=1 PoseNet output for ``drive`` (found by drive name)."""
    import pickle

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fusion_eval import DriveData, run_filter

    from localization.filter import FilterParams

    name = Path(drive).name
    for f in sorted(Path(cache_dir).glob("fusion_eval_*.pkl")):
        d = pickle.loads(f.read_bytes())
        if d["name"] == name and max(len(h) for h in d["fixes"]) == 1:
            data = DriveData(**d)
            break
    else:
        return {"error": f"no k=1 cache of {name} in {cache_dir}"}
    res = run_filter(data, FilterParams(), use_odometry=True, hypotheses=1, fix_std_m=None)
    err = res["err"]
    with DriveReader(drive) as r:
        drive_frame_origin = r.metadata.geo_origin
    return {"odometry": data.odometry_note, "drive_origin": str(drive_frame_origin),
            "frames": int(len(err)), "median_m": float(np.nanmedian(err)),
            "p95_m": float(np.nanpercentile(err, 95)), "over_20m": float(np.nanmean(err[~np.isnan(err)] > 20)),
            "availability": float(np.mean(res["tracking"]))}


if __name__ == "__main__":
    sys.exit(main())
