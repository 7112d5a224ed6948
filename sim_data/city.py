"""The procedural city: a Manhattan grid of streets, blocks of buildings, street furniture, parked cars.

Layout (local ENU metres; the geo origin sits on the intersection nearest the district's centre):

- ``avenues`` run north-south (centre line at constant ``east_m``), ``streets`` run east-west. Every
  street has, from its centre line outwards on each side: ``lanes_per_direction`` driving lanes of
  LANE_WIDTH_M, a bike lane, a parking lane, then a sidewalk up to the property line. Traffic keeps
  right (US): the east side of an avenue carries northbound traffic, the south side of a street
  eastbound traffic.
- The district is ``blocks_east`` x ``blocks_north`` blocks; around it a ring of deep outer blocks lines
  the outermost streets with facades, so that every view ends on buildings and no street leads out.
- Each block has rows of buildings along its four sides (widths, heights, set-backs and designs vary;
  designs repeat across the city), some vacant lots behind fences, some small plazas with trees, and a
  low core filling its middle.
- Along the streets: lamp posts, trees, traffic signs, utility poles, bins, parked cars; at every
  intersection signal heads for each approach (on the far-right corner post and on a mast arm).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from perception import classes as C

from . import textures as T

LANE_WIDTH_M = 3.3
BIKE_LANE_M = 1.5
PARKING_LANE_M = 2.3
CURB_M = 0.3  # the kerb stone: first strip of the sidewalk
CROSSWALK_GAP_M = 0.8  # from the crossing road's edge to the zebra
CROSSWALK_M = 3.0
STOP_LINE_GAP_M = 1.0  # from the zebra to the stop line
STOP_LINE_M = 0.4
CORNER_DEPTH_M = 26.0  # depth of the corner buildings (and the widest building depth)
CORE_HEIGHT_M = 7.0  # the low filler in the middle of a block
OUTER_DEPTH_M = 160.0  # depth of the outer ring of blocks
SIGNAL_CYCLE_S = 32.0  # full traffic-light cycle; see signal_state
SIGNAL_GREEN_S = 13.0  # green per direction, then yellow for the rest of its half cycle
SIGNAL_YELLOW_S = 3.0

AVENUE_NAMES = ("Figueroa St", "Flower St", "Hope St", "Grand Ave", "Olive St", "Hill St", "Broadway",
                "Spring St", "Main St", "Los Angeles St", "San Pedro St", "Central Ave")
STREET_NAMES = ("1st St", "2nd St", "3rd St", "4th St", "5th St", "6th St", "7th St", "8th St", "9th St",
                "Olympic Blvd", "11th St", "12th St")

NS, EW = "ns", "ew"


@dataclass(frozen=True)
class Street:
    """One street of the grid. ``axis`` "ns": runs north-south, centre line at east_m = ``center_m``;
    "ew": runs east-west at north_m = ``center_m``. Drivable between ``start_m`` and ``end_m`` along its
    length (the centre lines of the outermost crossing streets)."""

    axis: str
    index: int
    center_m: float
    lanes_per_direction: int
    sidewalk_m: float
    name: str
    start_m: float = 0.0
    end_m: float = 0.0

    @property
    def half_road_m(self) -> float:
        """Centre line to kerb (m)."""
        return self.lanes_per_direction * LANE_WIDTH_M + BIKE_LANE_M + PARKING_LANE_M

    @property
    def half_width_m(self) -> float:
        """Centre line to property line (m)."""
        return self.half_road_m + self.sidewalk_m

    def lane_offset_m(self, lane: int) -> float:
        """Distance right of the centre line (in the direction of travel) of driving lane ``lane``
        (0 = next to the centre line), clamped to the lanes this street has."""
        return (min(max(lane, 0), self.lanes_per_direction - 1) + 0.5) * LANE_WIDTH_M

    @property
    def bike_offset_m(self) -> float:
        return self.lanes_per_direction * LANE_WIDTH_M + 0.5 * BIKE_LANE_M

    @property
    def parking_offset_m(self) -> float:
        return self.lanes_per_direction * LANE_WIDTH_M + BIKE_LANE_M + 0.5 * PARKING_LANE_M


@dataclass
class Buildings:
    """Axis-aligned building boxes (struct of arrays, float64 [N] unless noted): footprint
    [x0, x1] x [y0, y1] in (east_m, north_m), ``height_m``, ``texture`` (int64 [N], facade bank id; the
    facade wraps around the corners, repeating along faces longer than it)."""

    x0: np.ndarray
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    height_m: np.ndarray
    texture: np.ndarray

    def __len__(self) -> int:
        return len(self.x0)


@dataclass
class Billboard:
    """A camera-facing sprite standing at (east_m, north_m) from ``base_m`` to ``base_m + height_m``
    above the road, ``width_m`` wide (texture stretched over it). ``texture_alt`` (if >= 0) is drawn
    instead when ``alt_dir_en`` points to the camera's right (lamp arms reaching over the road)."""

    east_m: float
    north_m: float
    base_m: float
    width_m: float
    height_m: float
    texture: int
    class_id: int
    instance_id: int = 0
    texture_alt: int = -1
    alt_dir_en: tuple[float, float] = (0.0, 0.0)

    @property
    def radius_m(self) -> float:
        return 0.5 * self.width_m


