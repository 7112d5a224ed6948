"""The fusion node, pure and fast (no bus, no model): scenario tests in openpilot test_locationd_scenarios'
shape. A synthetic vehicle drives a known path; PoseNet-like fixes at 5 Hz and wheel odometry at 20 Hz go
through ``nodes.clock.run_offline`` (as a replay would deliver them); knobs break them (camera blackout,
odometry loss, kidnap, late bursts, NaN) and the tests assert what a user of ``localization/pose`` sees."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pytest

from localization.geodesy import GeoOrigin, LocalFrame
from nodes.bus.messages import FixHypothesis, GeoFix, Header, Hop, Odometry, Pose
from nodes.clock import run_offline
from nodes.fusion import FusionNode, FusionParams, fix_measurement
from perception.drives.topics import GPS_TOPIC, ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC

T0_NS = 1_718_987_400_000_000_000
FRAME = LocalFrame(GeoOrigin())
FIX_HZ = 5.0
ODOMETRY_HZ = 20.0


@dataclass
class Scenario:
    duration_s: float = 40.0
    speed_mps: float = 8.0
    fix_std_m: float = 2.0
    blackout_s: tuple[float, float] | None = None  # fixes valid=False (black frames) in [a, b)
    odometry_loss_s: tuple[float, float] | None = None  # no odometry in [a, b)
    kidnap_at_s: float | None = None  # the vehicle is moved 400 m east at this time
    nan_fix_at_s: list[float] = field(default_factory=list)  # fixes with a NaN latitude at these times
    stop_s: tuple[float, float] | None = None  # stopped at a light in [a, b): wheels read 0, the camera
    #   sees the same image (the same fix error) again and again
    seed: int = 0


def truth_en_m(s: Scenario, t_s: float) -> tuple[float, float, float]:
    """(east_m, north_m, yaw_rad) of the vehicle at ``t_s``: north for 15 s, a 90 deg left turn over 5 s,
    then west; after a kidnap, the same path 400 m east."""
    v = s.speed_mps
    if s.stop_s is not None and t_s >= s.stop_s[0]:
        t_s = max(s.stop_s[0], t_s - (s.stop_s[1] - s.stop_s[0]))  # time spent driving
    if t_s < 15.0:
        e, n, yaw = 0.0, v * t_s, math.pi / 2
    elif t_s < 20.0:
        r = v * 5.0 / (math.pi / 2)
        a = (t_s - 15.0) / 5.0 * math.pi / 2
        e, n, yaw = -r * (1 - math.cos(a)), v * 15.0 + r * math.sin(a), math.pi / 2 + a
    else:
        r = v * 5.0 / (math.pi / 2)
        e, n, yaw = -r - v * (t_s - 20.0), v * 15.0 + r, math.pi
    if s.kidnap_at_s is not None and t_s >= s.kidnap_at_s:
        e += 400.0
    return e, n, yaw


def stopped(s: Scenario, t_s: float) -> bool:
    return s.stop_s is not None and s.stop_s[0] <= t_s < s.stop_s[1]


def yaw_rate_radps(s: Scenario, t_s: float) -> float:
    if stopped(s, t_s):
        return 0.0
    if s.stop_s is not None and t_s >= s.stop_s[1]:
        t_s -= s.stop_s[1] - s.stop_s[0]
    return (math.pi / 2) / 5.0 if 15.0 <= t_s < 20.0 else 0.0


def messages(s: Scenario) -> list[tuple[str, GeoFix | Odometry]]:
    """(topic, message) in stamp order: odometry at 20 Hz, fixes at 5 Hz (each with a one-hop trace)."""
    rng = np.random.default_rng(s.seed)
    out: list[tuple[float, int, str, GeoFix | Odometry]] = []
    for k in range(int(s.duration_s * ODOMETRY_HZ)):
        t = k / ODOMETRY_HZ
        if s.odometry_loss_s and s.odometry_loss_s[0] <= t < s.odometry_loss_s[1]:
            continue
        speed = 0.0 if stopped(s, t) else s.speed_mps * 1.02 + rng.normal(0, 0.05)  # 2 % scale error + noise
        w = yaw_rate_radps(s, t) + 0.002 + rng.normal(0, 0.005)  # gyro bias + white noise
        out.append((t, 0, ODOMETRY_TOPIC, Odometry(Header(stamp_ns(t)), speed, w)))
    for k in range(int(s.duration_s * FIX_HZ)):
        t = k / FIX_HZ
        e, n, yaw = truth_en_m(s, t)
        noise = rng.normal(0, s.fix_std_m, 2)
        if stopped(s, t):
            noise = np.random.default_rng([s.seed, 7]).normal(0, s.fix_std_m, 2)  # the same image each time
        e, n = e + noise[0], n + noise[1]
        lat, lon, _ = FRAME.to_geodetic(e, n)
        heading = (90.0 - math.degrees(yaw)) % 360.0 + rng.normal(0, 5.0)
        header = Header(stamp_ns(t), frame_id="posenet", trace=[Hop("camera", stamp_ns(t), stamp_ns(t) + 1_000_000)])
        fix = GeoFix(header, float(lat), float(lon), heading_deg=heading % 360.0,
                     cov_enu_m2=(s.fix_std_m**2, 0.0, 0.0, s.fix_std_m**2), heading_std_deg=10.0, source="synthetic")
        if s.blackout_s and s.blackout_s[0] <= t < s.blackout_s[1]:
            fix.valid, fix.reason = False, "black_frame"
        if any(abs(t - x) < 1e-6 for x in s.nan_fix_at_s):
            fix.lat_deg = math.nan
        out.append((t, 1, POSENET_TOPIC, fix))
    out.sort(key=lambda r: (r[0], r[1]))
    return [(topic, msg) for _, _, topic, msg in out]


def stamp_ns(t_s: float) -> int:
    return T0_NS + round(t_s * 1e9)


def seconds(stamp: int) -> float:
    return (stamp - T0_NS) * 1e-9


def poses(outputs: list[tuple[str, object]]) -> list[Pose]:
    return [m for t, m in outputs if t == POSE_TOPIC]  # type: ignore[misc]


def error_m(s: Scenario, pose: Pose) -> float:
    """Distance from the truth at the pose's stamp, m."""
    e, n, _ = FRAME.to_enu(pose.lat_deg, pose.lon_deg)
    te, tn, _ = truth_en_m(s, seconds(pose.header.stamp_ns))
    return float(math.hypot(float(e) - te, float(n) - tn))


