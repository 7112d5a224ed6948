"""Drives: a seed always gives the same frames; the GPS truth is the rendering camera's pose (through
pyproj and through the drive file); routes and scenarios do what they say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from localization.geodesy import DEFAULT_ORIGIN_LAT_DEG, DEFAULT_ORIGIN_LON_DEG, GeoOrigin, LocalFrame
from perception import classes as C
from perception.drives import DriveReader
from sim_data import ROUTES, SimConfig, SimDrive, plan_route, write_drive
from sim_data.city import generate_city

SMALL = {"blocks": (2, 1), "width_px": 96, "height_px": 72}


def _frames(config: SimConfig) -> list:
    return list(SimDrive(config))


def test_a_seed_always_gives_the_same_frames():
    config = SimConfig(route="test_loop", frames=12, traffic="heavy", **SMALL)
    a, b = _frames(config), _frames(config)
    for fa, fb in zip(a, b, strict=True):
        assert fa.stamp_ns == fb.stamp_ns
        np.testing.assert_array_equal(fa.image_bgr, fb.image_bgr)
        np.testing.assert_array_equal(fa.label_mask, fb.label_mask)
        np.testing.assert_array_equal(fa.boxes_xyxy, fb.boxes_xyxy)
        assert (fa.lat_deg, fa.lon_deg, fa.heading_deg) == (fb.lat_deg, fb.lon_deg, fb.heading_deg)
    # ... and another seed another drive.
    other = _frames(SimConfig(route="test_loop", route_seed=5, frames=12, traffic="heavy", **SMALL))
    assert not np.array_equal(a[-1].image_bgr, other[-1].image_bgr)


def test_a_city_seed_always_gives_the_same_city():
    uncached = generate_city.__wrapped__
    a, b, c = uncached(3, 1, 1), uncached(3, 1, 1), uncached(4, 1, 1)
    np.testing.assert_array_equal(a.buildings.height_m, b.buildings.height_m)
    np.testing.assert_array_equal(a.facade_bank.bgr, b.facade_bank.bgr)
    np.testing.assert_array_equal(a.sprite_bank.bgr, b.sprite_bank.bgr)
    np.testing.assert_array_equal(a.ground.bgr[0], b.ground.bgr[0])
    assert [(p.east_m, p.north_m) for p in a.props] == [(p.east_m, p.north_m) for p in b.props]
    assert not np.array_equal(a.buildings.height_m[:10], c.buildings.height_m[:10])


def test_gps_truth_is_the_rendering_camera_pose():
    drive = SimDrive(SimConfig(route="test_dusk", frames=30, **SMALL))
    frame = LocalFrame(drive.config.origin)
    for f in drive:
        e, n, u = frame.to_enu(f.lat_deg, f.lon_deg, f.alt_m)
        assert float(e) == pytest.approx(f.pose.east_m, abs=1e-6)
        assert float(n) == pytest.approx(f.pose.north_m, abs=1e-6)
        assert float(u) == pytest.approx(f.pose.height_m, abs=1e-6)
    # The city is anchored in downtown Los Angeles by default.
    assert f.lat_deg == pytest.approx(DEFAULT_ORIGIN_LAT_DEG, abs=0.01)
    assert f.lon_deg == pytest.approx(DEFAULT_ORIGIN_LON_DEG, abs=0.01)


def test_drive_file_holds_the_same_truth_as_the_frames(tmp_path):
    config = SimConfig(route="train", frames=15, origin=GeoOrigin(55.7047, 13.191, 20.0), odometry_noise="none", **SMALL)
    frames = _frames(config)
    path = tmp_path / "drive.mcap"
    summary = write_drive(config, path)
    assert summary.frames == 15
    with DriveReader(path) as drive:
        meta = drive.metadata
        assert meta.geo_origin == config.origin
        cam = meta.camera
        assert (cam.width_px, cam.height_px) == (96, 72)
        assert cam.hfov_deg == pytest.approx(config.hfov_deg)
        assert meta.extra["route"] == "train" and meta.extra["gps_is_ground_truth"] is True
        fixes = list(drive.fixes())
        masks = list(drive.label_masks())
        boxes = list(drive.boxes())
        odometry = list(drive.odometry())
        images = list(drive.images())
    local = LocalFrame(config.origin)
    assert len(fixes) == len(masks) == len(boxes) == len(odometry) == len(images) == 15
    for f, fix, m, b, o, im in zip(frames, fixes, masks, boxes, odometry, images, strict=True):
        stamps = {r.header.stamp_ns for r in (fix, m, b, o, im)}
        assert stamps == {f.stamp_ns}
        e, n, _ = local.to_enu(fix.lat_deg, fix.lon_deg, fix.alt_m)
        assert math.hypot(float(e) - f.pose.east_m, float(n) - f.pose.north_m) < 1e-3
        assert (fix.heading_deg - f.heading_deg + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_array_equal(m.label_mask, f.label_mask)
        assert m.class_names == list(C.CLASS_NAMES)
        np.testing.assert_allclose(b.boxes_xyxy_px, f.boxes_xyxy)
        assert o.speed_mps == pytest.approx(f.speed_mps)
        assert np.abs(im.to_bgr().astype(int) - f.image_bgr).mean() < 8  # JPEG, quality 90


def test_timestamps_follow_the_frame_rate_and_the_time_of_day():
    frames = _frames(SimConfig(route="test_loop", frames=5, fps=4.0, time_of_day_h=9.5, **SMALL))
    steps = np.diff([f.stamp_ns for f in frames])
    assert np.all(steps == 250_000_000)
    # 9:30 local (UTC-7) on the drive date is 16:30 UTC.
    assert (frames[0].stamp_ns // 1_000_000_000) % 86400 == 16 * 3600 + 30 * 60


def test_train_route_covers_every_street_segment_and_test_reverse_drives_it_backwards():
    city = generate_city(0, 3, 2)
    train = plan_route(city, "train").nodes
    ni, nj = city.n_nodes
    segments = {frozenset((a, b)) for a in [(i, j) for i in range(ni) for j in range(nj)] for b in city.neighbours(a)}
    driven = {frozenset(p) for p in zip(train, train[1:], strict=False)}
    assert driven == segments
    assert all(a != c for a, c in zip(train, train[2:], strict=False))  # no U-turns
    assert plan_route(city, "test_reverse").nodes == train[::-1]


def test_the_training_routes_drive_every_street_both_ways_in_both_lanes():
    """train, train_back, train_inner, train_back_inner: every directed segment in lane 0 and in lane 1
    (PoseNet cannot localize a view it never saw: the other direction shows other facades)."""
    city = generate_city(0, 3, 2)
    nodes = [(i, j) for i in range(city.n_nodes[0]) for j in range(city.n_nodes[1])]
    directed = {(a, b) for a in nodes for b in city.neighbours(a)}
    driven: dict[int, set] = {0: set(), 1: set()}
    for name in ("train", "train_back", "train_inner", "train_back_inner"):
        plan = plan_route(city, name)
        driven[plan.lane] |= set(zip(plan.nodes, plan.nodes[1:], strict=False))
    assert driven[0] == directed and driven[1] == directed
    assert plan_route(city, "train_back").nodes == plan_route(city, "train").nodes[::-1]
    times = {ROUTES[n].time_of_day_h for n in ("train", "train_back", "train_inner", "train_back_inner")}
    tests = {ROUTES[n].time_of_day_h for n in ROUTES if n.startswith("test_")}
    assert len(times) == 4 and not times & tests  # four times of day, none of them a test route's


def test_every_named_route_plans():
    city = generate_city(0, 2, 1)
    for name in ROUTES:
        plan = plan_route(city, name)
        assert len(plan.nodes) >= 2
    with pytest.raises(ValueError, match="unknown route"):
        plan_route(city, "nowhere")


def test_blackout_frames_are_black_and_unlabelled_while_gps_goes_on():
    frames = _frames(SimConfig(route="blackout", frames=340, width_px=32, height_px=24, blocks=(2, 1)))
    dark = [f for f in frames if not f.camera_ok]
    assert [f.index for f in dark] == list(range(200, 320))  # 20 s to 32 s at 10 fps
    for f in dark:
        assert not f.image_bgr.any() and np.all(f.label_mask == C.UNLABELLED) and len(f.boxes_xyxy) == 0
    assert frames[199].image_bgr.any() and frames[320].image_bgr.any()
    moved = math.hypot(dark[-1].pose.east_m - dark[0].pose.east_m, dark[-1].pose.north_m - dark[0].pose.north_m)
    assert moved > 10.0  # the vehicle drives on in the dark


def test_kidnap_moves_the_vehicle_far_in_one_frame_at_the_same_speed():
    frames = _frames(SimConfig(route="kidnap", frames=310, width_px=32, height_px=24, blocks=(2, 1)))
    jumps = [math.hypot(b.pose.east_m - a.pose.east_m, b.pose.north_m - a.pose.north_m)
             for a, b in zip(frames, frames[1:], strict=False)]
    k = int(np.argmax(jumps)) + 1
    assert frames[k].index == 300 and "kidnap" in frames[k].events
    assert jumps[k - 1] > 50.0
    assert max(jumps[: k - 1] + jumps[k:]) < 2.0  # otherwise a smooth drive (at most 20 m/s)
    assert frames[k].speed_mps == pytest.approx(frames[k - 1].speed_mps, abs=0.5)


def test_stop_at_light_waits_for_green_before_the_stop_line():
    drive = SimDrive(SimConfig(route="stop_at_light", width_px=32, height_px=24, blocks=(2, 2)))
    sim = drive.simulation()
    plan = drive.plan
    k = plan.nodes.index(plan.stop_node)
    sim.ego.path.ensure(0.0)
    stop_s = sim.ego.path.stop_s[k]
    speeds, states, gaps = [], [], []
    for _ in range(400):
        sim.traffic.step(0.1)
        speeds.append(sim.ego.speed_mps)
        states.append(drive.city.signal_state(plan.stop_node, "ns", sim.traffic.t_s))
        gaps.append(stop_s - (sim.ego.s_m + 0.5 * sim.ego.length_m))
    speeds, gaps = np.array(speeds), np.array(gaps)
    still = np.flatnonzero(speeds < 0.05)
    assert len(still)
    first_run = still[: int(np.argmax(np.diff(np.r_[still, 10**9]) > 1)) + 1]  # the first stop, start to end
    assert len(first_run) > 50  # waits more than 5 s
    assert np.all((gaps[first_run] > -0.5) & (gaps[first_run] < 20.0))  # at the stop line (or queued before it)
    assert all(states[i] != "green" for i in first_run[:-5])
    assert speeds[first_run[-1]:].max() > 5.0  # and drives on at green


def test_frames_are_the_same_in_another_process():
    """No dependence on hash seeds, dict order or global RNG state: two fresh interpreters agree."""
    import os
    import subprocess
    import sys

    code = ("import hashlib; from sim_data import SimConfig, SimDrive; h = hashlib.sha256()\n"
            "for f in SimDrive(SimConfig(route='test_reverse', frames=8, traffic='heavy', camera_noise=True, "
            "motion_blur=True, blocks=(2, 1), width_px=96, height_px=72)):\n"
            "    h.update(f.image_bgr.tobytes()); h.update(f.label_mask.tobytes()); h.update(f.boxes_xyxy.tobytes())\n"
            "print(h.hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(digests) == 1