@dataclass
class Box:
    """An oriented textured box: centre (east_m, north_m), local +x along ``heading_deg`` (compass),
    ``length_m`` along x, ``width_m`` along y, from ``base_m`` to ``base_m + height_m``. ``faces`` are
    texture ids (front +x, rear -x, left +y, right -y) in the sprite bank, sampled at ``texels_per_m``
    and wrapping along each face (so a long fence tiles a short texture)."""

    east_m: float
    north_m: float
    heading_deg: float
    length_m: float
    width_m: float
    base_m: float
    height_m: float
    faces: tuple[int, int, int, int]
    texels_per_m: float
    class_id: int
    instance_id: int = 0

    @property
    def radius_m(self) -> float:
        return 0.5 * math.hypot(self.length_m, self.width_m)


@dataclass(frozen=True)
class SignalHead:
    """A traffic-light housing for the traffic approaching ``node`` along ``axis`` ("ns" or "ew")."""

    node: tuple[int, int]
    axis: str
    box: Box  # faces[0] is replaced per frame by the lit state's texture


@dataclass
class PersonSprites:
    """Texture ids of one person look: ``frames[view]`` for view in (side_right, side_left, front), each
    a list of walk-cycle frames; ``height_m`` of the figure (sprite height)."""

    frames: dict[str, list[int]]
    height_m: float


@dataclass
class BikeSprites:
    frames: dict[str, list[int]]  # side_right, side_left, end (front/rear)
    width_m: dict[str, float]


@dataclass
class City:
    """Everything static about one city, plus the texture banks of everything in it."""

    seed: int
    blocks_east: int
    blocks_north: int
    avenues: tuple[Street, ...]
    streets: tuple[Street, ...]
    buildings: Buildings
    facade_bank: T.TextureBank
    sprite_bank: T.TextureBank
    props: list[Billboard | Box]
    signals: list[SignalHead]
    signal_offsets_s: np.ndarray  # float64 [n_avenues, n_streets]
    signal_textures: dict[str, int]  # state -> sprite-bank texture id of the lit face
    car_pool: list[tuple[T.CarModel, T.CarFaces]]
    people: list[PersonSprites]
    bikes: list[BikeSprites]
    ground_noise: np.ndarray  # float32 [S, S], see textures.ground_noise
    block_rects: np.ndarray  # float64 [n_blocks, 4] property lines (x0, y0, x1, y1) of the inner blocks
    props_east_m: np.ndarray = field(default=None)  # type: ignore[assignment]
    props_north_m: np.ndarray = field(default=None)  # type: ignore[assignment]
    props_radius_m: np.ndarray = field(default=None)  # type: ignore[assignment]
    # instance_id -> what a prop is, for the landmark map (sim_data.landmarks): "street_lamp",
    # "utility_pole", "sign:<kind>" (textures.SIGN_KINDS); props not listed are no landmarks
    landmark_kinds: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.props_east_m = np.array([p.east_m for p in self.props], np.float64)
        self.props_north_m = np.array([p.north_m for p in self.props], np.float64)
        self.props_radius_m = np.array([p.radius_m for p in self.props], np.float64)

    @functools.cached_property
    def ground(self) -> GroundRaster:
        """The ground raster (drawn on first use, ~0.3 s)."""
        return build_ground_raster(self)

    # -------------------------------------------------------------------------------------- geometry

    def node_en(self, node: tuple[int, int]) -> tuple[float, float]:
        """(east_m, north_m) of intersection ``node`` = (avenue index, street index)."""
        return self.avenues[node[0]].center_m, self.streets[node[1]].center_m

    @property
    def n_nodes(self) -> tuple[int, int]:
        return len(self.avenues), len(self.streets)

    def neighbours(self, node: tuple[int, int]) -> list[tuple[int, int]]:
        i, j = node
        ni, nj = self.n_nodes
        out = []
        for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            if 0 <= i + di < ni and 0 <= j + dj < nj:
                out.append((i + di, j + dj))
        return out

    def street_between(self, a: tuple[int, int], b: tuple[int, int]) -> Street:
        """The street that joins neighbouring intersections ``a`` and ``b``."""
        if a[0] == b[0]:
            return self.avenues[a[0]]
        if a[1] == b[1]:
            return self.streets[a[1]]
        raise ValueError(f"intersections {a} and {b} are not neighbours")

    def crossing_street(self, a: tuple[int, int], b: tuple[int, int]) -> Street:
        """The street crossed on arriving at ``b`` from ``a``."""
        return self.streets[b[1]] if a[0] == b[0] else self.avenues[b[0]]

    @property
    def bounds_m(self) -> tuple[float, float, float, float]:
        """(east_min, north_min, east_max, north_max) of the street network's property lines."""
        a0, a1, s0, s1 = self.avenues[0], self.avenues[-1], self.streets[0], self.streets[-1]
        return (a0.center_m - a0.half_width_m, s0.center_m - s0.half_width_m,
                a1.center_m + a1.half_width_m, s1.center_m + s1.half_width_m)

    def signal_state(self, node: tuple[int, int], axis: str, t_s: float) -> str:
        """"green" | "yellow" | "red" for traffic on ``axis`` at intersection ``node`` at time ``t_s``.
        Cycle (SIGNAL_CYCLE_S = 32 s): north-south green 0-13 s, yellow 13-16 s, then east-west green
        16-29 s, yellow 29-32 s; each intersection has its own offset into the cycle."""
        t = (t_s + self.signal_offsets_s[node]) % SIGNAL_CYCLE_S
        if axis == EW:
            t = (t + SIGNAL_CYCLE_S / 2) % SIGNAL_CYCLE_S
        return "green" if t < SIGNAL_GREEN_S else ("yellow" if t < SIGNAL_GREEN_S + SIGNAL_YELLOW_S else "red")


