"""Synthetic drives: a route through a city, rendered frame by frame with full ground truth, and written
as a streetloc drive (MCAP; see ``perception.drives``).

>>> from sim_data import SimConfig, SimDrive, write_drive
>>> for frame in SimDrive(SimConfig(route="test_loop", frames=10)):   # frames in memory
...     frame.image_bgr, frame.label_mask, frame.boxes_xyxy, frame.lat_deg, frame.heading_deg
>>> write_drive(SimConfig(route="train"), "train.mcap")                # or straight to a file

Ground truth is exact: the GPS fix of each frame is the rendering camera's pose (``horizontal_std_m``
0.1 m only so that consumers that invert a covariance can), boxes and masks come from the renderer's own
pixels. Odometry is the vehicle's speed and yaw rate through a wheel/gyro error model
(`sim_data.odometry`, preset ``SimConfig.odometry_noise``; ``none`` writes the truth).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from localization.geodesy import (
    DEFAULT_ORIGIN_ALT_M,
    DEFAULT_ORIGIN_LAT_DEG,
    DEFAULT_ORIGIN_LON_DEG,
    GeoOrigin,
    LocalFrame,
)
from perception import classes as C

from .camera import CameraPose, PinholeCamera
from .city import SIGNAL_CYCLE_S, SIGNAL_GREEN_S, City, generate_city
from .lighting import Lighting, lighting_for
from .odometry import DEFAULT_ODOMETRY_NOISE, OdometryNoise, odometry_noise_model
from .render import Renderer, RenderResult
from .routes import ROUTES, RoutePlan, kidnap_tour, plan_route
from .scene import Scene
from .traffic import MAX_SIM_STEP_S, LanePath, Traffic, Vehicle, spawn_pedestrians, spawn_traffic

GENERATOR_VERSION = 1
# Traffic levels: (cars per directed street segment, bicyclists per segment, people per block).
TRAFFIC_LEVELS = {"light": (0.35, 0.12, 8.0), "normal": (0.8, 0.3, 20.0), "heavy": (1.6, 0.45, 32.0)}
EGO_CRUISE_MPS = 11.0
EGO_START_M = 22.0  # start this far along the first street, clear of the first intersection
GPS_STD_M = 0.1  # the truth is exact; a small positive std keeps covariance-inverting consumers happy
UTC_OFFSET_H = -7.0  # the city keeps Los Angeles summer time: stamps are UTC, lighting uses local time
DRIVE_DATE = dt.date(2024, 6, 21)
ROUTES_INDEX = {name: k for k, name in enumerate(ROUTES)}  # seeds the traffic differently per route


def default_origin() -> GeoOrigin:
    """Downtown Los Angeles, where the original PoseNet street demo ran."""
    return GeoOrigin(DEFAULT_ORIGIN_LAT_DEG, DEFAULT_ORIGIN_LON_DEG, DEFAULT_ORIGIN_ALT_M)


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a synthetic drive; equal configs give identical frames."""

    city_seed: int = 0
    blocks: tuple[int, int] = (3, 2)  # blocks east x north
    route: str = "train"
    route_seed: int | None = None  # None: the route's default seed
    frames: int | None = None  # None: the route's default length (to the end of its scripted part)
    width_px: int = 320
    height_px: int = 240
    fps: float = 10.0
    hfov_deg: float = 70.0
    camera_height_m: float = 1.5
    time_of_day_h: float | None = None  # None: the route's default
    traffic: str | None = None  # light | normal | heavy; None: the route's default
    overcast: bool | None = None  # None: the route's default
    camera_noise: bool = False  # sensor noise, stronger in the dark
    motion_blur: bool = False  # horizontal blur while turning (half-frame exposure)
    odometry_noise: str = DEFAULT_ODOMETRY_NOISE  # sim_data.odometry preset: none | typical | poor
    origin: GeoOrigin = field(default_factory=default_origin)

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route!r}; the routes are {', '.join(ROUTES)}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames={self.frames!r} must be at least 1")
        if not (8 <= self.width_px <= 4096 and 8 <= self.height_px <= 4096):
            raise ValueError(f"image size {self.width_px}x{self.height_px} px must be 8..4096 on each side")
        if not (math.isfinite(self.fps) and 0.1 <= self.fps <= 120.0):
            raise ValueError(f"fps={self.fps!r} must be in [0.1, 120]")
        if not 0.3 <= self.camera_height_m <= 5.0:
            raise ValueError(f"camera height {self.camera_height_m!r} m must be in [0.3, 5]")
        if self.traffic is not None and self.traffic not in TRAFFIC_LEVELS:
            raise ValueError(f"traffic {self.traffic!r} is not one of {', '.join(TRAFFIC_LEVELS)}")
        if self.time_of_day_h is not None and not 0.0 <= self.time_of_day_h <= 24.0:
            raise ValueError(f"time of day {self.time_of_day_h!r} h is outside [0, 24]")
        if len(self.blocks) != 2 or not all(1 <= int(b) <= 8 for b in self.blocks):
            raise ValueError(f"blocks={self.blocks!r}: the district is 1..8 blocks on each side")
        PinholeCamera.from_hfov(self.width_px, self.height_px, self.hfov_deg)  # validates the FOV
        odometry_noise_model(self.odometry_noise)  # validates the preset


