"""Everything that moves: vehicles and bicyclists on lane paths (obeying signals, following the one
ahead), the ego vehicle carrying the camera, and pedestrians walking the sidewalks.

Vehicles follow a ``LanePath``: a sequence of intersections driven in one lane, with circular arcs at
turns, parameterised by arc length ``s_m``. The speed model is deliberately simple and stable: each
step a vehicle accelerates towards the lowest of its cruise speed, the speed that lets it take the next
turn, and the speed from which it can still stop (at ``BRAKE_MPS2``) before the vehicle ahead or a red
signal's stop line.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from . import city as citymod
from .city import EW, NS, City

Node = tuple[int, int]

ACCEL_MPS2 = 2.0
BRAKE_MPS2 = 3.0  # comfortable braking used to plan stops
BRAKE_START_FRAC = 0.8  # start braking for a stop once it needs this fraction of BRAKE_MPS2
YELLOW_BRAKE_MPS2 = 4.5  # the hardest braking a driver accepts to stop at a yellow light
STOP_WITHIN_M = 0.3  # closer than this to where it must stop, a vehicle stands still
LATERAL_ACCEL_MPS2 = 3.0  # sets turning speeds
MIN_GAP_M = 2.5  # bumper to bumper when stopped
RIGHT_TURN_RADIUS_M = 6.0
LEFT_TURN_RADIUS_M = 11.0
MAX_SIM_STEP_S = 0.1
STOP_LINE_SETBACK_M = citymod.CROSSWALK_GAP_M + citymod.CROSSWALK_M + citymod.STOP_LINE_GAP_M + 0.3


def _right(d: np.ndarray) -> np.ndarray:
    """Right-hand perpendicular of a direction in (east, north)."""
    return np.array([d[1], -d[0]])


class LanePath:
    """A drive along the lane network.

    Args:
        city: the city.
        nodes: at least two neighbouring intersections, in driving order (no U-turns).
        lane: driving lane (0 next to the centre line) or -1 for the bike lane.
        rng: extends the path with random turns when driven past its last node; None: the path ends.

    The path starts on the lane line at the first node's centre, heading to the second node.
    """

    def __init__(self, city: City, nodes: list[Node], lane: int = 0, rng: np.random.Generator | None = None) -> None:
        if len(nodes) < 2:
            raise ValueError("a lane path needs at least two intersections")
        for a, b in zip(nodes, nodes[1:], strict=False):
            if b not in city.neighbours(a):
                raise ValueError(f"intersections {a} and {b} are not neighbours")
        for a, b, c in zip(nodes, nodes[1:], nodes[2:], strict=False):
            if a == c:
                raise ValueError(f"the path turns back at {b}; U-turns are not driven")
        self.city = city
        self.lane = int(lane)
        self.rng = rng
        self.nodes: list[Node] = [nodes[0], nodes[1]]
        st = city.street_between(nodes[0], nodes[1])
        d = self._dir(nodes[0], nodes[1])
        start = np.array(city.node_en(nodes[0])) + _right(d) * self.lane_offset_m(st)
        self._pts: list[np.ndarray] = [start]  # vertices (east, north)
        self._hdg: list[float] = [math.degrees(math.atan2(d[0], d[1]))]
        self._s: list[float] = [0.0]
        self.node_s: list[float] = [0.0]  # arc length where each node's centre is passed (projected on the lane)
        self.stop_s: list[float] = [-math.inf]  # stop line before each node (none before the first)
        self.arcs: list[tuple[float, float, float]] = []  # (s_start, s_end, speed limit m/s) of each turn
        for n in nodes[2:]:
            self._append(n)
        self.scripted_nodes = len(nodes)
        if rng is None:
            self._close()

    def _close(self) -> None:
        """End a path that will not be extended on the lane line at its last node's centre."""
        city = self.city
        a, b = self.nodes[-2], self.nodes[-1]
        d = self._dir(a, b)
        end = np.array(city.node_en(b)) + _right(d) * self.lane_offset_m(city.street_between(a, b))
        s_node = self._s[-1] + float(np.dot(end - self._pts[-1], d))
        self.node_s.append(s_node)
        self.stop_s.append(s_node - city.crossing_street(a, b).half_road_m - STOP_LINE_SETBACK_M)
        self._add_vertex(end, self._hdg[-1])

    # -------------------------------------------------------------------------------------- building

    @staticmethod
    def _dir(a: Node, b: Node) -> np.ndarray:
        return np.array([np.sign(b[0] - a[0]), np.sign(b[1] - a[1])], np.float64)

    def lane_offset_m(self, st: citymod.Street) -> float:
        """Distance right of ``st``'s centre line of the lane this path drives."""
        return st.bike_offset_m if self.lane < 0 else st.lane_offset_m(self.lane)

    def _append(self, nxt: Node) -> None:
        """Extend the path through its current last node towards ``nxt``."""
        city = self.city
        a, b = self.nodes[-2], self.nodes[-1]
        if nxt not in city.neighbours(b) or nxt == a:
            raise ValueError(f"cannot continue from {a}->{b} to {nxt}")
        d_in, d_out = self._dir(a, b), self._dir(b, nxt)
        st_in, st_out = city.street_between(a, b), city.street_between(b, nxt)
        o_in, o_out = self.lane_offset_m(st_in), self.lane_offset_m(st_out)
        node = np.array(city.node_en(b))
        node_proj = node + _right(d_in) * o_in
        cur, s_cur = self._pts[-1], self._s[-1]
        cross = city.crossing_street(a, b)
        turn = float(d_in[0] * d_out[1] - d_in[1] * d_out[0])  # > 0: left turn (counter-clockwise)
        s_node = s_cur + float(np.dot(node_proj - cur, d_in))
        self.node_s.append(s_node)
        self.stop_s.append(s_node - cross.half_road_m - STOP_LINE_SETBACK_M)
        if abs(turn) < 0.5:  # straight on
            self._add_vertex(node_proj, self._hdg[-1])
        else:
            radius = LEFT_TURN_RADIUS_M if turn > 0 else RIGHT_TURN_RADIUS_M
            corner = node_proj + d_in * (o_out * float(np.dot(_right(d_out), d_in)))
            tan_in, tan_out = corner - d_in * radius, corner + d_out * radius
            self._add_vertex(tan_in, self._hdg[-1])
            s0 = self._s[-1]
            normal = -_right(d_in) if turn > 0 else _right(d_in)
            center = tan_in + normal * radius
            a0 = math.atan2(*(tan_in - center)[::-1])
            sweep = (math.pi / 2) * (1 if turn > 0 else -1)  # counter-clockwise for a left turn
            h0 = self._hdg[-1]
            n_seg = 12
            for k in range(1, n_seg + 1):
                ang = a0 + sweep * k / n_seg
                p = center + radius * np.array([math.cos(ang), math.sin(ang)])
                # Compass heading turns the other way round from the math angle.
                self._add_vertex(p, h0 - math.degrees(sweep) * k / n_seg)
            self._pts[-1] = tan_out  # snap the end exactly onto the outgoing lane line
            self.arcs.append((s0, self._s[-1], math.sqrt(LATERAL_ACCEL_MPS2 * radius)))
        self.nodes.append(nxt)

    def _add_vertex(self, p: np.ndarray, heading_deg: float) -> None:
        self._s.append(self._s[-1] + float(np.linalg.norm(p - self._pts[-1])))
        self._pts.append(np.asarray(p, np.float64))
        self._hdg.append(heading_deg)

    def _extend_random(self) -> None:
        a, b = self.nodes[-2], self.nodes[-1]
        options = [n for n in self.city.neighbours(b) if n != a]
        d_in = self._dir(a, b)
        weights = np.array([2.0 if np.allclose(self._dir(b, n), d_in) else 1.0 for n in options])
        self._append(options[int(self.rng.choice(len(options), p=weights / weights.sum()))])  # type: ignore[union-attr]

    @property
    def length_m(self) -> float:
        """Arc length built so far; for a path without rng its whole length, to the lane line at its
        last node's centre."""
        return self._s[-1]

    def ensure(self, s_m: float) -> None:
        """Make sure the path is built at least to ``s_m`` plus the look-ahead the speed model needs."""
        if self.rng is None:
            return
        while self._s[-1] < s_m + 120.0:
            self._extend_random()

    def pose_at(self, s_m: float) -> tuple[float, float, float]:
        """(east_m, north_m, heading_deg) at arc length ``s_m`` (clamped to the built path)."""
        ss = self._s
        s = min(max(s_m, 0.0), ss[-1])
        k = min(max(bisect.bisect_right(ss, s) - 1, 0), len(ss) - 2)
        if k < 0:  # a single vertex
            p = self._pts[0]
            return float(p[0]), float(p[1]), self._hdg[0] % 360.0
        s0, s1 = ss[k], ss[k + 1]
        f = 0.0 if s1 <= s0 else (s - s0) / (s1 - s0)
        p0, p1 = self._pts[k], self._pts[k + 1]
        h = self._hdg[k] * (1 - f) + self._hdg[k + 1] * f
        return float(p0[0] * (1 - f) + p1[0] * f), float(p0[1] * (1 - f) + p1[1] * f), h % 360.0

    def edge_at(self, s_m: float) -> int:
        """Index k of the edge nodes[k] -> nodes[k+1] being driven at ``s_m``."""
        k = bisect.bisect_right(self.node_s, s_m) - 1
        return min(max(k, 0), len(self.nodes) - 2)

    def speed_limit(self, s_m: float, cruise_mps: float) -> float:
        """Highest speed at ``s_m`` that still takes every turn ahead at its turning speed."""
        v = cruise_mps
        for s0, s1, v_turn in self.arcs:
            if s1 < s_m:
                continue
            if s0 > s_m + 80.0:
                break
            v = min(v, v_turn if s0 <= s_m else math.sqrt(v_turn**2 + 2 * BRAKE_MPS2 * (s0 - s_m)))
        return v


