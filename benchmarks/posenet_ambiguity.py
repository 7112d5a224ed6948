"""How much of PoseNet's > 20 m error is the city's fault: places that look alike from the road.

The synthetic city builds its facades from a bank of designs, so two streets can look the same. This
script measures, for the held-out random routes it renders (seeds chosen on the command line), how often
a frame's *place* has a look-alike at least 20 m away, and whether PoseNet's > 20 m fixes fall there:

1. a bank of static views (the city, its props and signals, no traffic, the drive's lighting) every
   ``--step-m`` metres along every lane of every street, in both directions;
2. for each frame, the static view at the true pose, compared (mean absolute difference of grey levels at
   80x60) with the bank views within 2 m of it (its own place) and with every bank view at least 20 m away;
3. a frame's place is *ambiguous* when some view >= 20 m away is closer to it than the bank view 1 m
   along its own lane; a single frame cannot tell such places apart better than a 1 m move changes it;
4. PoseNet (the default checkpoint, or ``--checkpoint``) on the rendered frames: its > 20 m share on
   ambiguous and on unambiguous places.

Prints one table. Example (day, 3 held-out seeds, ~6 min on one core):

    python benchmarks/posenet_ambiguity.py --route-seeds 7301 7302 7303 --frames 300 --fps 2
"""

from __future__ import annotations

import argparse
import math
import time

import cv2
import numpy as np

from localization.geodesy import LocalFrame
from sim_data.camera import CameraPose
from sim_data.drive import SimConfig, SimDrive
from sim_data.render import Renderer
from sim_data.traffic import LanePath

THUMB_PX = (80, 60)  # grey thumbnails compared pixel by pixel
FAR_M = 20.0  # the > 20 m error of issue 11
OWN_PLACE_M = 2.0


def _thumb(bgr: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, THUMB_PX, interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)


def bank_poses(drive: SimDrive, step_m: float) -> list[CameraPose]:
    """Camera poses every ``step_m`` along every lane of every street, both directions."""
    city = drive.city
    ni, nj = city.n_nodes
    poses = []
    for i in range(ni):
        for j in range(nj):
            for b in city.neighbours((i, j)):
                street = city.street_between((i, j), b)
                for lane in range(street.lanes_per_direction):
                    path = LanePath(city, [(i, j), b], lane, None)
                    for s in np.arange(0.0, path.length_m, step_m):
                        e, n, hdg = path.pose_at(float(s))
                        poses.append(CameraPose(e, n, hdg, drive.config.camera_height_m))
    return poses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--route-seeds", type=int, nargs="+", required=True)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--time-of-day", type=float, default=13.0)
    ap.add_argument("--step-m", type=float, default=1.0)
    ap.add_argument("--checkpoint", default=None, help="PoseNet weights (default: the registry's default)")
    args = ap.parse_args(argv)

    from perception.models.posenet.predictor import PosePredictor

    predictor = PosePredictor(args.checkpoint, device="cpu")
    rows = []
    bank_cache: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for seed in args.route_seeds:
        t0 = time.monotonic()
        drive = SimDrive(SimConfig(route="random", route_seed=seed, frames=args.frames, fps=args.fps,
                                   time_of_day_h=args.time_of_day))
        sim = drive.simulation()
        renderer: Renderer = sim.renderer
        key = args.time_of_day
        if key not in bank_cache:
            poses = bank_poses(drive, args.step_m)
            thumbs = np.stack([_thumb(renderer.render(p, sim.scene.signals(p, 0.0)).image_bgr) for p in poses])
            en = np.array([[p.east_m, p.north_m] for p in poses])
            hdg = np.array([p.heading_deg for p in poses])
            bank_cache[key] = (thumbs, en, hdg)
            print(f"bank: {len(poses)} views in {time.monotonic() - t0:.0f} s", flush=True)
        thumbs, en, hdg = bank_cache[key]
        frames = list(drive)
        frames = [f for f in frames if f.camera_ok]
        est = predictor.predict_bgr([f.image_bgr for f in frames])
        local = LocalFrame(drive.config.origin)
        pe, pn, _ = local.to_enu(est.lat_deg, est.lon_deg, np.zeros(len(frames)))
        for k, f in enumerate(frames):
            p = f.pose
            own = renderer.render(p, sim.scene.signals(p, 0.0)).image_bgr
            t = _thumb(own)
            d = np.abs(thumbs - t[None]).mean(axis=1)
            dist = np.hypot(en[:, 0] - p.east_m, en[:, 1] - p.north_m)
            dhdg = np.abs((hdg - p.heading_deg + 180.0) % 360.0 - 180.0)
            # the view 1 m along its own lane: the same heading, 0.5-1.5 m away
            along = (dist > 0.5) & (dist < 1.5) & (dhdg < 10.0)
            far = dist >= FAR_M
            if not along.any():
                continue
            d_move = float(d[along].min())
            d_far = float(d[far].min())
            err_m = math.hypot(pe[k] - p.east_m, pn[k] - p.north_m)
            rows.append((seed, d_move, d_far, err_m))
        print(f"seed {seed}: {len(frames)} frames in {time.monotonic() - t0:.0f} s", flush=True)

    r = np.array([(d_move, d_far, err) for _, d_move, d_far, err in rows])
    ambiguous = r[:, 1] <= r[:, 0]
    wrong = r[:, 2] > FAR_M
    print()
    print(f"| frames | ambiguous places | PoseNet > {FAR_M:.0f} m | > {FAR_M:.0f} m on ambiguous places "
          f"| > {FAR_M:.0f} m elsewhere | share of > {FAR_M:.0f} m fixes on ambiguous places |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(r)} | {ambiguous.mean():.1%} | {wrong.mean():.1%} | "
          f"{wrong[ambiguous].mean() if ambiguous.any() else float('nan'):.1%} | "
          f"{wrong[~ambiguous].mean() if (~ambiguous).any() else float('nan'):.1%} | "
          f"{(wrong & ambiguous).sum() / max(1, wrong.sum()):.1%} |")
    print(f"grey-level difference (0-255, {THUMB_PX[0]}x{THUMB_PX[1]}): 1 m move median "
          f"{np.median(r[:, 0]):.1f}, nearest view >= {FAR_M:.0f} m away median {np.median(r[:, 1]):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