def truth_inside_95(s: Scenario, pose: Pose) -> bool:
    """Is the truth inside the pose's 95 % error ellipse?"""
    e, n, _ = FRAME.to_enu(pose.lat_deg, pose.lon_deg)
    te, tn, _ = truth_en_m(s, seconds(pose.header.stamp_ns))
    d = np.array([te - float(e), tn - float(n)])
    return float(d @ np.linalg.solve(np.array(pose.cov_enu_m2).reshape(2, 2), d)) <= 5.991


def run(s: Scenario, **params) -> tuple[FusionNode, list[Pose]]:
    node = FusionNode(FusionParams(**params))
    return node, poses(run_offline(node, messages(s)))


def between(ps: list[Pose], a_s: float, b_s: float) -> list[Pose]:
    return [p for p in ps if a_s <= seconds(p.header.stamp_ns) < b_s]


def horizontal_std_m(p: Pose) -> float:
    return math.sqrt(max(np.linalg.eigvalsh(np.array(p.cov_enu_m2).reshape(2, 2))))


# ------------------------------------------------------------------------------------------ the node


def test_topics_follow_the_parameters():
    assert set(FusionNode().subscribes) == {POSENET_TOPIC, ODOMETRY_TOPIC}  # gps/fix is truth in a replay
    assert set(FusionNode(FusionParams(use_gps=True, use_odometry=False)).subscribes) == {POSENET_TOPIC, GPS_TOPIC}
    assert FusionNode.declared_topics(FusionParams(use_gps=True))[0].keys() == {ODOMETRY_TOPIC, POSENET_TOPIC,
                                                                                 GPS_TOPIC}
    assert FusionNode().merge_inputs_by_stamp.late == "deliver"


def test_nominal_drive_tracks_at_a_steady_rate_with_trace_and_inputs():
    s = Scenario(duration_s=30.0)
    node, ps = run(s)
    ticks = [p for p in ps if p.header.stamp_ns % 50_000_000 == 0 and seconds(p.header.stamp_ns) * FIX_HZ % 1]
    # 20 Hz on the graph clock between fixes (plus one pose per fix)
    assert len(between(ps, 10.0, 20.0)) == pytest.approx(10 * (20 + 5), abs=12)
    assert ticks, "no tick poses between fixes"
    # the start is confirmed by driving init_confirm_m (40 m, 5 s at 8 m/s) on it: INITIALIZING until then
    assert all(p.status == "initializing" and not p.valid for p in between(ps, 0.0, 4.5))
    assert "confirming" in between(ps, 2.0, 4.5)[-1].reason
    late = between(ps, 6.0, 30.0)
    assert all(p.status == "tracking" and p.valid for p in late)
    errors = [error_m(s, p) for p in late]
    assert np.median(errors) < 1.5 and max(errors) < 5.0
    assert np.mean([truth_inside_95(s, p) for p in late]) > 0.8
    assert any(POSENET_TOPIC in p.inputs_used for p in late) and any(ODOMETRY_TOPIC in p.inputs_used for p in late)
    assert all(p.trace and p.trace[0].node == "camera" for p in [q.header for q in late])
    assert node.counters == {}