@dataclass
class SimFrame:
    """One frame of a drive with its ground truth.

    image_bgr: uint8 [H, W, 3]. label_mask: uint8 [H, W] (perception.classes ids). boxes_xyxy: float32
    [N, 4] pixel-edge boxes (x1, y1, x2, y2) of visible signs, cars, pedestrians, bicyclists;
    box_class_ids int64 [N]. pose: the camera (ENU of the drive's origin). GPS truth lat/lon/alt of
    the camera; speed and yaw rate (counter-clockwise positive) of the vehicle.
    """

    index: int
    stamp_ns: int
    t_s: float
    image_bgr: np.ndarray
    label_mask: np.ndarray
    boxes_xyxy: np.ndarray
    box_class_ids: np.ndarray
    pose: CameraPose
    lat_deg: float
    lon_deg: float
    alt_m: float
    speed_mps: float
    yaw_rate_radps: float
    camera_ok: bool = True  # False during a blackout: the image is black and carries no truth
    events: tuple[str, ...] = ()

    @property
    def heading_deg(self) -> float:
        return self.pose.heading_deg


@dataclass
class Simulation:
    """The moving state of a drive: its renderer, the traffic (the ego vehicle first), the scene that
    turns them into render objects. ``traffic.t_s`` is the signal clock."""

    renderer: Renderer
    traffic: Traffic
    scene: Scene
    ego: Vehicle
    camera_height_m: float

    def pose(self) -> CameraPose:
        """The camera on the ego vehicle now."""
        e, n, heading = self.ego.path.pose_at(self.ego.s_m)
        return CameraPose(e, n, heading, self.camera_height_m)

    def render(self, pose: CameraPose | None = None) -> RenderResult:
        """Render the scene now, from ``pose`` (default: the ego's camera)."""
        pose = pose or self.pose()
        return self.renderer.render(pose, self.scene.objects(pose, self.traffic.t_s))


