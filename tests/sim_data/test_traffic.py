"""Lane paths follow the lanes, vehicles keep their distance and stop at red lights, people stay on
their loops."""

from __future__ import annotations

import numpy as np
import pytest

from sim_data.city import EW, NS
from sim_data.traffic import LanePath, Traffic, spawn_pedestrians, spawn_traffic


def test_lane_path_keeps_right_and_turns_smoothly(small_city):
    city = small_city
    # North on avenue 0 from street 0 to street 1, then right (east) to avenue 1.
    path = LanePath(city, [(0, 0), (0, 1), (1, 1)], lane=0)
    av, st = city.avenues[0], city.streets[1]
    e, n, h = path.pose_at(10.0)
    assert (e, h) == pytest.approx((av.center_m + av.lane_offset_m(0), 0.0))  # right of the centre line
    e, n, h = path.pose_at(path.length_m)
    assert (n, h) == pytest.approx((st.center_m - st.lane_offset_m(0), 90.0))  # heading east, south of it
    # No jumps and no kinks: position and heading change smoothly along the path.
    s = np.arange(0.0, path.length_m, 0.25)
    poses = np.array([path.pose_at(x) for x in s])
    step = np.hypot(np.diff(poses[:, 0]), np.diff(poses[:, 1]))
    assert step.max() < 0.25 + 1e-6
    turn = np.abs((np.diff(poses[:, 2]) + 180) % 360 - 180)
    assert turn.max() < 3.0  # degrees per 25 cm: the 90 degree turn is an arc
    assert poses[:, 2].max() == pytest.approx(90.0)
    # The stop line before the turn is before the crossing street's road.
    assert path.stop_s[1] < path.node_s[1] - st.half_road_m


def test_lane_path_rejects_impossible_routes(small_city):
    with pytest.raises(ValueError, match="not neighbours"):
        LanePath(small_city, [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="U-turn"):
        LanePath(small_city, [(0, 0), (0, 1), (0, 0)])


@pytest.fixture(scope="module")
def traffic_run(small_city):
    """A minute of heavy traffic, sampled every 0.1 s: per step, per vehicle (s, edge, lane key, speed)."""
    rng = np.random.default_rng(7)
    vehicles = spawn_traffic(small_city, rng, 30, 6, 1)
    traffic = Traffic(small_city, vehicles, t0_s=3.0)
    samples = []
    for _ in range(600):
        traffic.step(0.1)
        samples.append([(v.s_m, v.path.edge_at(v.s_m), v.lane_key(), v.speed_mps) for v in vehicles])
    return small_city, vehicles, samples


def test_vehicles_in_a_lane_never_overlap(traffic_run):
    city, vehicles, samples = traffic_run
    for step in samples[::5]:
        by_lane: dict = {}
        for v, (s, k, key, _) in zip(vehicles, step, strict=True):
            edge_len = v.path.node_s[k + 1] - v.path.node_s[k]
            s_local = s - v.path.node_s[k]
            if 25.0 < s_local < edge_len - 25.0:  # between intersections (where lanes merge, skip)
                by_lane.setdefault(key, []).append((s_local, v.length_m))
        for members in by_lane.values():
            members.sort()
            for (s0, l0), (s1, l1) in zip(members, members[1:], strict=False):
                assert s1 - s0 >= 0.5 * (l0 + l1), (s0, s1)


def test_vehicles_stop_at_red_lights(traffic_run):
    """Nobody crosses a stop line on a red that began more than 2 s earlier (those who were too close to
    stop when it turned yellow clear the intersection in the first moments of red)."""
    city, vehicles, samples = traffic_run
    crossings = 0
    for i, v in enumerate(vehicles):
        for t in range(1, len(samples)):
            (s_a, k_a, _, _), (s_b, _, _, _) = samples[t - 1][i], samples[t][i]
            if k_a + 1 >= len(v.path.stop_s):
                continue
            line = v.path.stop_s[k_a + 1]
            if s_a + 0.5 * v.length_m < line <= s_b + 0.5 * v.length_m:
                crossings += 1
                a, b = v.path.nodes[k_a], v.path.nodes[k_a + 1]
                axis = NS if a[0] == b[0] else EW
                t_s = 3.0 + 0.1 * t  # the clock when the step that crossed the line began
                assert city.signal_state(b, axis, t_s) != "red" or city.signal_state(b, axis, t_s - 2.0) != "red"
    assert crossings > 20


def test_pedestrians_walk_their_sidewalk_loops(small_city):
    people = spawn_pedestrians(small_city, np.random.default_rng(3), 10.0, 500)
    assert len(people) > 5
    e0, n0, _, _ = people.state(0.0)
    e1, n1, _, phase = people.state(10.0)
    walked = np.hypot(e1 - e0, n1 - n0)
    assert np.all(walked <= np.abs(people.speed_mps) * 10.0 + 1e-6)  # never faster than their pace
    assert np.all((phase >= 0) & (phase < 1))
    # On the loop's rectangle: on one of its four sides.
    on_side = (np.isclose(e1, people.x0) | np.isclose(e1, people.x1) | np.isclose(n1, people.y0)
               | np.isclose(n1, people.y1))
    assert on_side.all()
    # Outside the blocks' property lines (on the sidewalks or crossing a street), never inside a block.
    for x0, y0, x1, y1 in small_city.block_rects:
        inside = (e1 > x0 + 0.1) & (e1 < x1 - 0.1) & (n1 > y0 + 0.1) & (n1 < y1 - 0.1)
        assert not inside.any()