# ------------------------------------------------------------------------------------------ generation


def _street_grid(rng: np.random.Generator, n_blocks: int, axis: str, names: tuple[str, ...]) -> list[Street]:
    lanes = [int(rng.choice([1, 2], p=[0.55, 0.45])) for _ in range(n_blocks + 1)]
    sidewalks = [float(rng.uniform(3.6, 5.0)) for _ in range(n_blocks + 1)]
    blocks = [float(rng.uniform(62.0, 88.0)) for _ in range(n_blocks)]
    centers = [0.0]
    for k in range(n_blocks):
        hw_a = lanes[k] * LANE_WIDTH_M + BIKE_LANE_M + PARKING_LANE_M + sidewalks[k]
        hw_b = lanes[k + 1] * LANE_WIDTH_M + BIKE_LANE_M + PARKING_LANE_M + sidewalks[k + 1]
        centers.append(centers[-1] + hw_a + blocks[k] + hw_b)
    mid = centers[len(centers) // 2]  # the origin sits on a real intersection near the middle
    return [Street(axis, k, c - mid, lanes[k], sidewalks[k], names[k % len(names)]) for k, c in enumerate(centers)]


def _with_extent(streets: list[Street], crossing: list[Street]) -> tuple[Street, ...]:
    lo, hi = crossing[0].center_m, crossing[-1].center_m
    return tuple(Street(s.axis, s.index, s.center_m, s.lanes_per_direction, s.sidewalk_m, s.name, lo, hi) for s in streets)


class _Builder:
    """Collects buildings, props and textures while the city is generated."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.facades = T.TextureBank(mip_levels=3)
        self.sprites = T.TextureBank(mip_levels=1)
        self.designs = T.make_facade_designs(rng, 30)
        self.b: list[tuple[float, float, float, float, float, int, float]] = []
        self.props: list[Billboard | Box] = []
        self.rear_textures = []
        for _ in range(4):
            img, glow = T.render_rear_wall(rng, 24.0, CORE_HEIGHT_M)
            self.rear_textures.append(self.facades.add(img, None, glow, C.BUILDING))
        self._tree_textures: list[tuple[int, float, float]] = []
        for _ in range(10):
            img, alpha, w, h = T.tree_sprite(rng)
            self._tree_textures.append((self.sprites.add(img, alpha, None, C.TREE), w, h))
        self.light_textures = []
        for arm_right in (False, True):
            img, alpha, glow, w = T.streetlight_sprite(arm_right)
            self.light_textures.append((self.sprites.add(img, alpha, glow, C.POLE), w))
        img, alpha, self.sign_pole_w = T.pole_sprite(3.0, 0.08, (120, 125, 125))
        self.sign_pole_tex = self.sprites.add(img, alpha, None, C.POLE)
        img, alpha, self.signal_pole_w = T.pole_sprite(6.2, 0.22, (60, 65, 65))
        self.signal_pole_tex = self.sprites.add(img, alpha, None, C.POLE)
        img, alpha, self.utility_pole_w = T.pole_sprite(10.0, 0.28, (50, 75, 95), crossbar=True)
        self.utility_pole_tex = self.sprites.add(img, alpha, None, C.POLE)
        grey = np.full((4, 4, 3), (60, 65, 65), np.uint8)
        self.arm_tex = self.sprites.add(grey, None, None, C.POLE)
        self.fence_textures = {}
        for kind, h in (("chainlink", 1.9), ("picket", 1.2), ("railing", 1.1), ("wall", 1.4)):
            img, alpha = T.fence_texture(rng, kind, h)
            self.fence_textures[kind] = (self.sprites.add(img, alpha, None, C.FENCE), h)
        self.bin_textures = []
        for _ in range(4):
            img, alpha = T.bin_texture(rng)
            self.bin_textures.append(self.sprites.add(img, alpha, None, C.UNLABELLED))
        self.signal_textures = {}
        for state in ("red", "yellow", "green"):
            img, alpha, glow = T.traffic_light_face(state)
            self.signal_textures[state] = self.sprites.add(img, alpha, glow, C.SIGN)
        img, alpha = T.traffic_light_back()
        self.signal_back = self.sprites.add(img, alpha, None, C.SIGN)
        img, alpha = T.traffic_light_side()
        self.signal_side = self.sprites.add(img, alpha, None, C.SIGN)
        self.next_instance = 1
        self.landmark_kinds: dict[int, str] = {}  # instance_id -> kind (City.landmark_kinds)

    def instance(self) -> int:
        self.next_instance += 1
        return self.next_instance - 1

    def add_building(self, x0: float, x1: float, y0: float, y1: float, height_m: float, texture: int) -> None:
        self.b.append((x0, x1, y0, y1, height_m, texture))

    def tree(self, east_m: float, north_m: float) -> None:
        tex, w, h = self._tree_textures[int(self.rng.integers(len(self._tree_textures)))]
        s = float(self.rng.uniform(0.85, 1.15))
        self.props.append(Billboard(east_m, north_m, 0.0, w * s, h * s, tex, C.TREE, self.instance()))

    def fence(self, ax: float, ay: float, bx: float, by: float, kind: str) -> None:
        tex, h = self.fence_textures[kind]
        length = math.hypot(bx - ax, by - ay)
        heading = math.degrees(math.atan2(bx - ax, by - ay))
        self.props.append(Box((ax + bx) / 2, (ay + by) / 2, heading, length, 0.06, 0.0, h, (tex, tex, tex, tex),
                              T.FENCE_TEXELS_PER_M, C.FENCE, self.instance()))


def _split_frontage(rng: np.random.Generator, length_m: float) -> list[float]:
    """Lot widths (m) along a frontage of ``length_m``."""
    widths, left = [], length_m
    while left > 0:
        w = float(rng.uniform(9.0, 26.0))
        if left - w < 8.0:
            w = left
        widths.append(w)
        left -= w
    return widths


def _frontage_row(bld: _Builder, start_m: float, end_m: float, line_m: float, side: str, max_depth_m: float,
                  corner_full_depth: bool) -> None:
    """Lots along one side of a block. ``side`` is the compass side of the block the row faces
    ("n", "s", "e", "w"); the property line is at ``line_m`` (north_m for n/s rows, east_m for e/w),
    the row spans ``start_m``..``end_m`` along it. With ``corner_full_depth`` the end lots are buildings
    ``max_depth_m`` deep, so that the rows of the block's other two sides, which start that far in, meet
    them without a gap at the corner."""
    rng = bld.rng
    widths = _split_frontage(rng, end_m - start_m)
    pos = start_m
    inward = {"n": -1.0, "s": 1.0, "e": -1.0, "w": 1.0}[side]  # from the property line into the block
    for k, w in enumerate(widths):
        a, b = pos, pos + w
        pos = b
        corner = k == 0 or k == len(widths) - 1
        r = rng.random()
        kind = "building" if (corner or r < 0.86) else ("vacant" if r < 0.94 else "plaza")
        if kind == "building":
            design = bld.designs[int(rng.integers(len(bld.designs)))]
            height = T.facade_height_m(rng, design)
            setback = 0.0 if (corner or rng.random() < 0.75) else float(rng.uniform(1.0, 4.0))
            depth = max_depth_m if (corner and corner_full_depth) else float(rng.uniform(14.0, max_depth_m))
            depth = min(depth, max_depth_m - setback) if corner_full_depth else depth
            img, glow = T.render_facade(rng, design, w, height)
            tex = bld.facades.add(img, None, glow, C.BUILDING)
            height = img.shape[0] / T.FACADE_TEXELS_PER_M  # exactly what the texture covers
            near, far = line_m + inward * setback, line_m + inward * (setback + depth)
            lo, hi = min(near, far), max(near, far)
            if side in ("n", "s"):
                bld.add_building(a, b, lo, hi, height, tex)
            else:
                bld.add_building(lo, hi, a, b, height, tex)
        elif kind == "vacant":
            fence_kind = ["chainlink", "chainlink", "picket", "railing", "wall"][int(rng.integers(5))]
            off = line_m + inward * 0.3
            if side in ("n", "s"):
                bld.fence(a + 0.2, off, b - 0.2, off, fence_kind)
            else:
                bld.fence(off, a + 0.2, off, b - 0.2, fence_kind)
        else:  # plaza: trees on paving
            for _ in range(int(rng.integers(2, 4))):
                along = float(rng.uniform(a + 2.0, b - 2.0))
                across = line_m + inward * float(rng.uniform(3.0, 12.0))
                if side in ("n", "s"):
                    bld.tree(along, across)
                else:
                    bld.tree(across, along)


def _core(bld: _Builder, x0: float, x1: float, y0: float, y1: float, height_m: float = CORE_HEIGHT_M) -> None:
    if x1 - x0 > 1.0 and y1 - y0 > 1.0:
        tex = bld.rear_textures[int(bld.rng.integers(len(bld.rear_textures)))]
        bld.add_building(x0, x1, y0, y1, height_m, tex)


def _street_side_props(bld: _Builder, city_streets: tuple[Street, ...], crossing: tuple[Street, ...]) -> None:
    """Lamp posts, trees, signs, utility poles, bins and parked cars along every block face."""
    rng = bld.rng
    for st in city_streets:
        along_axis = 1 if st.axis == NS else 0  # index of the along-street coordinate in (east, north)
        tree_lined = {side: rng.random() < 0.65 for side in (-1, 1)}
        utility_side = int(rng.choice([-1, 1])) if rng.random() < 0.35 else 0
        for k in range(len(crossing) - 1):
            a, b = crossing[k], crossing[k + 1]
            seg0, seg1 = a.center_m + a.half_width_m, b.center_m - b.half_width_m
            for side in (-1, 1):
                def en(along: float, across: float, _st=st, _side=side, _ax=along_axis) -> tuple[float, float]:
                    off = _st.center_m + _side * across
                    return (off, along) if _ax == 1 else (along, off)

                # Which way the traffic on this side drives (keep right): heading in compass degrees.
                travel = (0.0 if side > 0 else 180.0) if st.axis == NS else (270.0 if side > 0 else 90.0)
                kerb = st.half_road_m
                lights = np.arange(seg0 + float(rng.uniform(3.0, 15.0)), seg1 - 3.0, float(rng.uniform(26.0, 34.0)))
                for s in lights:
                    e, n = en(float(s), kerb + 0.5)
                    toward_road = (-side, 0.0) if st.axis == NS else (0.0, -side)
                    (tex_l, w), (tex_r, _) = bld.light_textures
                    bld.props.append(Billboard(e, n, 0.0, w, 8.0, tex_l, C.POLE, bld.instance(), tex_r, toward_road))
                    bld.landmark_kinds[bld.props[-1].instance_id] = "street_lamp"
                if tree_lined[side]:
                    spacing = float(rng.uniform(9.0, 13.0))
                    for s in np.arange(seg0 + float(rng.uniform(2.0, 8.0)), seg1 - 2.0, spacing):
                        if len(lights) and np.min(np.abs(lights - s)) < 2.5:
                            continue
                        e, n = en(float(s), kerb + 1.1)
                        bld.tree(e, n)
                if utility_side == side:
                    for s in np.arange(seg0 + 6.0, seg1 - 4.0, 38.0):
                        e, n = en(float(s), kerb + 0.35)
                        bld.props.append(Billboard(e, n, 0.0, bld.utility_pole_w, 10.0, bld.utility_pole_tex, C.POLE,
                                                   bld.instance()))
                        bld.landmark_kinds[bld.props[-1].instance_id] = "utility_pole"
                if rng.random() < 0.55:
                    # A sign facing the traffic of this side, some way before the intersection it approaches.
                    approach_end = seg1 if travel in (0.0, 90.0) else seg0
                    s = approach_end - float(rng.uniform(8.0, 25.0)) * (1 if travel in (0.0, 90.0) else -1)
                    e, n = en(float(s), kerb + 0.45)
                    kind = T.SIGN_KINDS[int(rng.integers(len(T.SIGN_KINDS)))]
                    img, alpha, sw, sh = T.sign_face(rng, kind, text=st.name.upper())
                    front = bld.sprites.add(img, alpha, None, C.SIGN)
                    bimg, balpha = T.plate_back(sw, sh, alpha)
                    back = bld.sprites.add(bimg, balpha, None, C.SIGN)
                    bld.props.append(Billboard(e, n, 0.0, bld.sign_pole_w, 2.0 + sh, bld.sign_pole_tex, C.POLE, bld.instance()))
                    bld.props.append(Box(e, n, travel + 180.0, 0.03, sw, 2.0, sh, (front, back, bld.signal_side, bld.signal_side),
                                         40.0, C.SIGN, bld.instance()))
                    bld.landmark_kinds[bld.props[-1].instance_id] = f"sign:{kind}"
                if rng.random() < 0.3:
                    e, n = en(float(rng.uniform(seg0 + 5, seg1 - 5)), st.half_width_m - 0.6)
                    tex = bld.bin_textures[int(rng.integers(len(bld.bin_textures)))]
                    bld.props.append(Box(e, n, travel, 0.6, 0.6, 0.0, 1.0, (tex, tex, tex, tex), 40.0, C.UNLABELLED,
                                         bld.instance()))
                # Parked cars in the parking lane, keeping clear of the intersections.
                occupancy = float(rng.uniform(0.25, 0.8))
                s = seg0 + 8.0 + float(rng.uniform(0, 4))
                while s < seg1 - 12.0:
                    model = T.CAR_MODELS[int(rng.choice(5, p=[0.4, 0.2, 0.22, 0.1, 0.08]))]
                    if rng.random() < occupancy:
                        faces = T.add_car_textures(bld.sprites, rng, model)
                        e, n = en(s + model.length_m / 2, st.parking_offset_m + float(rng.uniform(-0.2, 0.15)))
                        bld.props.append(Box(e, n, travel + float(rng.normal(0, 1.5)), model.length_m, model.width_m, 0.0,
                                             model.height_m, (faces.front, faces.rear, faces.left, faces.right),
                                             T.CAR_TEXELS_PER_M, C.CAR, bld.instance()))
                    s += model.length_m + float(rng.uniform(1.2, 3.0))


def _signals(bld: _Builder, avenues: tuple[Street, ...], streets: tuple[Street, ...]) -> list[SignalHead]:
    """Signal heads for every approach of every intersection: one on the far-right corner post facing
    the approaching traffic, one hanging from a mast arm over its lanes."""
    heads = []
    for i, av in enumerate(avenues):
        for j, st in enumerate(streets):
            east, north = av.center_m, st.center_m
            # (travel heading, axis, whether that approach exists)
            approaches = ((0.0, NS, j > 0), (180.0, NS, j < len(streets) - 1),
                          (90.0, EW, i > 0), (270.0, EW, i < len(avenues) - 1))
            for heading, axis, exists in approaches:
                if not exists:
                    continue
                own, cross = (av, st) if axis == NS else (st, av)
                h = math.radians(heading)
                fwd, right = np.array([math.sin(h), math.cos(h)]), np.array([math.cos(h), -math.sin(h)])
                post = np.array([east, north]) + fwd * (cross.half_road_m + 0.7) + right * (own.half_road_m + 0.7)
                bld.props.append(Billboard(float(post[0]), float(post[1]), 0.0, bld.signal_pole_w, 6.2, bld.signal_pole_tex,
                                           C.POLE, bld.instance()))
                arm_len = own.half_road_m - 0.8
                arm_c = post - right * (arm_len / 2 + 0.1)
                bld.props.append(Box(float(arm_c[0]), float(arm_c[1]), heading + 90.0, arm_len, 0.16, 5.8, 0.16,
                                     (bld.arm_tex,) * 4, 4.0, C.POLE, bld.instance()))
                faces = (bld.signal_textures["red"], bld.signal_back, bld.signal_side, bld.signal_side)
                for pos, base in ((post - right * 0.05 - fwd * 0.3, 2.6), (post - right * (arm_len - 0.2), 4.7)):
                    box = Box(float(pos[0]), float(pos[1]), heading + 180.0, T.TRAFFIC_LIGHT_D_M, T.TRAFFIC_LIGHT_W_M,
                              base, T.TRAFFIC_LIGHT_H_M, faces, 40.0, C.SIGN, bld.instance())
                    heads.append(SignalHead((i, j), axis, box))
    return heads


def _people(bld: _Builder, n_looks: int) -> list[PersonSprites]:
    out = []
    for _ in range(n_looks):
        look = T.random_person_look(bld.rng)
        frames: dict[str, list[int]] = {"side_right": [], "side_left": [], "front": []}
        for f in range(6):
            phase = f / 6
            img, alpha = T.person_sprite(look, "side", phase)
            frames["side_right"].append(bld.sprites.add(img, alpha, None, C.PEDESTRIAN))
            frames["side_left"].append(bld.sprites.add(np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1]),
                                                       None, C.PEDESTRIAN))
            img, alpha = T.person_sprite(look, "front", phase)
            frames["front"].append(bld.sprites.add(img, alpha, None, C.PEDESTRIAN))
        out.append(PersonSprites(frames, look.height_m))
    return out


def _bikes(bld: _Builder, n_looks: int) -> list[BikeSprites]:
    out = []
    for _ in range(n_looks):
        look = T.random_person_look(bld.rng)
        frame_bgr = T.bgr(T.CLOTH_RGB[int(bld.rng.integers(len(T.CLOTH_RGB)))])
        frames: dict[str, list[int]] = {"side_right": [], "side_left": [], "end": []}
        widths = {}
        for f in range(4):
            img, alpha, w = T.bicyclist_sprite(look, frame_bgr, "side", f / 4)
            widths["side_right"] = widths["side_left"] = w
            frames["side_right"].append(bld.sprites.add(img, alpha, None, C.BICYCLIST))
            frames["side_left"].append(bld.sprites.add(np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1]),
                                                       None, C.BICYCLIST))
            img, alpha, w = T.bicyclist_sprite(look, frame_bgr, "end", f / 4)
            widths["end"] = w
            frames["end"].append(bld.sprites.add(img, alpha, None, C.BICYCLIST))
        out.append(BikeSprites(frames, widths))
    return out


@functools.lru_cache(maxsize=4)
def generate_city(seed: int = 0, blocks_east: int = 3, blocks_north: int = 3) -> City:
    """The city of ``seed``: ``blocks_east`` x ``blocks_north`` blocks (1..8 each) inside a ring of outer
    blocks. Deterministic; cached (the same arguments return the same object, treat it as read-only)."""
    if not (1 <= blocks_east <= 8 and 1 <= blocks_north <= 8):
        raise ValueError(f"city of {blocks_east}x{blocks_north} blocks: each side must be 1..8 blocks")
    rng = np.random.default_rng([int(seed), 0x5C17])
    avenues_l = _street_grid(rng, blocks_east, NS, AVENUE_NAMES)
    streets_l = _street_grid(rng, blocks_north, EW, STREET_NAMES)
    avenues = _with_extent(avenues_l, streets_l)
    streets = _with_extent(streets_l, avenues_l)
    bld = _Builder(rng)

    rects = []
    for i in range(blocks_east):
        for j in range(blocks_north):
            x0 = avenues[i].center_m + avenues[i].half_width_m
            x1 = avenues[i + 1].center_m - avenues[i + 1].half_width_m
            y0 = streets[j].center_m + streets[j].half_width_m
            y1 = streets[j + 1].center_m - streets[j + 1].half_width_m
            rects.append((x0, y0, x1, y1))
            d = CORNER_DEPTH_M
            # North and south rows run corner to corner; east and west rows fit between them.
            _frontage_row(bld, x0, x1, y1, "n", d, True)
            _frontage_row(bld, x0, x1, y0, "s", d, True)
            _frontage_row(bld, y0 + d, y1 - d, x1, "e", d, False)
            _frontage_row(bld, y0 + d, y1 - d, x0, "w", d, False)
            _core(bld, x0 + d, x1 - d, y0 + d, y1 - d)
            # Fill the gaps between the east/west rows' shallower buildings and the core.
            _core(bld, x0 + 12.0, x0 + d, y0 + d, y1 - d, 5.0)
            _core(bld, x1 - d, x1 - 12.0, y0 + d, y1 - d, 5.0)

    # Outer ring: deep blocks facing the outermost streets.
    a0, a1, s0, s1 = avenues[0], avenues[-1], streets[0], streets[-1]
    west_line, east_line = a0.center_m - a0.half_width_m, a1.center_m + a1.half_width_m
    south_line, north_line = s0.center_m - s0.half_width_m, s1.center_m + s1.half_width_m
    D, d = OUTER_DEPTH_M, CORNER_DEPTH_M
    _frontage_row(bld, west_line, east_line, north_line, "s", d, True)  # the row on the north side faces south
    _core(bld, west_line - D, east_line + D, north_line + d, north_line + D)
    _core(bld, west_line - D, west_line, north_line, north_line + d)
    _core(bld, east_line, east_line + D, north_line, north_line + d)
    _frontage_row(bld, west_line, east_line, south_line, "n", d, True)
    _core(bld, west_line - D, east_line + D, south_line - D, south_line - d)
    _core(bld, west_line - D, west_line, south_line - d, south_line)
    _core(bld, east_line, east_line + D, south_line - d, south_line)
    _frontage_row(bld, south_line, north_line, east_line, "w", d, False)
    _core(bld, east_line + d, east_line + D, south_line, north_line)
    _frontage_row(bld, south_line, north_line, west_line, "e", d, False)
    _core(bld, west_line - D, west_line - d, south_line, north_line)

    _street_side_props(bld, avenues, streets)
    _street_side_props(bld, streets, avenues)
    signals = _signals(bld, avenues, streets)
    car_pool = []
    for _ in range(40):
        model = T.CAR_MODELS[int(rng.choice(len(T.CAR_MODELS), p=[0.36, 0.18, 0.22, 0.1, 0.09, 0.05]))]
        car_pool.append((model, T.add_car_textures(bld.sprites, rng, model)))
    people = _people(bld, 24)
    bikes = _bikes(bld, 6)
    signal_offsets = rng.uniform(0, SIGNAL_CYCLE_S, (len(avenues), len(streets)))

    arr = np.array(bld.b, np.float64).reshape(-1, 6)
    buildings = Buildings(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5].astype(np.int64))
    return City(
        seed=int(seed),
        blocks_east=blocks_east,
        blocks_north=blocks_north,
        avenues=avenues,
        streets=streets,
        buildings=buildings,
        facade_bank=bld.facades.finalize(),
        sprite_bank=bld.sprites.finalize(),
        props=bld.props,
        signals=signals,
        signal_offsets_s=signal_offsets,
        signal_textures=dict(bld.signal_textures),
        car_pool=car_pool,
        people=people,
        bikes=bikes,
        ground_noise=T.ground_noise(rng),
        block_rects=np.array(rects, np.float64),
        landmark_kinds=dict(bld.landmark_kinds),
    )


# ------------------------------------------------------------------------------------------ ground raster

GROUND_MARGIN_M = 40.0  # raster beyond the outermost property lines (under the outer buildings)
_GROUND_RGB = {
    "lot": (120, 118, 110),
    "sidewalk": (172, 168, 160),
    "curb": (200, 198, 192),
    "road": (78, 78, 82),
    "white": (225, 225, 220),
    "yellow": (235, 190, 40),
    "patch": (62, 62, 66),
    "manhole": (50, 48, 46),
}


@dataclass
class GroundRaster:
    """Top-down albedo and classes of the ground, ``metres_per_texel`` square texels, with mip levels.

    Texel (row, col) of level L covers east_m = east0_m + (col + 0.5) * res * 2**L and
    north_m = north0_m - (row + 0.5) * res * 2**L (row 0 is the northern edge).
    ``bgr[L]`` uint8 [H_L, W_L, 3]; ``cls`` uint8 [H, W] (level 0: road or sidewalk).
    """

    east0_m: float
    north0_m: float
    metres_per_texel: float
    bgr: list[np.ndarray]
    cls: np.ndarray


def build_ground_raster(city: City, max_texels: int = 4096, min_metres_per_texel: float = 0.125) -> GroundRaster:
    """Draw roads, sidewalks, kerbs, lane markings, zebras, stop lines and wear into a raster."""
    import cv2

    rng = np.random.default_rng([city.seed, 0x6A0D])
    e_min, n_min, e_max, n_max = city.bounds_m
    e_min, n_min, e_max, n_max = e_min - GROUND_MARGIN_M, n_min - GROUND_MARGIN_M, e_max + GROUND_MARGIN_M, n_max + GROUND_MARGIN_M
    res = max(min_metres_per_texel, max(e_max - e_min, n_max - n_min) / max_texels)
    w, h = int(math.ceil((e_max - e_min) / res)), int(math.ceil((n_max - n_min) / res))
    img = np.empty((h, w, 3), np.uint8)
    lot_cls = 255  # lots (plazas, vacant plots) until the paving joints are drawn; sidewalk class after
    cls = np.full((h, w), lot_cls, np.uint8)
    img[:] = T.bgr(_GROUND_RGB["lot"])
    col = lambda e: (e - e_min) / res  # noqa: E731
    row = lambda n: (n_max - n) / res  # noqa: E731

    def rect(e0: float, n0: float, e1: float, n1: float, color: str, klass: int | None = None) -> None:
        c0, c1 = int(round(col(min(e0, e1)))), int(round(col(max(e0, e1))))
        r0, r1 = int(round(row(max(n0, n1)))), int(round(row(min(n0, n1))))
        c0, c1, r0, r1 = max(c0, 0), min(c1, w), max(r0, 0), min(r1, h)
        if c1 > c0 and r1 > r0:
            img[r0:r1, c0:c1] = T.bgr(_GROUND_RGB[color])
            if klass is not None:
                cls[r0:r1, c0:c1] = klass

    av, st = city.avenues, city.streets
    # Sidewalks (with kerb stones), then the roads over them.
    for s in av:
        lo, hi = st[0].center_m - st[0].half_width_m, st[-1].center_m + st[-1].half_width_m
        rect(s.center_m - s.half_width_m, lo, s.center_m + s.half_width_m, hi, "sidewalk", C.SIDEWALK)
    for s in st:
        lo, hi = av[0].center_m - av[0].half_width_m, av[-1].center_m + av[-1].half_width_m
        rect(lo, s.center_m - s.half_width_m, hi, s.center_m + s.half_width_m, "sidewalk", C.SIDEWALK)
    # Paving joints every 1.5 m on the sidewalks (drawn before the kerbs and roads cover them).
    joint = T.bgr((150, 146, 140))
    for k in range(0, w, max(1, int(round(1.5 / res)))):
        img[:, k][cls[:, k] == C.SIDEWALK] = joint
    for k in range(0, h, max(1, int(round(1.5 / res)))):
        img[k][cls[k] == C.SIDEWALK] = joint
    for s in av:
        lo, hi = st[0].center_m - st[0].half_road_m - CURB_M, st[-1].center_m + st[-1].half_road_m + CURB_M
        rect(s.center_m - s.half_road_m - CURB_M, lo, s.center_m + s.half_road_m + CURB_M, hi, "curb")
    for s in st:
        lo, hi = av[0].center_m - av[0].half_road_m - CURB_M, av[-1].center_m + av[-1].half_road_m + CURB_M
        rect(lo, s.center_m - s.half_road_m - CURB_M, hi, s.center_m + s.half_road_m + CURB_M, "curb")
    for s in av:
        lo, hi = st[0].center_m - st[0].half_road_m, st[-1].center_m + st[-1].half_road_m
        rect(s.center_m - s.half_road_m, lo, s.center_m + s.half_road_m, hi, "road", C.ROAD)
    for s in st:
        lo, hi = av[0].center_m - av[0].half_road_m, av[-1].center_m + av[-1].half_road_m
        rect(lo, s.center_m - s.half_road_m, hi, s.center_m + s.half_road_m, "road", C.ROAD)

    # Markings per street segment between two crossings. Coordinates as (along, across) -> (e, n).
    for streets, crossing in ((av, st), (st, av)):
        for s in streets:
            def r2(a0, x0, a1, x1, color, _s=s):
                if _s.axis == NS:
                    rect(_s.center_m + x0, a0, _s.center_m + x1, a1, color)
                else:
                    rect(a0, _s.center_m + x0, a1, _s.center_m + x1, color)

            lanes_w = s.lanes_per_direction * LANE_WIDTH_M
            for k in range(len(crossing) - 1):
                a = crossing[k].center_m + crossing[k].half_road_m
                b = crossing[k + 1].center_m - crossing[k + 1].half_road_m
                z0, z1 = a + CROSSWALK_GAP_M, b - CROSSWALK_GAP_M  # outer edges of the zebras
                for x in np.arange(-s.half_road_m + 0.3, s.half_road_m - 0.3, 1.2):
                    r2(z0, x, z0 + CROSSWALK_M, x + 0.6, "white")
                    r2(z1 - CROSSWALK_M, x, z1, x + 0.6, "white")
                in0, in1 = z0 + CROSSWALK_M + STOP_LINE_GAP_M, z1 - CROSSWALK_M - STOP_LINE_GAP_M
                # Stop lines: traffic keeps right, so the lanes towards increasing along-coordinate are
                # on the +across side for avenues (northbound on the east) and the -across side for
                # streets (eastbound on the south).
                pos_side = 1.0 if s.axis == NS else -1.0
                r2(in1 - STOP_LINE_M, 0.0, in1, pos_side * lanes_w, "white")
                r2(in0, 0.0, in0 + STOP_LINE_M, -pos_side * lanes_w, "white")
                for x in (-0.22, 0.08):
                    r2(in0, x, in1, x + 0.14, "yellow")
                for sgn in (-1.0, 1.0):
                    for x in (lanes_w, lanes_w + BIKE_LANE_M):
                        r2(in0, sgn * x - 0.07, in1, sgn * x + 0.07, "white")
                    if s.lanes_per_direction == 2:
                        for d0 in np.arange(in0 + 2.0, in1 - 3.0, 9.0):
                            r2(d0, sgn * LANE_WIDTH_M - 0.07, d0 + 3.0, sgn * LANE_WIDTH_M + 0.07, "white")
                # Wear: patches and manhole covers.
                for _ in range(int(rng.integers(1, 4))):
                    p0 = float(rng.uniform(in0, in1 - 6))
                    x0 = float(rng.uniform(-lanes_w, lanes_w - 2.0))
                    r2(p0, x0, p0 + float(rng.uniform(2, 6)), x0 + float(rng.uniform(1, 2.5)), "patch")
                for _ in range(int(rng.integers(0, 3))):
                    p0 = float(rng.uniform(in0, in1))
                    x0 = float(rng.uniform(-lanes_w + 0.5, lanes_w - 0.5))
                    ce, cn = (s.center_m + x0, p0) if s.axis == NS else (p0, s.center_m + x0)
                    cv2.circle(img, (int(col(ce)), int(row(cn))), max(1, int(0.35 / res)),
                               T.bgr(_GROUND_RGB["manhole"]), -1)

    # Surface grain: the shared noise tile, stronger on asphalt.
    tile = city.ground_noise
    amp_by_cls = np.full(256, 9.0, np.float32)
    amp_by_cls[C.ROAD], amp_by_cls[lot_cls] = 14.0, 16.0
    tw = tile.shape[1]
    tile_row = np.tile(tile, (1, w // tw + 1))[:, :w]
    for r0 in range(0, h, tile.shape[0]):  # in bands, to keep the float temporaries small
        r1 = min(h, r0 + tile.shape[0])
        grain = tile_row[: r1 - r0] * amp_by_cls[cls[r0:r1]]
        img[r0:r1] = np.clip(img[r0:r1].astype(np.float32) + grain[..., None], 0, 255).astype(np.uint8)
    cls[cls == lot_cls] = C.SIDEWALK  # paved lots are pavement to CamVid
    # Soften the texel edges a little: seen from a metre away a texel covers many pixels, and hard
    # square texels read as a checkerboard rather than as asphalt.
    levels = [cv2.GaussianBlur(img, (3, 3), 0.6)]
    for _ in range(2):
        prev = levels[-1]
        levels.append(cv2.resize(prev, (max(1, prev.shape[1] // 2), max(1, prev.shape[0] // 2)), interpolation=cv2.INTER_AREA))
    return GroundRaster(e_min, n_max, res, levels, cls)
