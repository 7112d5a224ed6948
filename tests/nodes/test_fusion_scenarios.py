"""Process replay of the issue-13 scenarios in the default city: the fusion node fed what it subscribes to
during a scenario drive (real PoseNet fixes with hypotheses and validity flags, typical-noise odometry),
as openpilot's process replay feeds recorded inputs to one process, and judged against the GPS truth.

The logs in tests/nodes/data/ are made by ``benchmarks/fusion_scenarios.py`` (render the scenario route
of the default city at 5 fps, run PoseNet's node on it offline, keep posenet/fix, odometry and gps/fix).
No torch, no bus: each replay takes well under a second."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from localization.geodesy import LocalFrame
from nodes.bus.messages import Pose
from nodes.clock import run_offline
from nodes.fusion import FusionNode, FusionParams
from perception.drives import DriveReader
from perception.drives.topics import GPS_TOPIC, ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC

DATA = Path(__file__).parent / "data"
CHI2_2DOF_95 = 5.991


class Replay:
    """One scenario log replayed through the fusion node: poses, truth at their stamps (ENU, m)."""

    def __init__(self, name: str, **params) -> None:
        with DriveReader(DATA / f"fusion_{name}.mcap") as log:
            self.extra = dict(log.metadata.extra or {})
            self.frame = LocalFrame(log.metadata.geo_origin)
            fixes = list(log.read(POSENET_TOPIC))
            odometry = list(log.read(ODOMETRY_TOPIC))
            truth = list(log.read(GPS_TOPIC))
        self.flagged = sum(not f.valid for f in fixes)
        self.node = FusionNode(FusionParams(**params))
        msgs = [(ODOMETRY_TOPIC, m) for m in odometry] + [(POSENET_TOPIC, m) for m in fixes]
        self.poses: list[Pose] = [m for t, m in run_offline(self.node, msgs) if t == POSE_TOPIC]
        self.t0_ns = truth[0].header.stamp_ns
        self.truth_ns = np.array([f.header.stamp_ns for f in truth])
        e, n, _ = self.frame.to_enu([f.lat_deg for f in truth], [f.lon_deg for f in truth])
        self.truth_en = np.stack([e, n], axis=1)
        self.truth_speed = np.array([f.speed_mps or 0.0 for f in truth])

    def seconds(self, stamp_ns: int) -> float:
        return (stamp_ns - self.t0_ns) * 1e-9

    def between(self, a_s: float, b_s: float) -> list[Pose]:
        return [p for p in self.poses if a_s <= self.seconds(p.header.stamp_ns) < b_s]

    def en(self, p: Pose) -> np.ndarray:
        e, n, _ = self.frame.to_enu(p.lat_deg, p.lon_deg)
        return np.array([float(e), float(n)])

    def truth_at(self, stamp_ns: int) -> np.ndarray:
        """The truth at a stamp: the last sample at or before it (a kidnap jumps; no interpolation across)."""
        k = max(0, int(np.searchsorted(self.truth_ns, stamp_ns, side="right")) - 1)
        dt_s = (stamp_ns - self.truth_ns[k]) * 1e-9
        if k + 1 < len(self.truth_ns) and np.hypot(*(self.truth_en[k + 1] - self.truth_en[k])) < 50.0:
            w = dt_s / ((self.truth_ns[k + 1] - self.truth_ns[k]) * 1e-9)
            return self.truth_en[k] + w * (self.truth_en[k + 1] - self.truth_en[k])
        return self.truth_en[k]

    def error_m(self, p: Pose) -> float:
        return float(np.hypot(*(self.en(p) - self.truth_at(p.header.stamp_ns))))

    def truth_inside_95(self, p: Pose) -> bool:
        d = self.truth_at(p.header.stamp_ns) - self.en(p)
        return float(d @ np.linalg.solve(np.array(p.cov_enu_m2).reshape(2, 2), d)) <= CHI2_2DOF_95


@cache
def replay(name: str) -> Replay:
    if not (DATA / f"fusion_{name}.mcap").is_file():
        pytest.skip(f"tests/nodes/data/fusion_{name}.mcap missing: python benchmarks/fusion_scenarios.py {name}")
    return Replay(name)


def horizontal_std_m(p: Pose) -> float:
    return math.sqrt(max(np.linalg.eigvalsh(np.array(p.cov_enu_m2).reshape(2, 2))))


# The logs are PoseNet's real output on the default city's scenario routes (the logs' source metadata says
# which checkpoint). With the regression alone (posenet-f09b1cf9) the blackout and kidnap scenarios failed
# for PoseNet's sake: no hypothesis within 20 m for most of the blackout drive's first 20 s, and after the
# kidnap the right place rarely the top hypothesis; they were xfail. With the place index
# (posenet-f09b1cf9+places-..., docs/posenet.md "Place recognition") they pass: re-make the logs after a
# new default checkpoint (python benchmarks/fusion_scenarios.py); the outcomes should not change.


def test_blackout_stays_degraded_inside_its_growing_ellipse_and_is_close_when_the_camera_returns():
    r = replay("blackout")
    a_s, b_s = (r.seconds(s) for s in r.extra["blackout_stamps_ns"])  # 12 s of black frames
    assert r.flagged >= 55, "PoseNet's validity check should flag the black frames"
    before = r.between(a_s - 5.0, a_s)
    assert before and all(p.status == "tracking" for p in before[-10:])  # tracking when the camera goes
    dark = r.between(a_s + 2.5, b_s)  # after degraded_after_s (2 s) without an accepted fix
    assert dark and all(p.status == "degraded" and p.valid for p in dark)
    assert all(r.truth_inside_95(p) for p in dark)
    stds = [horizontal_std_m(p) for p in r.between(a_s + 0.5, b_s)]
    assert stds[-1] > 2.0 * stds[0]  # the ellipse grows while predicting on odometry
    assert r.error_m(r.between(a_s, b_s)[-1]) <= 5.0  # when the camera returns
    back = r.between(b_s + 2.0, b_s + 10.0)
    assert back and np.mean([p.status == "tracking" for p in back]) > 0.9
    assert max(r.error_m(p) for p in back) <= 5.0


def test_kidnap_is_reported_lost_then_tracking_within_5_s_at_5_m():
    r = replay("kidnap")
    k_s = r.seconds(r.extra["kidnap_stamp_ns"])
    assert max(r.error_m(p) for p in r.between(k_s - 10.0, k_s) if p.valid) <= 5.0  # fine before
    after = r.between(k_s, k_s + 15.0)
    assert any(p.status == "lost" for p in after), "the kidnap was never reported"
    # TRACKING within 5 m, held for 1 s, within 5 s of the jump
    good = [p.status == "tracking" and r.error_m(p) <= 5.0 for p in after]
    t = [r.seconds(p.header.stamp_ns) for p in after]
    held = [i for i in range(len(after)) if all(good[j] for j in range(i, len(after)) if t[j] < t[i] + 1.0)]
    assert held and t[held[0]] - k_s <= 5.0, f"recovered {t[held[0]] - k_s if held else 'never'} s after"
    assert r.node.filter.relocalisations >= 1
    assert max(r.error_m(p) for p in r.between(t[held[0]], k_s + 15.0)) <= 5.0  # and stays


def test_stop_at_light_holds_still_without_drift():
    r = replay("stop_at_light")
    stopped = r.truth_speed < 0.05
    runs = np.flatnonzero(np.diff(np.r_[0, stopped.astype(int), 0]))
    a, b = max(zip(runs[::2], runs[1::2], strict=True), key=lambda ab: ab[1] - ab[0])  # the wait at the light
    a_s, b_s = r.seconds(r.truth_ns[a]), r.seconds(r.truth_ns[b - 1])
    assert b_s - a_s >= 10.0
    still = r.between(a_s + 1.0, b_s)
    en = np.array([r.en(p) for p in still])
    assert np.ptp(en, axis=0).max() < 1.0  # no creep while the wheels read 0
    headings = np.degrees(np.unwrap(np.radians([p.heading_deg for p in still])))  # 359.9 and 0.1 are 0.2 apart
    assert np.ptp(headings) < 2.0  # nor turning on the gyro bias
    assert all(p.status == "tracking" for p in still)
    assert max(r.error_m(p) for p in still) <= 5.0
    assert max(r.error_m(p) for p in r.between(b_s + 2.0, b_s + 10.0) if p.valid) <= 5.0  # drives off on track
