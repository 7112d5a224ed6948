"""Named routes through a city: training routes covering the district (each street both ways, both lanes), test routes revisiting its
streets in other lanes, directions, times of day and traffic (as PoseNet is evaluated on Cambridge
Landmarks), and scenario routes (camera blackout, kidnapped robot, stop at a red light).

A route is planned on the city's intersection grid: a sequence of intersections (nodes ``(avenue,
street)``) driven in one lane, plus the drive's conditions and scenario events. Past the end of its
scripted nodes a route continues as a seeded random drive, so any number of frames can be rendered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .city import City

Node = tuple[int, int]


@dataclass(frozen=True)
class RouteSpec:
    """What a named route is (conditions are defaults; the CLI can override them)."""

    name: str
    description: str
    time_of_day_h: float
    traffic: str  # light | normal | heavy
    lane: int  # 0 next to the centre line; clamped per street (1 = right lane where there are two)
    overcast: bool = False
    default_frames: int | None = None  # None: until the scripted route ends
    scenario: str = ""  # "" | blackout | kidnap | stop_at_light


ROUTES: dict[str, RouteSpec] = {
    spec.name: spec
    for spec in (
        RouteSpec("train", "covers every street of the district once (lawnmower over avenues, then streets), "
                  "right lane, midday, normal traffic", 13.0, "normal", 1),
        RouteSpec("test_reverse", "the training route driven backwards: every street in the opposite direction, "
                  "left lane, late afternoon, heavy traffic", 17.5, "heavy", 0),
        RouteSpec("test_loop", "a seeded random tour (route seed 1), left lane, morning, overcast, light traffic",
                  9.5, "light", 0, overcast=True),
        RouteSpec("test_dusk", "a seeded random tour (route seed 2), right lane, at dusk, normal traffic", 19.6, "normal", 1),
        RouteSpec("test_night", "a seeded random tour (route seed 3), right lane, at night, light traffic", 21.5, "light", 1),
        RouteSpec("random", "a random tour from --route-seed (default 0), midday, normal traffic", 13.0, "normal", 1),
        RouteSpec("blackout", "a random tour (route seed 11) whose camera goes black from 20 s to 32 s "
                  "(frames all black, masks unlabelled, no boxes; GPS and odometry go on)", 12.0, "normal", 1,
                  default_frames=600, scenario="blackout"),
        RouteSpec("kidnap", "a random tour (route seed 12) until 30 s, when the vehicle is carried off to a distant "
                  "street (the pose jumps) and drives on from there", 15.0, "normal", 1, default_frames=600,
                  scenario="kidnap"),
        RouteSpec("stop_at_light", "straight up an avenue to an intersection whose light turns red as the vehicle "
                  "arrives; it waits ~15 s for green and drives on", 11.0, "normal", 1, default_frames=450,
                  scenario="stop_at_light"),
        # (appended last: a route's index in ROUTES seeds its traffic, so existing drives stay identical)
        # More training coverage: PoseNet only localizes views it was trained on, and the other direction
        # of a street shows other facades; with `train` these cover every street both ways in both lanes,
        # at four times of day (none of them a test route's conditions).
        RouteSpec("train_back", "the training route driven backwards (every street the other way), right lane, "
                  "late afternoon, normal traffic", 16.5, "normal", 1),
        RouteSpec("train_inner", "the training route in the inner lane (next to the centre line), late morning, "
                  "overcast, light traffic", 11.0, "light", 0, overcast=True),
        RouteSpec("train_back_inner", "the training route backwards in the inner lane, early evening (low sun), "
                  "normal traffic", 18.75, "normal", 0),
    )
}
DEFAULT_ROUTE_SEEDS = {"test_loop": 1, "test_dusk": 2, "test_night": 3, "random": 0, "blackout": 11, "kidnap": 12}
BLACKOUT_S = (20.0, 32.0)
KIDNAP_AT_S = 30.0


@dataclass
class RoutePlan:
    """A planned route: ``nodes`` driven in ``lane``; events by time (seconds from the start)."""

    spec: RouteSpec
    nodes: list[Node]
    lane: int
    seed: int
    blackout_s: tuple[float, float] | None = None
    kidnap_s: float | None = None  # see kidnap_tour for where the vehicle lands
    stop_node: Node | None = None  # stop_at_light: where the ego must meet the red light


def _lawnmower(city: City) -> list[Node]:
    """Every avenue then every street, alternating directions, joined at the district's edges (no
    U-turns)."""
    ni, nj = city.n_nodes
    nodes: list[Node] = []
    for i in range(ni):  # avenues: up avenue 0, down avenue 1, ...
        js = range(nj) if i % 2 == 0 else range(nj - 1, -1, -1)
        nodes.extend((i, j) for j in js)
    # Now at (ni-1, 0 or nj-1); sweep the streets from that end back and forth.
    j_end = nodes[-1][1]
    js = range(nj - 1, -1, -1) if j_end == nj - 1 else range(nj)
    going_west = True
    for k, j in enumerate(js):
        i_seq = range(ni - 1, -1, -1) if going_west else range(ni)
        seq = [(i, j) for i in i_seq]
        if k == 0:
            seq = seq[1:]  # already at its first node
        nodes.extend(seq)
        going_west = not going_west
    return _drop_uturns(nodes)


def _drop_uturns(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        if out and out[-1] == n:
            continue
        if len(out) >= 2 and out[-2] == n:
            out.pop()  # a ->b -> a: skip the detour
            continue
        out.append(n)
    return out


def random_tour(city: City, rng: np.random.Generator, n_nodes: int, start: Node | None = None) -> list[Node]:
    """A random drive of ``n_nodes`` intersections without U-turns, preferring to go straight."""
    ni, nj = city.n_nodes
    a = start if start is not None else (int(rng.integers(ni)), int(rng.integers(nj)))
    nbrs = city.neighbours(a)
    nodes = [a, nbrs[int(rng.integers(len(nbrs)))]]
    while len(nodes) < n_nodes:
        prev, cur = nodes[-2], nodes[-1]
        options = [n for n in city.neighbours(cur) if n != prev]
        straight = (2 * cur[0] - prev[0], 2 * cur[1] - prev[1])
        w = np.array([1.6 if n == straight else 1.0 for n in options])
        nodes.append(options[int(rng.choice(len(options), p=w / w.sum()))])
    return nodes


def plan_route(city: City, name: str, seed: int | None = None) -> RoutePlan:
    """Plan route ``name`` (see ROUTES) in ``city``; ``seed`` overrides the route's default seed."""
    if name not in ROUTES:
        raise ValueError(f"unknown route {name!r}; the routes are {', '.join(ROUTES)}")
    spec = ROUTES[name]
    seed = DEFAULT_ROUTE_SEEDS.get(name, 0) if seed is None else int(seed)
    rng = np.random.default_rng([city.seed, seed, 0x2047])
    ni, nj = city.n_nodes
    if name in ("train", "train_inner"):
        return RoutePlan(spec, _lawnmower(city), spec.lane, seed)
    if name in ("test_reverse", "train_back", "train_back_inner"):
        return RoutePlan(spec, _lawnmower(city)[::-1], spec.lane, seed)
    if name == "stop_at_light":
        # North up an avenue from its southern end, to meet the red light at the next intersection
        # (a district one block deep has only the northern end: no light to wait at mid-route).
        i = int(rng.integers(ni))
        nodes = [(i, j) for j in range(nj)]
        return RoutePlan(spec, nodes, spec.lane, seed, stop_node=(i, 1) if nj >= 3 else None)
    n_tour = max(8, 3 * (ni + nj))
    nodes = random_tour(city, rng, n_tour)
    plan = RoutePlan(spec, nodes, spec.lane, seed)
    if spec.scenario == "blackout":
        plan.blackout_s = BLACKOUT_S
    elif spec.scenario == "kidnap":
        plan.kidnap_s = KIDNAP_AT_S
    return plan


def kidnap_tour(city: City, seed: int, east_m: float, north_m: float) -> list[Node]:
    """Where a kidnapped vehicle is put down: a random tour from the intersection farthest from
    (east_m, north_m), so that the pose jumps as far as the city allows."""
    ni, nj = city.n_nodes
    nodes = [(x, y) for x in range(ni) for y in range(nj)]
    far = max(nodes, key=lambda n: math.hypot(city.node_en(n)[0] - east_m, city.node_en(n)[1] - north_m))
    return random_tour(city, np.random.default_rng([city.seed, seed, 0x1D]), max(8, 3 * (ni + nj)), start=far)