@dataclass
class Vehicle:
    """A car, bus, bicyclist or the ego vehicle on a lane path."""

    path: LanePath
    s_m: float
    speed_mps: float
    cruise_mps: float
    length_m: float
    kind: str  # car | bike | ego
    look: int = 0  # index into City.car_pool / City.bikes
    instance_id: int = 0
    distance_m: float = 0.0  # travelled, for pedal / wheel animation
    obey_signals: bool = True

    def lane_key(self) -> tuple[Node, Node, float]:
        k = self.path.edge_at(self.s_m)
        st = self.path.city.street_between(self.path.nodes[k], self.path.nodes[k + 1])
        return self.path.nodes[k], self.path.nodes[k + 1], round(self.path.lane_offset_m(st), 2)


class Traffic:
    """All vehicles of a drive (the ego is ``vehicles[0]`` when given) and the clock of the signals."""

    def __init__(self, city: City, vehicles: list[Vehicle], t0_s: float = 0.0) -> None:
        self.city = city
        self.vehicles = vehicles
        self.t_s = float(t0_s)

    def step(self, dt_s: float) -> None:
        """Advance the simulation by ``dt_s`` seconds (in sub-steps of at most MAX_SIM_STEP_S)."""
        n = max(1, int(math.ceil(dt_s / MAX_SIM_STEP_S - 1e-9)))
        for _ in range(n):
            self._substep(dt_s / n)

    def _substep(self, dt: float) -> None:
        city = self.city
        for v in self.vehicles:
            v.path.ensure(v.s_m)
        keys = [v.lane_key() for v in self.vehicles]
        lanes: dict[tuple, list[tuple[float, int]]] = {}
        for idx, (v, key) in enumerate(zip(self.vehicles, keys, strict=True)):
            k = v.path.edge_at(v.s_m)
            lanes.setdefault(key, []).append((v.s_m - v.path.node_s[k], idx))
        for lst in lanes.values():
            lst.sort()
        new_speeds = []
        for idx, (v, key) in enumerate(zip(self.vehicles, keys, strict=True)):
            path = v.path
            k = path.edge_at(v.s_m)
            s_local = v.s_m - path.node_s[k]
            speed = min(v.speed_mps + ACCEL_MPS2 * dt, path.speed_limit(v.s_m, v.cruise_mps))
            # The nearest vehicle ahead in this lane, else the nearest one just beyond the next node;
            # plan to stop behind where it could stop itself.
            leader_gap = math.inf
            for s_other, j in lanes[key]:
                if s_other > s_local and j != idx:
                    other = self.vehicles[j]
                    leader_gap = s_other - s_local - 0.5 * (v.length_m + other.length_m) - MIN_GAP_M + _stopping_m(other.speed_mps)
                    break
            if math.isinf(leader_gap) and k + 2 < len(path.nodes):
                st = city.street_between(path.nodes[k + 1], path.nodes[k + 2])
                ahead = lanes.get((path.nodes[k + 1], path.nodes[k + 2], round(path.lane_offset_m(st), 2)))
                if ahead:
                    s_other, j = ahead[0]
                    other = self.vehicles[j]
                    edge_len = path.node_s[k + 1] - path.node_s[k]
                    leader_gap = (edge_len - s_local + s_other - 0.5 * (v.length_m + other.length_m) - MIN_GAP_M
                                  + _stopping_m(other.speed_mps))
            speed = min(speed, _braking_speed(v.speed_mps, leader_gap, dt))
            # The signal at the next intersection: stop for yellow when the stop line can still be made
            # braking at most YELLOW_BRAKE_MPS2 (closer than that, go on: the dilemma zone), and for red
            # unless that would take twice as much (those went on at yellow and clear the junction).
            if v.obey_signals and k + 1 < len(path.stop_s):
                to_line = path.stop_s[k + 1] - (v.s_m + 0.5 * v.length_m)
                if to_line > -0.5:
                    a, b = path.nodes[k], path.nodes[k + 1]
                    state = city.signal_state(b, NS if a[0] == b[0] else EW, self.t_s)
                    needed = v.speed_mps**2 / (2.0 * max(to_line, 1e-3))
                    limit = {"red": 2.0 * YELLOW_BRAKE_MPS2, "yellow": YELLOW_BRAKE_MPS2}.get(state, -1.0)
                    if needed <= limit:
                        speed = min(speed, _braking_speed(v.speed_mps, to_line, dt))
            if path.rng is None:  # a scripted path ends: stop at its end
                speed = min(speed, _braking_speed(v.speed_mps, path.length_m - v.s_m, dt))
            new_speeds.append(speed)
        for v, speed in zip(self.vehicles, new_speeds, strict=True):
            v.speed_mps = max(0.0, speed)
            v.s_m += v.speed_mps * dt
            v.distance_m += v.speed_mps * dt
        self.t_s += dt