class SimDrive:
    """A synthetic drive, iterable frame by frame (deterministic: equal configs, equal frames)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = c = config or SimConfig()
        self.city: City = generate_city(c.city_seed, int(c.blocks[0]), int(c.blocks[1]))
        self.plan: RoutePlan = plan_route(self.city, c.route, c.route_seed)
        spec = self.plan.spec
        self.time_of_day_h = spec.time_of_day_h if c.time_of_day_h is None else float(c.time_of_day_h)
        self.traffic_level = spec.traffic if c.traffic is None else c.traffic
        self.overcast = spec.overcast if c.overcast is None else bool(c.overcast)
        self.frames = spec.default_frames if c.frames is None else int(c.frames)
        self.camera = PinholeCamera.from_hfov(c.width_px, c.height_px, c.hfov_deg)
        self.lighting: Lighting = lighting_for(self.time_of_day_h, overcast=self.overcast)
        self.local_frame = LocalFrame(c.origin)
        # Stamps are UTC: local time of day on DRIVE_DATE, shifted by the city's UTC offset.
        midnight = dt.datetime.combine(DRIVE_DATE, dt.time(0), tzinfo=dt.UTC)
        hour_utc = self.time_of_day_h - UTC_OFFSET_H
        self.start_stamp_ns = int(midnight.timestamp()) * 1_000_000_000 + int(round(hour_utc * 3600.0 * 1e9))

    # -------------------------------------------------------------------------------------- setup

    def simulation(self) -> Simulation:
        """A fresh simulation of this drive at its start (what ``__iter__`` runs frame by frame)."""
        c, city, plan = self.config, self.city, self.plan
        renderer = Renderer(city, self.camera, self.lighting, sky_seed=c.city_seed * 1009 + plan.seed)
        rng = np.random.default_rng([c.city_seed, plan.seed, ROUTES_INDEX[c.route], 0x7AFF])
        ego_path = LanePath(city, plan.nodes, plan.lane, np.random.default_rng([c.city_seed, plan.seed, 0xE60]))
        ego = Vehicle(ego_path, EGO_START_M, 0.6 * EGO_CRUISE_MPS, EGO_CRUISE_MPS, 4.6, "ego", instance_id=99_999)
        cars_per_edge, bikes_per_edge, people_per_block = TRAFFIC_LEVELS[self.traffic_level]
        ni, nj = city.n_nodes
        directed_edges = 2 * (ni * (nj - 1) + nj * (ni - 1))
        vehicles = spawn_traffic(city, rng, int(round(cars_per_edge * directed_edges)),
                                 int(round(bikes_per_edge * directed_edges)), 100_000, avoid=[ego])
        people = spawn_pedestrians(city, rng, people_per_block, 200_000)
        t0 = self._signal_clock_start(ego_path) if plan.stop_node is not None else float(rng.uniform(0, SIGNAL_CYCLE_S))
        traffic = Traffic(city, [ego, *vehicles], t0)
        return Simulation(renderer, traffic, Scene(city, traffic, people, ego), ego, c.camera_height_m)

    def _signal_clock_start(self, ego_path: LanePath) -> float:
        """Signal clock at the start such that the light at the stop node turns yellow as the ego, alone
        on the road, is 25 m from its stop line (it will brake and wait out the red)."""
        plan, city = self.plan, self.city
        k = plan.nodes.index(plan.stop_node)  # type: ignore[arg-type]
        probe = Vehicle(LanePath(city, plan.nodes, plan.lane), EGO_START_M, 0.6 * EGO_CRUISE_MPS, EGO_CRUISE_MPS, 4.6,
                        "ego", obey_signals=False)
        sim = Traffic(city, [probe])
        stop_s = probe.path.stop_s[k]
        while probe.s_m + 0.5 * probe.length_m < stop_s - 25.0 and sim.t_s < 120.0:
            sim.step(MAX_SIM_STEP_S)
        # North-south traffic sees yellow from SIGNAL_GREEN_S into the cycle (City.signal_state).
        return float((SIGNAL_GREEN_S - sim.t_s - city.signal_offsets_s[plan.stop_node]) % SIGNAL_CYCLE_S)

    # -------------------------------------------------------------------------------------- frames

    def __iter__(self) -> Iterator[SimFrame]:
        c, plan = self.config, self.plan
        sim = self.simulation()
        renderer, traffic, scene, ego = sim.renderer, sim.traffic, sim.scene, sim.ego
        dt_s = 1.0 / c.fps
        noise_rng = np.random.default_rng([c.city_seed, plan.seed, 0x401])
        noise_fields = None
        if c.camera_noise:
            noise_fields = [noise_rng.normal(0.0, 1.0, (c.height_px, c.width_px, 3)).astype(np.float32) for _ in range(4)]
        end_s = None
        kidnapped = False
        index = 0
        while self.frames is None or index < self.frames:
            if index:
                traffic.step(dt_s)
            t_s = index * dt_s
            events: list[str] = []
            if plan.kidnap_s is not None and not kidnapped and t_s >= plan.kidnap_s:
                # Carried off: same speed, a distant street, a new heading.
                e_now, n_now, _ = ego.path.pose_at(ego.s_m)
                ego.path = LanePath(self.city, kidnap_tour(self.city, plan.seed, e_now, n_now), plan.lane,
                                    np.random.default_rng([c.city_seed, plan.seed, 0xE61]))
                ego.s_m = EGO_START_M
                kidnapped = True
                events.append("kidnap")
            if self.frames is None:
                if end_s is None:
                    ego.path.ensure(ego.s_m)
                    if len(ego.path.node_s) >= ego.path.scripted_nodes:
                        end_s = ego.path.node_s[ego.path.scripted_nodes - 1]
                if end_s is not None and ego.s_m >= end_s:
                    break
            pose = sim.pose()
            e, n = pose.east_m, pose.north_m
            yaw_rate = self._yaw_rate_radps(ego)
            blackout = plan.blackout_s is not None and plan.blackout_s[0] <= t_s < plan.blackout_s[1]
            if blackout:
                image = np.zeros((c.height_px, c.width_px, 3), np.uint8)
                mask = np.full((c.height_px, c.width_px), C.UNLABELLED, np.uint8)
                boxes, box_cls = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
                events.append("blackout")
            else:
                res = renderer.render(pose, scene.objects(pose, traffic.t_s))
                image, mask, boxes, box_cls = res.image_bgr, res.label_mask, res.boxes_xyxy, res.box_class_ids
                if c.motion_blur:
                    image = _motion_blur(image, yaw_rate, self.camera.fx_px, c.fps)
                if noise_fields is not None:
                    sigma = 2.0 + 5.0 * self.lighting.night
                    field_ = noise_fields[int(noise_rng.integers(len(noise_fields)))]
                    shift = int(noise_rng.integers(c.width_px))
                    image = np.clip(image + sigma * np.roll(field_, shift, axis=1), 0, 255).astype(np.uint8)
            lat, lon, alt = self.local_frame.to_geodetic(e, n, c.camera_height_m)
            stamp = self.start_stamp_ns + int(round(index * 1e9 / c.fps))
            yield SimFrame(index, stamp, t_s, image, mask, boxes, box_cls, pose, float(lat), float(lon), float(alt),
                           float(ego.speed_mps), yaw_rate, not blackout, tuple(events))
            index += 1

    @staticmethod
    def _yaw_rate_radps(ego: Vehicle) -> float:
        """True yaw rate, counter-clockwise positive (REP-103): compass heading decreases turning left."""
        ds = 0.5
        _, _, h0 = ego.path.pose_at(max(ego.s_m - ds, 0.0))
        _, _, h1 = ego.path.pose_at(ego.s_m + ds)
        dh = (h1 - h0 + 180.0) % 360.0 - 180.0
        span = min(ego.s_m, ds) + ds
        return float(-math.radians(dh / span) * ego.speed_mps)

    def odometry_noise(self) -> OdometryNoise:
        """The odometry error model of this drive, seeded by the drive (equal configs, equal errors)."""
        c = self.config
        return OdometryNoise(c.odometry_noise, seed=[c.city_seed, self.plan.seed, ROUTES_INDEX[c.route], 0x0D0])

    # -------------------------------------------------------------------------------------- metadata

    def describe(self) -> dict:
        """Drive-wide facts for the drive's metadata (JSON-serialisable)."""
        c, plan = self.config, self.plan
        d = {
            "generator": "sim_data",
            "generator_version": GENERATOR_VERSION,
            "city_seed": c.city_seed,
            "blocks": list(c.blocks),
            "route": c.route,
            "route_description": plan.spec.description,
            "route_seed": plan.seed,
            "lane": plan.lane,
            "fps": c.fps,
            "frames": self.frames,
            "time_of_day_h": self.time_of_day_h,
            "overcast": self.overcast,
            "traffic": self.traffic_level,
            "camera_height_m": c.camera_height_m,
            "hfov_deg": c.hfov_deg,
            "camera_noise": c.camera_noise,
            "motion_blur": c.motion_blur,
            "class_names": list(C.CLASS_NAMES),
            "detectable_classes": [C.CLASS_NAMES[k] for k in C.DETECTABLE_CLASSES],
            "gps_is_ground_truth": True,
            "odometry_noise": c.odometry_noise,
            "start_stamp_ns": self.start_stamp_ns,
        }
        if plan.blackout_s is not None:
            d["blackout_stamps_ns"] = [self.start_stamp_ns + int(round(t * 1e9)) for t in plan.blackout_s]
        if plan.kidnap_s is not None:
            d["kidnap_stamp_ns"] = self.start_stamp_ns + int(round(math.ceil(plan.kidnap_s * c.fps - 1e-9) / c.fps * 1e9))
        if plan.stop_node is not None:
            d["stop_node"] = list(plan.stop_node)
        return d

    def source(self) -> str:
        """One line saying what made this drive (the drive's ``source`` metadata)."""
        c = self.config
        frames = f" frames={self.frames}" if self.frames is not None else ""
        return (f"sim_data city_seed={c.city_seed} blocks={c.blocks[0]}x{c.blocks[1]} route={c.route} "
                f"route_seed={self.plan.seed}{frames} size={c.width_px}x{c.height_px} fps={c.fps:g}")