def test_pose_before_the_filter_starts_is_not_valid_and_says_why():
    _, ps = run(Scenario(duration_s=2.0))
    first = ps[0]
    assert first.status == "initializing" and not first.valid and "agree" in first.reason


def test_camera_blackout_degrades_grows_the_ellipse_keeps_the_truth_inside_and_recovers():
    s = Scenario(duration_s=45.0, blackout_s=(20.0, 32.0))  # 12 s without camera, through the turn's end
    node, ps = run(s)
    dark = between(ps, 22.5, 32.0)
    assert dark and all(p.status == "degraded" and p.valid for p in dark)
    assert all("no fix accepted" in p.reason for p in dark)
    stds = [horizontal_std_m(p) for p in between(ps, 20.0, 32.0)]
    assert stds[-1] > 2 * stds[0] and all(b >= a - 1e-9 for a, b in itertools.pairwise(stds))
    assert all(truth_inside_95(s, p) for p in dark)
    assert error_m(s, between(ps, 31.9, 32.0)[-1]) <= 5.0  # when the camera comes back
    back = between(ps, 33.0, 45.0)
    assert all(p.status == "tracking" for p in back) and max(error_m(s, p) for p in back) < 5.0
    assert node.counters == {f"{POSENET_TOPIC}:black_frame": 60}  # skipped and counted by reason


def test_odometry_loss_keeps_tracking_on_the_camera():
    s = Scenario(duration_s=40.0, odometry_loss_s=(10.0, 25.0))
    _, ps = run(s)
    gap = between(ps, 10.0, 25.0)
    assert all(p.status == "tracking" for p in gap)
    assert not any(ODOMETRY_TOPIC in p.inputs_used for p in gap)
    assert np.median([error_m(s, p) for p in gap]) < 3.0 and max(error_m(s, p) for p in gap) < 10.0


def test_kidnap_is_reported_lost_then_relocalised():
    s = Scenario(duration_s=40.0, kidnap_at_s=25.0)
    node, ps = run(s)
    after = between(ps, 25.0, 40.0)
    assert any(p.status == "lost" for p in after), "the kidnap was never reported"
    recovered = [p for p in after if p.status == "tracking" and error_m(s, p) <= 5.0]
    assert recovered and seconds(recovered[0].header.stamp_ns) - 25.0 <= 5.0
    assert all(p.status == "tracking" and error_m(s, p) <= 5.0 for p in between(ps, 31.0, 40.0))
    assert node.filter.relocalisations == 1


def test_a_burst_of_late_messages_is_reordered_and_the_track_is_unchanged():
    s = Scenario(duration_s=20.0)
    msgs = messages(s)
    in_order = FusionNode()
    ref = poses(run_offline(in_order, msgs))
    # the same messages, but odometry of 11.0-11.5 s arrives in a burst after the fix of 11.6 s
    held = [m for m in msgs if m[0] == ODOMETRY_TOPIC and 11.0 <= seconds(m[1].header.stamp_ns) < 11.5]
    rest = [m for m in msgs if not any(m is h for h in held)]
    cut = next(k for k, m in enumerate(rest) if seconds(m[1].header.stamp_ns) > 11.6)
    node = FusionNode()
    node.clock.advance = lambda _ns: None  # type: ignore[method-assign]
    out: list[Pose] = []
    for topic, msg in [*rest[:cut], *held, *rest[cut:]]:  # arrival order, delivered as the merger would
        out.extend(m for _, m in node.on_message(topic, msg, 0))
    last_ref = [p for p in ref if p.header.stamp_ns == out[-1].header.stamp_ns][-1]
    assert error_m(s, out[-1]) == pytest.approx(error_m(s, last_ref), abs=0.01)
    assert node.counters == {}
    # older than the history: rejected and counted, the node goes on
    out2 = list(node.on_message(ODOMETRY_TOPIC, held[0][1], 0))
    assert out2 == [] and node.counters == {"too_old:odom": 1}
    assert node.take_errors()[0][0] == f"reject:{ODOMETRY_TOPIC}"


