"""How often JCBB pairs a detected box with the wrong map landmark: the detector's recorded sign boxes of a
run (`streetloc replay ... --arg detector=true --record RUN`), associated from the true pose (the reference
pairs) and from poses drawn with a given error (and that error as the covariance). Pure numpy, seconds.

    python benchmarks/landmarks_association.py RUN.mcap DRIVE.mcap MAP.geojson
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localization.geodesy import LocalFrame  # noqa: E402
from localization.landmarks import (  # noqa: E402
    CHI2_3DOF_999,
    LandmarkMap,
    LandmarkObservation,
    LandmarkParams,
    Pinhole,
    _in_view,
    _pair_models,
    associate,
    boxes_to_observations,
)
from localization.measurements import yaw_from_heading_rad  # noqa: E402
from perception.classes import SIGN  # noqa: E402
from perception.drives import DriveReader  # noqa: E402
from perception.drives.topics import DETECTIONS_TOPIC  # noqa: E402


def nearest_neighbour(pose: np.ndarray, P: np.ndarray, obs, pin: Pinhole, enu, p: LandmarkParams) -> dict[int, int]:
    """The alternative: each box alone with the landmark of the smallest Mahalanobis distance in the gate."""
    view = _in_view(pose, enu, pin, p)
    if not obs or not len(view):
        return {}
    Y, H, R = _pair_models(pose, enu, view, obs, pin, p, np.ones(len(view)), p.min_map_std_m)
    S = (H @ P @ H.transpose(0, 2, 1))[None] + R
    d2 = np.einsum("bvi,bvi->bv", Y, np.linalg.solve(S, Y[..., None])[..., 0])
    return {i: int(view[int(np.argmin(d2[i]))]) for i in range(len(obs)) if d2[i].min() <= CHI2_3DOF_999}


def main() -> int:
    run, drive, map_path = sys.argv[1:4]
    r = DriveReader(drive)
    frame = LocalFrame(r.metadata.geo_origin)
    cam = r.camera()
    pin = Pinhole(cam.fx_px, cam.fy_px, cam.cx_px, cam.cy_px, cam.width_px, cam.height_px)
    enu = LandmarkMap.load(map_path).in_frame(frame)
    truth = {f.header.stamp_ns: f for f in r.fixes()}
    frames = []
    p = LandmarkParams()
    for det in DriveReader(run).read(DETECTIONS_TOPIC):
        f = truth[det.header.stamp_ns]
        e, n, _ = frame.to_enu(f.lat_deg, f.lon_deg)
        obs = boxes_to_observations(det.boxes_xyxy_px[det.class_ids == SIGN], pin, p)
        frames.append((np.array([float(e), float(n), yaw_from_heading_rad(f.heading_deg)]), obs))
    n_boxes = sum(len(o) for _, o in frames)
    rng = np.random.default_rng(0)
    print(f"{len(frames)} frames, {n_boxes} usable sign boxes")
    print("| pose error (1-sigma) | pairs from the true pose | JCBB: same landmark | JCBB: another landmark | JCBB: "
          "pairs the true pose does not make | nearest neighbour: another landmark |")
    print("|---|---|---|---|---|---|")
    for sd_m, sd_deg in ((0.5, 1.0), (1.5, 2.0), (3.0, 3.0)):
        same = other = extra = n_ref = nn_other = 0
        P = np.diag([sd_m**2, sd_m**2, math.radians(sd_deg) ** 2])
        for pose, obs in frames:
            ref = dict(associate(pose, np.diag([0.1**2, 0.1**2, math.radians(0.2) ** 2]),
                                 LandmarkObservation(obs, pin, enu, p)).pairs)
            noisy = pose + rng.multivariate_normal(np.zeros(3), P)
            got = dict(associate(noisy, P, LandmarkObservation(obs, pin, enu, p)).pairs)
            nn_other += sum(1 for i, j in nearest_neighbour(noisy, P, obs, pin, enu, p).items() if i in ref and ref[i] != j)
            n_ref += len(ref)
            for i, j in got.items():
                if i in ref:
                    same += ref[i] == j
                    other += ref[i] != j
                else:
                    extra += 1
        print(f"| {sd_m} m, {sd_deg} deg | {n_ref} | {same} | {other} | {extra} | {nn_other} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