def _stopping_m(speed_mps: float) -> float:
    """How far a vehicle at ``speed_mps`` travels braking at BRAKE_MPS2."""
    return speed_mps**2 / (2.0 * BRAKE_MPS2)


def _braking_speed(speed_mps: float, gap_m: float, dt: float) -> float:
    """Speed after ``dt`` of a vehicle that must stop within ``gap_m``: brake at exactly the
    deceleration that stops it there once that reaches BRAKE_START_FRAC of BRAKE_MPS2 (so braking is
    smooth and ends at the line), unconstrained (inf) before."""
    if gap_m <= STOP_WITHIN_M:
        return 0.0
    needed = speed_mps**2 / (2.0 * gap_m)
    if needed < BRAKE_START_FRAC * BRAKE_MPS2:
        return math.inf
    return max(0.0, speed_mps - needed * dt)


def random_path(city: City, rng: np.random.Generator, lane: int | None = None) -> tuple[LanePath, float]:
    """A random endless path from a random edge; returns (path, a start arc length along its first edge)."""
    ni, nj = city.n_nodes
    a = (int(rng.integers(ni)), int(rng.integers(nj)))
    nbrs = city.neighbours(a)
    b = nbrs[int(rng.integers(len(nbrs)))]
    if lane is None:
        lane = int(rng.integers(city.street_between(a, b).lanes_per_direction))
    path = LanePath(city, [a, b], lane, rng)
    path.ensure(0.0)
    edge_len = path.node_s[1] - path.node_s[0]
    return path, float(rng.uniform(5.0, max(6.0, edge_len - 25.0)))