def test_a_nan_fix_is_counted_and_the_node_keeps_running():
    s = Scenario(duration_s=20.0, nan_fix_at_s=[0.0, 10.0, 10.2])
    node, ps = run(s)
    assert node.counters == {"invalid:posenet": 3}
    assert all(p.status == "tracking" for p in between(ps, 12.0, 20.0))
    assert all(math.isfinite(p.lat_deg) for p in ps)


def test_invalid_odometry_and_gps_when_disabled_never_reach_the_filter():
    node = FusionNode()
    bad = Odometry(Header(T0_NS), 5.0, 0.0, valid=False)
    assert list(node.on_message(ODOMETRY_TOPIC, bad, 0)) == []
    assert node.counters == {f"{ODOMETRY_TOPIC}:not_valid": 1}


def test_gps_fix_is_fused_when_enabled():
    s = Scenario(duration_s=10.0)
    node = FusionNode(FusionParams(use_gps=True, use_odometry=False, pose_on_fix=False))
    msgs = [(GPS_TOPIC, m) for t, m in messages(s) if t == POSENET_TOPIC]
    for _, m in msgs:
        m.cov_enu_m2 = (math.nan, 0.0, 0.0, math.nan)  # a receiver without a covariance: gps_std_m
    ps = poses(run_offline(node, msgs))
    assert any(GPS_TOPIC in p.inputs_used for p in ps) and ps[-1].status == "tracking"


def test_hypotheses_are_used_when_present_else_the_top_level_fix():
    frame = LocalFrame(GeoOrigin())
    lat, lon, _ = frame.to_geodetic(100.0, 50.0)
    lat2, lon2, _ = frame.to_geodetic(-300.0, 50.0)
    fix = GeoFix(Header(T0_NS), float(lat), float(lon), heading_deg=90.0, cov_enu_m2=(400.0, 0, 0, 400.0),
                 heading_std_deg=20.0)
    (only,) = fix_measurement(fix, frame).hypotheses
    assert (only.east_m, only.north_m) == pytest.approx((100.0, 50.0), abs=1e-3)
    assert only.cov_enu_m2[0, 0] == 400.0 and only.heading_deg == 90.0
    fix.hypotheses = [FixHypothesis(float(lat), float(lon), 0.7, (4.0, 0.0, 0.0, 4.0), 80.0, 5.0),
                      FixHypothesis(float(lat2), float(lon2), 0.2)]  # no covariance, no heading: the fix's
    a, b = fix_measurement(fix, frame).hypotheses
    assert a.cov_enu_m2[0, 0] == 4.0 and (a.heading_deg, a.heading_std_deg, a.weight) == (80.0, 5.0, 0.7)
    assert b.east_m == pytest.approx(-300.0, abs=1e-3) and b.cov_enu_m2[0, 0] == 400.0 and b.heading_deg == 90.0


def test_a_look_alike_second_hypothesis_does_not_pull_the_track():
    """Each fix carries the right place and a look-alike 150 m away with more weight half the time: the
    gate keeps the filter on the right street."""
    s = Scenario(duration_s=30.0)
    msgs = messages(s)
    for k, (topic, m) in enumerate(msgs):
        if topic == POSENET_TOPIC and seconds(m.header.stamp_ns) > 8.0:
            e, n, _ = FRAME.to_enu(m.lat_deg, m.lon_deg)
            la, lo, _ = FRAME.to_geodetic(float(e) + 150.0, float(n))
            right = FixHypothesis(m.lat_deg, m.lon_deg, 0.4, m.cov_enu_m2, m.heading_deg, 10.0)
            wrong = FixHypothesis(float(la), float(lo), 0.6 if k % 2 else 0.3, m.cov_enu_m2, m.heading_deg, 10.0)
            m.hypotheses = sorted([right, wrong], key=lambda h: -h.weight)
            m.lat_deg, m.lon_deg = m.hypotheses[0].lat_deg, m.hypotheses[0].lon_deg
    ps = poses(run_offline(FusionNode(), msgs))
    assert max(error_m(s, p) for p in between(ps, 8.0, 30.0)) < 5.0


