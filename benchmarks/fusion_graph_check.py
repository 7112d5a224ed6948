"""The fusion node through the real graph, scored, beside its offline twins on the same inputs.

For runs recorded from lock-step replays (``streetloc record`` + ``streetloc replay --lockstep --launch
launch/replay.toml``, docs/fusion.md), prints per drive and for the held-out drives together:

* ``posenet``: the raw fixes the graph's PoseNet published; ``fused (graph)``: the graph's poses at the
  fixes' stamps (``streetloc eval``'s ``fused_at_fixes``);
* ``fused (offline)``: the fusion node fed the run's own recorded ``posenet/fix`` and ``odometry`` without
  a bus (``nodes.clock.run_offline``); the largest position difference from the graph's poses and the
  number of status mismatches say whether the graph changes anything;
* ``camera only``: the same offline, ``use_odometry=false``;
* ``plain EKF``: the same offline with no gates, no relocalisation and no LOST (what trusting every fix
  gives: the robot_localization-style baseline of benchmarks/fusion_eval.py).

    .venv/bin/python benchmarks/fusion_graph_check.py RUN1.mcap DRIVE1.mcap [RUN2.mcap DRIVE2.mcap ...] [--json]

A drive whose name starts with ``heldout`` joins the "held-out together" rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localization.filter import FilterParams, PoseFilter, plain_ekf_params  # noqa: E402
from nodes.clock import run_offline  # noqa: E402
from nodes.commands.eval import CHI2_2DOF_95, Track, load, score, truth_at  # noqa: E402
from nodes.fusion import FusionNode, FusionParams  # noqa: E402
from perception.drives import DriveReader  # noqa: E402
from perception.drives.topics import ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC  # noqa: E402

PLAIN = plain_ekf_params()
ROWS = ("posenet", "fused (graph)", "fused (offline)", "camera only", "plain EKF")


def offline_poses(run_path: str, params: FusionParams, filter_params: FilterParams | None = None) -> list:
    """The node's poses for the run's recorded inputs (in stamp order, as the merger delivers them)."""
    with DriveReader(run_path) as run:
        msgs = [(ODOMETRY_TOPIC, m) for m in run.odometry()] if params.use_odometry else []
        msgs += [(POSENET_TOPIC, m) for m in run.fixes(POSENET_TOPIC)]
    node = FusionNode(params)
    if filter_params is not None:
        node.filter = PoseFilter(filter_params)
    return [m for t, m in run_offline(node, msgs) if t == POSE_TOPIC]


def check(run_path: str, drive_path: str) -> tuple[dict, dict]:
    """(figures by row, per-sample arrays by row for merging) of one run."""
    tracks, truth, kidnaps, frame = load(run_path, drive_path)
    graph = tracks["fused_at_fixes"]
    rows = {"posenet": tracks["posenet"], "fused (graph)": graph}
    for name, params, fp in (("fused (offline)", FusionParams(), None),
                             ("camera only", FusionParams(use_odometry=False), None),
                             ("plain EKF", FusionParams(), PLAIN)):
        poses = {p.header.stamp_ns: p for p in offline_poses(run_path, params, fp)}
        rows[name] = Track.of([poses[s] for s in graph.stamps_ns if s in poses], frame)
    figures, samples = {}, {}
    for name, tr in rows.items():
        figures[name], err = score(tr, truth, kidnaps, fused=name != "posenet")
        samples[name] = (err, tr, truth)
    off = rows["fused (offline)"]
    same = np.isin(graph.stamps_ns, off.stamps_ns)
    figures["graph_vs_offline"] = {
        "poses_compared": int(same.sum()), "graph_poses_at_fixes": int(len(graph.stamps_ns)),
        "max_position_difference_m": float(np.max(np.hypot(*(graph.en_m[same] - off.en_m).T))),
        "status_mismatches": int(np.sum(graph.status[same] != off.status))}
    return figures, samples


def merged(samples: list[dict], row: str) -> dict:
    """Median / p95 / > 20 m / in 95 % / availability over the samples of several runs together."""
    errs, inside, good = [], [], []
    for s in samples:
        err, tr, truth = s[row]
        claim = np.isfinite(err)
        errs.append(err[claim])
        t_en, _ = truth_at(truth, tr.stamps_ns)
        d = t_en - tr.en_m
        for k in np.flatnonzero(claim):
            inside.append(float(d[k] @ np.linalg.solve(tr.cov[k], d[k])) <= CHI2_2DOF_95
                          if np.all(np.isfinite(tr.cov[k])) and np.linalg.det(tr.cov[k]) > 0 else False)
        good.extend(tr.status == "tracking" if row != "posenet" else tr.valid)
    e = np.concatenate(errs)
    return {"median_m": float(np.median(e)), "p95_m": float(np.percentile(e, 95)), "over_20m": float(np.mean(e > 20)),
            "in_95_ellipse": float(np.mean(inside)), "availability": float(np.mean(good))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", metavar="RUN DRIVE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give RUN DRIVE pairs")
    out, held = {}, []
    for run, drive in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        figures, samples = check(run, drive)
        out[Path(drive).name] = figures
        if Path(drive).name.startswith("heldout"):
            held.append(samples)
    if held:
        out["held-out together"] = {row: merged(held, row) for row in ROWS}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    head = f"{'':18s}{'median m':>10s}{'p95 m':>10s}{'>20 m':>8s}{'in 95%':>8s}{'avail':>8s}"
    for drive, figures in out.items():
        print(f"\n{drive}\n{head}")
        for row in ROWS:
            s = figures[row]
            print(f"  {row:16s}{s['median_m']:10.1f}{s['p95_m']:10.1f}{s['over_20m']:8.1%}{s['in_95_ellipse']:8.1%}"
                  f"{s['availability']:8.1%}" + "".join(
                      f"  kidnap: LOST {'reported' if k['lost_reported'] else 'not reported'}, within 5 m after "
                      f"{'never' if k['recover_s'] is None else format(k['recover_s'], '.1f') + ' s'}"
                      for k in s.get("kidnaps", [])))
        if "graph_vs_offline" in figures:
            g = figures["graph_vs_offline"]
            print(f"  graph vs offline: {g['poses_compared']} poses, largest difference "
                  f"{g['max_position_difference_m']:.3g} m, {g['status_mismatches']} status mismatches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