def spawn_traffic(city: City, rng: np.random.Generator, n_cars: int, n_bikes: int, first_instance: int,
                  avoid: list[Vehicle] | None = None) -> list[Vehicle]:
    """``n_cars`` cars and ``n_bikes`` bicyclists on random endless paths, not overlapping each other
    or the ``avoid`` vehicles (the ego)."""
    placed: list[Vehicle] = list(avoid or [])
    out: list[Vehicle] = []
    inst = first_instance
    for kind, count in (("car", n_cars), ("bike", n_bikes)):
        for _ in range(count):
            for _attempt in range(20):
                path, s0 = random_path(city, rng, lane=-1 if kind == "bike" else None)
                if kind == "car":
                    look = int(rng.integers(len(city.car_pool)))
                    length = city.car_pool[look][0].length_m
                    cruise = float(rng.uniform(8.0, 12.5)) if length < 10 else 8.0
                else:
                    look = int(rng.integers(len(city.bikes)))
                    length, cruise = 1.8, float(rng.uniform(4.0, 6.0))
                cand = Vehicle(path, s0, cruise * 0.6, cruise, length, kind, look, inst)
                key = cand.lane_key()
                e, n, _ = path.pose_at(s0)
                clash = False
                for other in placed:
                    oe, on, _ = other.path.pose_at(other.s_m)
                    if math.hypot(oe - e, on - n) < 0.5 * (length + other.length_m) + MIN_GAP_M + 4.0 and (
                        other.lane_key() == key or math.hypot(oe - e, on - n) < 3.0
                    ):
                        clash = True
                        break
                if not clash:
                    placed.append(cand)
                    out.append(cand)
                    inst += 1
                    break
    return out


