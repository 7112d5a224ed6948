"""Landmarks, offline: re-run the fusion filter on recorded inputs with and without the map, in one process.

A lock-step replay through the graph (``benchmarks/landmarks_measure.py``) costs minutes per drive on the
2-core VM; tuning the landmark update needs many runs. The fusion node is deterministic on stamp time,
so feeding it a recorded run's ``posenet/fix``, ``odometry`` and ``perception/detections``
(``nodes.clock.run_offline``) gives the graph's poses again, in seconds. Record the inputs once:

    streetloc replay DRIVE --lockstep --launch launch/replay.toml --arg detector=true \
        --arg map=MAP --record RUN.mcap

then ``python benchmarks/landmarks_offline.py RUN.mcap:MAP [...] [--set key=value ...]`` prints, per run and
pooled, median / p95 / max / > 20 m / 95 % ellipse coverage / availability of the fused pose at the fixes'
stamps (``streetloc eval``'s figures), without and with the map. ``--set`` overrides ``LandmarkParams``
fields (``--set max_position_std_m=3``). Validation drives only (route seeds 600-699).

``--truth-boxes`` is the oracle: the drive's truth boxes (``truth/boxes``, the renderer's) replace the
detector's at the same stamps, a perfect detector; with ``--set min_map_std_m=0.05`` (the synthetic map is
exact) it bounds what landmarks can do for the fused pose whatever the detector.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localization.geodesy import LocalFrame  # noqa: E402
from nodes.clock import run_offline  # noqa: E402
from nodes.commands.eval import Track, score  # noqa: E402
from nodes.fusion import FusionNode, FusionParams  # noqa: E402
from perception.drives import DriveReader  # noqa: E402
from perception.drives.topics import DETECTIONS_TOPIC, GPS_TOPIC, ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC  # noqa: E402


def load(run: str, drive: str | None, truth_boxes: bool = False) -> tuple[list, list, list[int], object]:
    """The run's fusion inputs; the truth, kidnap stamp and origin from the drive (else from the run).
    ``truth_boxes``: the drive's truth boxes in place of the detector's (same stamps, the detections' image
    size)."""
    with DriveReader(run) as r:
        msgs = [(t, m) for t in (ODOMETRY_TOPIC, POSENET_TOPIC, DETECTIONS_TOPIC) if t in r.topics for m in r.read(t)]
    with DriveReader(drive or run) as d:
        if truth_boxes:
            msgs = _with_truth_boxes(msgs, d)
        truth = list(d.fixes(GPS_TOPIC))
        kidnap = (d.metadata.extra or {}).get("kidnap_stamp_ns")
        return msgs, truth, [int(kidnap)] if kidnap else [], d.metadata.geo_origin


def _with_truth_boxes(msgs: list, drive: DriveReader) -> list:
    """``msgs`` with every recorded detections message replaced by the drive's truth boxes of that frame."""
    truth = {b.header.stamp_ns: b for b in drive.boxes()}
    if not truth:
        raise SystemExit(f"landmarks_offline --truth-boxes: {drive.path} has no truth boxes")
    out = []
    for t, m in msgs:
        if t == DETECTIONS_TOPIC:
            tb = truth.get(m.header.stamp_ns)
            if tb is None:
                continue
            m = msgspec.structs.replace(tb, header=m.header, image_width_px=m.image_width_px,
                                        image_height_px=m.image_height_px, intrinsics=m.intrinsics,
                                        model_id="truth", valid=True)
        out.append((t, m))
    return out


def run_one(run: str, drive: str | None, map_path: str | None, overrides: dict, truth_boxes: bool = False
            ) -> tuple[dict, np.ndarray, np.ndarray]:
    msgs, truth, kidnaps, origin = load(run, drive, truth_boxes)
    if map_path is None:
        msgs = [(t, m) for t, m in msgs if t != DETECTIONS_TOPIC]
    params = FusionParams(tick_hz=0.0, map=map_path or "")
    node = FusionNode(params)
    if overrides:
        lp = node._landmark_params
        node._landmark_params = dataclasses.replace(
            lp, **{k: type(getattr(lp, k))(float(v)) for k, v in overrides.items()})
    out = run_offline(node, msgs)
    poses = {p.header.stamp_ns: p for t, p in out if t == POSE_TOPIC}
    fix_stamps = {m.header.stamp_ns for t, m in msgs if t == POSENET_TOPIC}
    at_fixes = [poses[s] for s in sorted(poses) if s in fix_stamps]
    frame = LocalFrame(origin)
    truth_track = Track.of(sorted({f.header.stamp_ns: f for f in truth}.values(), key=lambda f: f.header.stamp_ns),
                           frame, status="truth")
    track = Track.of(at_fixes, frame)
    figures, err = score(track, truth_track, kidnaps, fused=True)
    figures["landmarks_per_fix"] = sum(p.landmarks_used for p in out_poses(out)) / max(len(fix_stamps), 1)
    return figures, err, track


def out_poses(out: list) -> list:
    return [p for t, p in out if t == POSE_TOPIC]


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="RUN.mcap:MAP.geojson[:DRIVE.mcap] (the drive: truth, kidnap)")
    ap.add_argument("--set", action="append", default=[], help="LandmarkParams field=value")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--truth-boxes", action="store_true",
                    help="the oracle: the drive's truth boxes instead of the detector's (needs RUN:MAP:DRIVE)")
    args = ap.parse_args()
    overrides = {k: v for k, v in (s.split("=", 1) for s in args.set)}
    print("| run | map | median m | p95 m | max m | > 20 m | in 95 % ellipse | availability | landmarks/fix |")
    print("|---|---|---|---|---|---|---|---|---|")
    pooled: dict[str, list] = {"no": [], "yes": []}
    for spec in args.runs:
        run, map_path, *drive = spec.split(":")
        for label, mp in (("no", None), ("yes", map_path)):
            if label == "no" and args.no_baseline:
                continue
            f, err, track = run_one(run, drive[0] if drive else None, mp, overrides, args.truth_boxes)
            pooled[label].append((f, err, track))
            print(f"| {Path(run).stem} | {label} | {_fmt(f['median_m'], '.3f')} | {_fmt(f['p95_m'], '.2f')} | "
                  f"{_fmt(f['max_m'], '.1f')} | {_fmt(f['over_20m'], '.1%')} | {_fmt(f['in_95_ellipse'], '.1%')} | "
                  f"{_fmt(f['availability'], '.0%')} | {f['landmarks_per_fix']:.2f} |", flush=True)
    for label, parts in pooled.items():
        if not parts:
            continue
        e = np.concatenate([err[np.isfinite(err)] for _, err, _ in parts])
        if not len(e):
            continue
        n = [int(np.isfinite(err).sum()) for _, err, _ in parts]
        cov = sum((f["in_95_ellipse"] or 0.0) * k for (f, _, _), k in zip(parts, n, strict=True)) / max(sum(n), 1)
        avail = np.mean([f["availability"] for f, _, _ in parts if f["availability"] is not None])
        print(f"| pooled | {label} | {np.median(e):.3f} | {np.percentile(e, 95):.2f} | {e.max():.1f} | "
              f"{100 * np.mean(e > 20):.1f} % | {100 * cov:.1f} % | {100 * avail:.0f} % | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