def _motion_blur(image: np.ndarray, yaw_rate_radps: float, fx_px: float, fps: float) -> np.ndarray:
    """Horizontal smear of a turning camera over a half-frame exposure."""
    length_px = abs(yaw_rate_radps) * (0.5 / fps) * fx_px
    k = int(round(length_px))
    if k < 2:
        return image
    return cv2.blur(image, (k, 1))


@dataclass
class DriveSummary:
    path: str
    frames: int
    duration_s: float
    bytes: int
    wall_s: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("inf")


def write_drive(config: SimConfig, path: str | Path, *, jpeg_quality: int = 90,
                on_frame: Callable[[SimFrame], None] | None = None) -> DriveSummary:
    """Render ``config``'s drive into a drive file at ``path`` (camera, calibration, GPS truth,
    odometry, truth boxes and masks). ``on_frame`` sees every frame (previews, progress)."""
    from perception.drives import DriveMetadata, DriveWriter

    drive = SimDrive(config)
    cam = drive.camera
    created = dt.datetime.fromtimestamp(drive.start_stamp_ns / 1e9, dt.UTC).isoformat(timespec="seconds")
    meta = DriveMetadata(
        source=drive.source(),
        geo_origin=config.origin,
        camera=cam,  # a PinholeCamera is the drive's CameraInfo
        extra=drive.describe(),
        created_utc=created,  # the drive's own (simulated) time, so the file is reproducible
    )
    names = list(C.CLASS_NAMES)
    t_start = time.perf_counter()
    n = 0
    last_t = 0.0
    odometry = drive.odometry_noise()
    with DriveWriter(path, meta, jpeg_quality=jpeg_quality, flush_interval_s=None) as w:
        for frame in drive:
            s = frame.stamp_ns
            w.add_image(s, frame.image_bgr)
            w.add_gps(s, lat_deg=frame.lat_deg, lon_deg=frame.lon_deg, alt_m=frame.alt_m, heading_deg=frame.heading_deg,
                      horizontal_std_m=GPS_STD_M, vertical_std_m=GPS_STD_M, heading_std_deg=0.1, speed_mps=frame.speed_mps)
            odo = odometry(s, speed_mps=frame.speed_mps, yaw_rate_radps=frame.yaw_rate_radps)
            w.add_odometry(s, speed_mps=odo.speed_mps, yaw_rate_radps=odo.yaw_rate_radps,
                           speed_std_mps=odo.speed_std_mps, yaw_rate_std_radps=odo.yaw_rate_std_radps)
            w.add_boxes(s, frame.boxes_xyxy, frame.box_class_ids, names)
            w.add_label_mask(s, frame.label_mask, names)
            if on_frame is not None:
                on_frame(frame)
            n += 1
            last_t = frame.t_s
    wall = time.perf_counter() - t_start
    return DriveSummary(str(path), n, last_t + 1.0 / config.fps if n else 0.0, Path(path).stat().st_size, wall)

