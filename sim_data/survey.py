"""Survey drives: views of the city along paths no training route drives, for a place index.

A place index (``perception.models.posenet.places``) only knows the views it holds. The training routes
drive every street both ways in both lanes, but straight through the intersections: the views of a
vehicle *turning* (headings between two streets') are missing, and a held-out route that turns is lost
for the 2-4 s of each turn (measured: half of the place PoseNet's > 20 m fixes at night, BENCHMARKS.md
"PoseNet place recognition: the turn survey"). A survey renders those views directly, as a mapping
vehicle would record them: at every intersection, every turn (left and right from every approach, no
U-turns) in every lane, a view every ``spacing_m`` along the turning path while the heading is more than
``straight_deg`` off both streets'. The city is static (no traffic, signals at their start phase); the
lighting is the config's time of day.

>>> write_survey(SimConfig(time_of_day_h=22.0), "survey_night.mcap")

The file is a streetloc drive (camera frames and their exact GPS pose, ``frame_period_s`` apart) with
``extra["survey"] = "turns"``; nothing drives it, so it has no odometry, boxes or masks, and its
"stamps" only order the views.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np

from .camera import CameraPose
from .city import City
from .drive import GPS_STD_M, DriveSummary, SimConfig, SimDrive
from .traffic import LanePath

SURVEY_KINDS = ("turns",)


def turn_poses(city: City, camera_height_m: float, *, spacing_m: float = 1.0,
               straight_deg: float = 10.0) -> list[CameraPose]:
    """Camera poses along every turning path of ``city`` (module docstring), in a fixed order."""
    if spacing_m <= 0 or not 0 <= straight_deg < 90:
        raise ValueError(f"spacing_m must be > 0 and straight_deg in [0, 90); got {spacing_m}, {straight_deg}")
    ni, nj = city.n_nodes
    poses = []
    for i in range(ni):
        for j in range(nj):
            for prev in city.neighbours((i, j)):
                straight = (2 * i - prev[0], 2 * j - prev[1])
                for nxt in city.neighbours((i, j)):
                    if nxt in (prev, straight):
                        continue
                    # each lane of the wider street (a lane path keeps to the last lane of a narrower one)
                    lanes = max(city.street_between(prev, (i, j)).lanes_per_direction,
                                city.street_between((i, j), nxt).lanes_per_direction)
                    for lane in range(lanes):
                        path = LanePath(city, [prev, (i, j), nxt], lane, None)
                        first = path.pose_at(0.0)[2]
                        last = path.pose_at(path.length_m - 1e-3)[2]
                        for s in np.arange(0.0, path.length_m, spacing_m):
                            e, n, h = path.pose_at(float(s))
                            if min(_off_deg(h, first), _off_deg(h, last)) > straight_deg:
                                poses.append(CameraPose(e, n, h, camera_height_m))
    return poses


def _off_deg(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def write_survey(config: SimConfig, path: str | Path, *, kind: str = "turns", spacing_m: float = 1.0,
                 straight_deg: float = 10.0, frame_period_s: float = 0.2, jpeg_quality: int = 90) -> DriveSummary:
    """Render a survey of ``config``'s city (its lighting, camera and origin) into a drive file at
    ``path``: camera frames with their exact GPS pose."""
    from perception.drives import DriveMetadata, DriveWriter

    if kind not in SURVEY_KINDS:
        raise ValueError(f"unknown survey {kind!r}; the surveys are {', '.join(SURVEY_KINDS)}")
    drive = SimDrive(config)
    sim = drive.simulation()
    poses = turn_poses(drive.city, config.camera_height_m, spacing_m=spacing_m, straight_deg=straight_deg)
    extra = {**drive.describe(), "survey": kind, "survey_spacing_m": spacing_m,
             "survey_straight_deg": straight_deg, "views": len(poses)}
    extra.pop("route", None)
    created = dt.datetime.fromtimestamp(drive.start_stamp_ns / 1e9, dt.UTC).isoformat(timespec="seconds")
    meta = DriveMetadata(source=f"sim_data survey={kind} city_seed={config.city_seed} "
                                f"blocks={config.blocks[0]}x{config.blocks[1]} time_of_day={config.time_of_day_h}",
                         geo_origin=config.origin, camera=drive.camera, extra=extra, created_utc=created)
    t_start = time.perf_counter()
    period_ns = int(round(frame_period_s * 1e9))
    with DriveWriter(path, meta, jpeg_quality=jpeg_quality, flush_interval_s=None) as w:
        for k, pose in enumerate(poses):
            stamp = drive.start_stamp_ns + k * period_ns
            image = sim.renderer.render(pose, sim.scene.signals(pose, 0.0)).image_bgr
            lat, lon, alt = drive.local_frame.to_geodetic(pose.east_m, pose.north_m, pose.height_m)
            w.add_image(stamp, image)
            w.add_gps(stamp, lat_deg=float(lat), lon_deg=float(lon), alt_m=float(alt), heading_deg=pose.heading_deg,
                      horizontal_std_m=GPS_STD_M, vertical_std_m=GPS_STD_M, heading_std_deg=0.1, speed_mps=0.0)
    return DriveSummary(str(path), len(poses), len(poses) * frame_period_s, Path(path).stat().st_size,
                        time.perf_counter() - t_start)