def test_stop_at_a_light_holds_still_without_drift():
    s = Scenario(duration_s=40.0, stop_s=(10.0, 25.0))  # 15 s stopped, the same fix error every frame
    _, ps = run(s)
    # the synthetic car stops from 8 m/s at once, which the odometry gate refuses for a moment: from 11.5 s on
    still = between(ps, 11.5, 25.0)
    en = np.array([FRAME.to_enu(p.lat_deg, p.lon_deg)[:2] for p in still], float)
    assert np.ptp(en, axis=0).max() < 1.0  # no creep: odometry says 0, the repeated fix adds no certainty
    assert error_m(s, still[-1]) <= error_m(s, still[0])
    assert np.ptp([p.heading_deg for p in still]) < 2.0  # the gyro bias does not turn it
    assert all(p.status == "tracking" for p in still) and max(error_m(s, p) for p in still) < 5.0
    assert max(error_m(s, p) for p in between(ps, 27.0, 40.0)) < 5.0  # and drives off on the right street


# ------------------------------------------------------------------------------------------ a looping replay


def test_input_restart_starts_the_filter_again():
    """A replay looping to its drive's start: the shell calls ``on_input_restart``; the node then answers
    the second pass exactly as a fresh node answers the first (new filter, frame anchored anew), and its
    counters add up over the passes."""
    s = Scenario(duration_s=8.0, nan_fix_at_s=[3.0])
    node, first = run(s)
    node.on_input_restart(POSENET_TOPIC)
    again = poses(run_offline(node, messages(s)))
    assert [(p.header.stamp_ns, p.lat_deg, p.lon_deg, p.status, p.valid) for p in again] == \
        [(p.header.stamp_ns, p.lat_deg, p.lon_deg, p.status, p.valid) for p in first]
    assert any(p.valid for p in again) and node.input_restarts == 1
    assert node.counters == {"invalid:posenet": 2}


def test_looping_replay_keeps_poses_coming_on_the_bus(bus_config):
    """On the bus, as `streetloc replay --loop` drives it: odometry and fixes of one pass, then the
    odometry publisher (the replay) restarts at the drive's start, one fix of the first pass arrives late
    from the PoseNet node's old incarnation, and PoseNet restarts too. The fusion node restarts its filter
    once, drops the stale fix, and its poses of the second pass reach a subscriber (a new incarnation,
    nothing rejected as going back) and equal those of the first."""
    import threading
    import time

    from nodes.bus.pubsub import Publisher, Subscriber
    from nodes.runtime import NodeRunner

    s = Scenario(duration_s=8.0)
    msgs = messages(s)
    node = FusionNode(FusionParams(max_delay_s=1.0, tick_hz=0.0))  # poses at fixes: one per fix per pass
    runner = NodeRunner(node, config=bus_config, use_sim_time=True)
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 30.0}, daemon=True)
    thread.start()
    got: list[Pose] = []
    with (Subscriber(POSE_TOPIC, config=bus_config) as out, Publisher(ODOMETRY_TOPIC, config=bus_config) as odo,
          Publisher(POSENET_TOPIC, node="posenet", config=bus_config) as fixes):
        assert odo.wait_for_subscribers(1, 5) and fixes.wait_for_subscribers(1, 5)
        time.sleep(0.3)

        def send(pass_msgs):
            for topic, msg in pass_msgs:
                msg = msgspec.structs.replace(msg, header=msgspec.structs.replace(msg.header, trace=[]))
                (odo if topic == ODOMETRY_TOPIC else fixes).publish(msg)

        send(msgs)
        time.sleep(1.5)
        odo.restart_stream()  # the replay loops
        send([(t, m) for t, m in msgs if t == ODOMETRY_TOPIC][:3])
        time.sleep(0.2)
        fixes.publish(GeoFix(Header(stamp_ns(8.5)), lat_deg=0.0, lon_deg=0.0))  # the old pass's tail, late
        fixes.restart_stream()  # PoseNet sees the new pass
        send([(t, m) for t, m in msgs if t == POSENET_TOPIC or m.header.stamp_ns > stamp_ns(0.1)])
        deadline = time.monotonic() + 15
        while len(got) < 80 and time.monotonic() < deadline:
            if (pose := out.recv(timeout_s=0.5)) is not None:
                got.append(pose)
        rejected = dict(out.rejected)
    runner.stop()
    thread.join()
    diag = runner.diagnostics_message(1.0)
    runner.close()
    assert rejected == {} and out.restarts == 1
    assert runner.inputs_went_back == 1 and node.input_restarts == 1
    assert runner._merger.dropped[POSENET_TOPIC] == 1, "the stale fix was dropped"
    assert not any(k.startswith("late:") for k in diag.errors), diag.errors
    first, second = got[:40], got[40:]
    assert len(second) == 40 and any(p.valid for p in second)
    assert [(p.header.stamp_ns, p.lat_deg, p.status) for p in second] == \
        [(p.header.stamp_ns, p.lat_deg, p.status) for p in first]