# ------------------------------------------------------------------------------------------ pedestrians


@dataclass
class Pedestrians:
    """People walking rectangular loops on the sidewalks (some around two blocks, crossing a street on
    its zebra), some standing. Struct of arrays, float64 [N]: loop rectangle (x0, y0, x1, y1), start
    arc length, speed (m/s, negative = clockwise), look (index into City.people)."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    s0: np.ndarray
    speed_mps: np.ndarray
    look: np.ndarray
    instance_id: np.ndarray
    stride_m: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.stride_m is None:
            self.stride_m = np.full(len(self.x0), 1.4)

    def __len__(self) -> int:
        return len(self.x0)

    def state(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(east_m, north_m, heading_deg, walk phase in [0, 1)) of everyone at time ``t_s``."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        perim = 2 * (w + h)
        s = np.mod(self.s0 + self.speed_mps * t_s, perim)
        # Counter-clockwise from the south-west corner: east along the south side, north, west, south.
        e = np.where(s < w, self.x0 + s, np.where(s < w + h, self.x1, np.where(s < 2 * w + h, self.x1 - (s - w - h), self.x0)))
        n = np.where(s < w, self.y0, np.where(s < w + h, self.y0 + (s - w), np.where(s < 2 * w + h, self.y1, self.y1 - (s - 2 * w - h))))
        heading = np.where(s < w, 90.0, np.where(s < w + h, 0.0, np.where(s < 2 * w + h, 270.0, 180.0)))
        heading = np.where(self.speed_mps < 0, (heading + 180.0) % 360.0, heading)
        phase = np.mod(np.abs(self.speed_mps) * t_s / self.stride_m + self.s0, 1.0)
        return e, n, heading, phase


def spawn_pedestrians(city: City, rng: np.random.Generator, per_block: int, first_instance: int) -> Pedestrians:
    """About ``per_block`` people around each inner block."""
    rows = []
    rects = city.block_rects
    nb_e, nb_n = city.blocks_east, city.blocks_north
    for bi in range(len(rects)):
        i, j = divmod(bi, nb_n)
        for _ in range(int(rng.poisson(per_block))):
            x0, y0, x1, y1 = rects[bi]
            # Sometimes walk around two blocks, crossing a street on the zebra.
            if rng.random() < 0.2 and i + 1 < nb_e:
                x1 = rects[bi + nb_n][2]
            elif rng.random() < 0.2 and j + 1 < nb_n:
                y1 = rects[bi + 1][3]
            sw = min(city.avenues[i].sidewalk_m, city.avenues[i + 1].sidewalk_m, city.streets[j].sidewalk_m,
                     city.streets[j + 1].sidewalk_m)
            off = float(rng.uniform(0.7, sw - 0.9))
            x0, y0, x1, y1 = x0 - off, y0 - off, x1 + off, y1 + off
            perim = 2 * ((x1 - x0) + (y1 - y0))
            speed = 0.0 if rng.random() < 0.15 else float(rng.uniform(1.0, 1.6)) * (1 if rng.random() < 0.5 else -1)
            rows.append((x0, y0, x1, y1, float(rng.uniform(0, perim)), speed, int(rng.integers(len(city.people)))))
    arr = np.array(rows, np.float64).reshape(-1, 7)
    return Pedestrians(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5], arr[:, 6].astype(np.int64),
                       np.arange(first_instance, first_instance + len(arr), dtype=np.int64))
