"""Procedural textures: building facades, cars, people, bicyclists, trees, poles, signs, fences, sky.

Every generator takes a seeded ``numpy.random.Generator`` and is deterministic. Images are BGR (OpenCV
order) uint8 with row 0 at the top of the object; sprites carry an alpha (0 or 255) and, per texel, a
glow code (see ``GLOW_*``) that says which texels emit light (lit windows at night, lamps always).

Textures live in a ``TextureBank``: one flat texel array for all textures of a city, so that the
renderer samples many textures with one numpy gather (``texels[offset + v * width + u]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception import classes as C

# Glow codes stored per texel (0 = not emissive). Windows glow only at night; lamps always.
GLOW_NONE = 0
GLOW_WINDOW = 1  # warm interior light
GLOW_WINDOW_DIM = 2
GLOW_WINDOW_COOL = 3  # screens, fluorescent offices
GLOW_RED = 4
GLOW_AMBER = 5
GLOW_GREEN = 6
GLOW_WHITE = 7
GLOW_SELF = 8  # keeps its own colour (shop signs)
GLOW_PALETTE_BGR = np.array(
    [(0, 0, 0), (110, 190, 250), (70, 125, 170), (160, 130, 100), (40, 40, 255), (30, 170, 255),
     (150, 255, 90), (235, 245, 255), (0, 0, 0)],
    dtype=np.float32,
)
GLOW_ALWAYS = np.array([False, False, False, False, True, True, True, True, False])  # lamps glow by day too

FACADE_TEXELS_PER_M = 8.0
CAR_TEXELS_PER_M = 20.0
SPRITE_TEXELS_PER_M = 40.0


# ------------------------------------------------------------------------------------------ the bank


class TextureBank:
    """All textures of one kind in one flat array, with optional mip levels (halved sizes).

    After ``finalize()``: ``bgr`` uint8 [N, 3], ``alpha`` uint8 [N], ``glow`` uint8 [N] (codes),
    ``cls`` uint8 [N] (class ids), and per level L and texture t: ``offset[L, t]``, ``width[L, t]``,
    ``height[L, t]`` (texels), so texel (v, u) of texture t at level L is ``offset + v * width + u``.
    """

    def __init__(self, mip_levels: int = 1) -> None:
        self.mip_levels = int(mip_levels)
        self._items: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.finalized = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, bgr: np.ndarray, alpha: np.ndarray | None = None, glow: np.ndarray | None = None,
            cls: int | np.ndarray = C.UNLABELLED) -> int:
        """Add a texture: ``bgr`` uint8 [H, W, 3]; ``alpha``/``glow``/``cls`` uint8 [H, W] (or a constant
        class). Returns its id."""
        if self.finalized:
            raise RuntimeError("TextureBank is finalized")
        h, w = bgr.shape[:2]
        a = np.full((h, w), 255, np.uint8) if alpha is None else alpha.astype(np.uint8)
        g = np.zeros((h, w), np.uint8) if glow is None else glow.astype(np.uint8)
        c = np.full((h, w), cls, np.uint8) if np.isscalar(cls) else np.asarray(cls, np.uint8)
        self._items.append((np.ascontiguousarray(bgr, np.uint8), a, g, c))
        return len(self._items) - 1

    def finalize(self) -> TextureBank:
        n_tex, n_lev = len(self._items), self.mip_levels
        self.offset = np.zeros((n_lev, max(n_tex, 1)), np.int64)
        self.width = np.ones((n_lev, max(n_tex, 1)), np.int64)
        self.height = np.ones((n_lev, max(n_tex, 1)), np.int64)
        parts: list[list[np.ndarray]] = [[], [], [], []]
        pos = 0
        for lev in range(n_lev):
            for t, (bgr, a, g, c) in enumerate(self._items):
                if lev > 0:
                    h0, w0 = bgr.shape[:2]
                    size = (max(1, w0 >> lev), max(1, h0 >> lev))
                    # Area averaging for colour (what the pixel really sees); nearest for the codes.
                    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                    a = cv2.resize(a, size, interpolation=cv2.INTER_NEAREST)
                    g = cv2.resize(g, size, interpolation=cv2.INTER_NEAREST)
                    c = cv2.resize(c, size, interpolation=cv2.INTER_NEAREST)
                h, w = bgr.shape[:2]
                self.offset[lev, t], self.width[lev, t], self.height[lev, t] = pos, w, h
                pos += h * w
                for k, arr in enumerate((bgr.reshape(-1, 3), a.ravel(), g.ravel(), c.ravel())):
                    parts[k].append(arr)
        empty = [np.zeros((0, 3), np.uint8)] + [np.zeros(0, np.uint8)] * 3
        self.bgr, self.alpha, self.glow, self.cls = (
            np.concatenate(p) if p else e for p, e in zip(parts, empty, strict=True)
        )
        self._items = []  # the flat arrays hold everything now
        self.finalized = True
        return self

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.bgr, self.alpha, self.glow, self.cls))


# ------------------------------------------------------------------------------------------ helpers


BGR = tuple[int, int, int]  # a colour in OpenCV's channel order


def bgr(rgb: tuple[int, int, int]) -> BGR:
    """An RGB triple in OpenCV's BGR order."""
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def _jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    c = np.asarray(color, np.float64) * (1.0 + rng.uniform(-amount, amount)) + rng.uniform(-amount, amount, 3) * 40
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, amplitude: float) -> np.ndarray:
    """Value noise: float32 [h, w] with features ~``cell`` texels wide, values in about +-amplitude."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    coarse = rng.uniform(-amplitude, amplitude, (gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _add_noise(img: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ facades

_WALL_COLORS_RGB = {
    "brick": [(150, 70, 55), (125, 60, 50), (170, 95, 70), (110, 50, 45), (160, 120, 95)],
    "stucco": [(225, 210, 180), (235, 225, 205), (210, 180, 150), (240, 200, 170), (200, 205, 195),
               (220, 190, 120), (190, 160, 140), (245, 240, 230), (170, 185, 200)],
    "concrete": [(170, 170, 165), (150, 150, 150), (190, 185, 175), (130, 130, 135)],
    "stone": [(200, 190, 165), (180, 170, 150), (215, 205, 185)],
    "glass": [(90, 120, 150), (70, 100, 110), (110, 140, 160), (60, 80, 100), (120, 150, 140)],
    "panel": [(120, 125, 135), (90, 95, 100), (200, 200, 205), (150, 90, 60)],
}
_GLASS_RGB = [(60, 80, 100), (45, 60, 75), (80, 100, 115), (70, 85, 80), (55, 65, 90), (100, 115, 125)]
_TRIM_RGB = [(240, 240, 235), (60, 55, 50), (120, 110, 100), (200, 195, 185), (90, 60, 40), (30, 30, 35)]
_SHOP_COLORS_RGB = [(200, 30, 30), (30, 90, 170), (20, 120, 60), (230, 180, 20), (120, 30, 120),
                    (240, 240, 240), (20, 20, 20), (230, 100, 20), (0, 150, 150), (180, 20, 80)]
_SHOP_WORDS = ["CAFE", "DELI", "PHARMACY", "BANK", "PIZZA", "BOOKS", "TACOS", "SHOES", "HOTEL", "BAR",
               "LAUNDRY", "MARKET", "SUSHI", "DINER", "FLORIST", "BAKERY", "OPTICS", "GYM", "NAILS",
               "TOYS", "JEWELRY", "RAMEN", "DONUTS", "LIQUOR", "SALON", "TAILOR", "MUSIC", "ART"]


@dataclass(frozen=True)
class FacadeDesign:
    """A building style, reused by several buildings of a city (the repetition a localizer must cope
    with); buildings of one design still differ in width, height, shop signs and awnings."""

    material: str  # brick | stucco | concrete | stone | glass | panel
    wall_bgr: tuple[int, int, int]
    trim_bgr: tuple[int, int, int]
    glass_bgr: tuple[int, int, int]
    floor_m: float  # storey height above the ground floor
    ground_floor_m: float
    bay_m: float  # window bay width
    window_w_frac: float
    window_h_frac: float
    window_style: str  # punched | ribbon | curtain | tall
    ground: str  # shops | lobby | plain | garage
    string_courses: bool  # a trim line at every floor
    cornice_m: float
    floors_min: int
    floors_max: int


def make_facade_designs(rng: np.random.Generator, n: int) -> list[FacadeDesign]:
    """``n`` distinct building styles."""
    designs = []
    materials = ["brick", "stucco", "stucco", "concrete", "stone", "glass", "panel", "stucco", "brick"]
    for _ in range(n):
        material = materials[int(rng.integers(len(materials)))]
        wall = bgr(_jitter(rng, _WALL_COLORS_RGB[material][int(rng.integers(len(_WALL_COLORS_RGB[material])))], 0.06))
        if material == "glass":
            style = "curtain"
        elif material == "panel":
            style = ["ribbon", "punched"][int(rng.integers(2))]
        else:
            style = ["punched", "punched", "tall", "ribbon"][int(rng.integers(4))]
        tall = material in ("glass", "panel", "concrete") and rng.random() < 0.6
        floors_min = int(rng.integers(6, 12)) if tall else int(rng.integers(1, 3))
        floors_max = floors_min + (int(rng.integers(3, 10)) if tall else int(rng.integers(1, 4)))
        designs.append(
            FacadeDesign(
                material=material,
                wall_bgr=wall,
                trim_bgr=bgr(_TRIM_RGB[int(rng.integers(len(_TRIM_RGB)))]),
                glass_bgr=bgr(_GLASS_RGB[int(rng.integers(len(_GLASS_RGB)))]),
                floor_m=float(rng.uniform(3.0, 3.8)),
                ground_floor_m=float(rng.uniform(4.0, 5.0)),
                bay_m=float(rng.uniform(2.4, 4.2)),
                window_w_frac=float(rng.uniform(0.4, 0.75)),
                window_h_frac=float(rng.uniform(0.45, 0.68)),
                window_style=style,
                ground=["shops", "shops", "shops", "lobby", "plain", "garage"][int(rng.integers(6))],
                string_courses=bool(rng.random() < 0.4),
                cornice_m=float(rng.uniform(0.3, 1.2)),
                floors_min=floors_min,
                floors_max=floors_max,
            )
        )
    return designs


def facade_height_m(rng: np.random.Generator, design: FacadeDesign) -> float:
    """A height for a building of this design (m), a whole number of storeys plus its cornice."""
    floors = int(rng.integers(design.floors_min, design.floors_max + 1))
    return design.ground_floor_m + floors * design.floor_m + design.cornice_m


def _draw_text_sign(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, bg, fg, text: str) -> None:
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), bg, -1)
    h, w = y1 - y0, x1 - x0
    if h < 3 or w < 6:
        return
    # Scale the text to fill the board: Hershey glyphs are ~22 px tall at scale 1.
    scale = max(0.1, (h - 2) / 22.0)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw > w - 2:
        scale *= (w - 2) / tw
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (x0 + (w - tw) // 2, y0 + (h + th) // 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, fg, 1, cv2.LINE_8)


def render_facade(rng: np.random.Generator, design: FacadeDesign, width_m: float, height_m: float,
                  texels_per_m: float = FACADE_TEXELS_PER_M) -> tuple[np.ndarray, np.ndarray]:
    """A facade texture: (bgr uint8 [H, W, 3], glow uint8 [H, W]); row 0 is the roof line, the bottom
    row is at the ground; H = round(height_m * texels_per_m)."""
    tpm = texels_per_m
    w = max(4, int(round(width_m * tpm)))
    h = max(4, int(round(height_m * tpm)))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = design.wall_bgr
    glow = np.zeros((h, w), np.uint8)
    noise = _smooth_noise(rng, h, w, 24, 10.0) + rng.normal(0, 3.0, (h, w)).astype(np.float32)
    if design.material == "brick":
        # Brick: per-brick shade (2 x 1 texels ~ 25 x 12 cm) and slightly darker every other course.
        bricks = rng.normal(0, 7.0, (h, w // 2 + 1)).astype(np.float32)
        noise += np.repeat(bricks, 2, axis=1)[:, :w]
        noise[1::3] -= 6.0
    img = _add_noise(img, noise)
    trim = design.trim_bgr
    ground_px = int(round(design.ground_floor_m * tpm))
    cornice_px = max(1, int(round(design.cornice_m * tpm)))
    floor_px = max(3, int(round(design.floor_m * tpm)))
    n_bays = max(1, int(round(width_m / design.bay_m)))
    bay_px = w / n_bays

    # Upper floors, from the top of the ground floor upwards.
    top_of_ground = h - ground_px
    glass = np.asarray(design.glass_bgr, np.float32)
    if design.window_style == "curtain":
        # Glass skin: glass everywhere with mullions per bay and spandrels per floor.
        region = img[cornice_px:top_of_ground]
        shade = _smooth_noise(rng, region.shape[0], w, 40, 18.0)
        region[:] = np.clip(glass + shade[..., None] + np.linspace(12, -12, region.shape[0])[:, None, None], 0, 255)
        for k in range(n_bays + 1):
            x = int(k * bay_px)
            region[:, max(0, x - 0):min(w, x + 1)] = trim
        y = top_of_ground
        while y - floor_px > cornice_px:
            y -= floor_px
            img[y:y + 2] = np.clip(glass * 0.6, 0, 255)
            lit = rng.random(n_bays) < 0.35
            for k in np.flatnonzero(lit):
                glow[y + 2:y + floor_px, int(k * bay_px) + 1:int((k + 1) * bay_px)] = [GLOW_WINDOW_COOL, GLOW_WINDOW][k % 2]
    else:
        y = top_of_ground
        while y - floor_px >= cornice_px:
            y -= floor_px
            if design.string_courses:
                img[y + floor_px - 1:y + floor_px] = trim
            win_h = max(2, int(floor_px * design.window_h_frac))
            wy0 = y + int((floor_px - win_h) * 0.55)
            if design.window_style == "ribbon":
                img[wy0:wy0 + win_h, 1:w - 1] = np.clip(glass + rng.normal(0, 6, 3), 0, 255)
                for k in range(n_bays + 1):
                    x = int(k * bay_px)
                    img[wy0:wy0 + win_h, max(0, x - 1):x + 1] = trim
                if rng.random() < 0.4:
                    glow[wy0:wy0 + win_h, 1:w - 1] = GLOW_WINDOW_COOL
                continue
            win_w = max(2, int(bay_px * design.window_w_frac))
            if design.window_style == "tall":
                win_h = max(2, int(floor_px * 0.78))
                wy0 = y + floor_px - win_h - 1
            for k in range(n_bays):
                wx0 = int(k * bay_px + (bay_px - win_w) / 2)
                # Each window reflects a slightly different sky; some have blinds drawn.
                tone = np.clip(glass + rng.normal(0, 10, 3) + 10, 0, 255)
                img[wy0:wy0 + win_h, wx0:wx0 + win_w] = tone
                img[wy0:wy0 + max(1, win_h // 3), wx0:wx0 + win_w] = np.clip(tone + 25, 0, 255)
                if rng.random() < 0.2:
                    img[wy0:wy0 + int(win_h * rng.uniform(0.2, 0.7)), wx0:wx0 + win_w] = (175, 195, 210)
                # Frame and sill in the trim colour.
                cv2.rectangle(img, (wx0 - 1, wy0 - 1), (wx0 + win_w, wy0 + win_h), trim, 1)
                img[min(h - 1, wy0 + win_h):min(h, wy0 + win_h + 1), max(0, wx0 - 1):wx0 + win_w + 1] = trim
                r = rng.random()
                if r < 0.30:
                    glow[wy0:wy0 + win_h, wx0:wx0 + win_w] = GLOW_WINDOW
                elif r < 0.42:
                    glow[wy0:wy0 + win_h, wx0:wx0 + win_w] = GLOW_WINDOW_DIM
    # Cornice at the roof line, with a shadow line under it.
    img[:cornice_px] = np.clip(np.asarray(trim, np.float32) * 0.92 + rng.normal(0, 3, (cornice_px, w, 1)), 0, 255)
    if cornice_px + 1 < h:
        img[cornice_px:cornice_px + 1] = (np.asarray(design.wall_bgr) * 0.55).astype(np.uint8)

    _render_ground_floor(rng, design, img, glow, w, h, ground_px, tpm)
    return img, glow


def _render_ground_floor(rng: np.random.Generator, design: FacadeDesign, img: np.ndarray, glow: np.ndarray, w: int,
                         h: int, ground_px: int, tpm: float) -> None:
    y0 = h - ground_px
    base_px = max(1, int(0.4 * tpm))
    trim = design.trim_bgr
    img[y0:y0 + max(1, int(0.25 * tpm))] = trim  # band over the ground floor
    img[h - base_px:] = (np.asarray(design.wall_bgr) * 0.7).astype(np.uint8)  # plinth
    if design.ground == "shops":
        # Shop units of 5-10 m, each with a sign board, a window, a door, maybe an awning.
        x = 0
        while x < w - 2:
            unit = int(rng.uniform(5.0, 10.0) * tpm)
            if w - (x + unit) < 3 * tpm:
                unit = w - x
            x1 = x + unit
            sign_bg = bgr(_SHOP_COLORS_RGB[int(rng.integers(len(_SHOP_COLORS_RGB)))])
            sign_fg = (255, 255, 255) if sum(sign_bg) < 400 else (25, 25, 25)
            board_y0 = y0 + int(0.35 * tpm)
            board_y1 = board_y0 + max(3, int(rng.uniform(0.6, 0.95) * tpm))
            word = _SHOP_WORDS[int(rng.integers(len(_SHOP_WORDS)))]
            _draw_text_sign(img, x + 2, board_y0, x1 - 2, board_y1, sign_bg, sign_fg, word)
            glow[board_y0:board_y1, x + 2:x1 - 2] = GLOW_SELF
            win_y0 = board_y1 + max(1, int(0.25 * tpm))
            win_y1 = h - base_px
            if win_y1 - win_y0 > 2:
                shop_glass = np.clip(np.asarray(design.glass_bgr, np.float32) * 0.75 + rng.normal(0, 8, 3), 0, 255)
                img[win_y0:win_y1, x + 3:x1 - 3] = shop_glass
                # Goods / interior: a few darker and brighter blobs behind the glass.
                for _ in range(int(rng.integers(2, 6))):
                    bx = int(rng.integers(x + 3, max(x + 4, x1 - 6)))
                    by = int(rng.integers(win_y0 + (win_y1 - win_y0) // 2, win_y1))
                    col = np.clip(shop_glass + rng.normal(0, 35, 3), 0, 255)
                    img[by:win_y1, bx:min(x1 - 3, bx + int(rng.integers(3, 8)))] = col
                glow[win_y0:win_y1, x + 3:x1 - 3] = GLOW_WINDOW
                door_w = max(2, int(1.1 * tpm))
                dx = x + 3 + int(rng.integers(0, max(1, unit - door_w - 6)))
                img[win_y0:win_y1, dx:dx + door_w] = np.clip(shop_glass * 0.6, 0, 255)
                cv2.rectangle(img, (dx, win_y0), (dx + door_w - 1, win_y1 - 1), trim, 1)
                img[win_y0:win_y1, x + 2:x + 3] = trim
                img[win_y0:win_y1, x1 - 3:x1 - 2] = trim
                if rng.random() < 0.45:
                    # Striped awning over the window.
                    aw_y1 = win_y0 + max(2, int(0.5 * tpm))
                    c1 = bgr(_SHOP_COLORS_RGB[int(rng.integers(len(_SHOP_COLORS_RGB)))])
                    stripe = max(1, int(0.35 * tpm))
                    for sx in range(x + 2, x1 - 2):
                        img[win_y0:aw_y1, sx] = c1 if ((sx - x) // stripe) % 2 == 0 else (235, 235, 235)
                    img[aw_y1 - 1:aw_y1, x + 2:x1 - 2] = (np.asarray(c1) * 0.6).astype(np.uint8)
                    glow[win_y0:aw_y1, x + 2:x1 - 2] = GLOW_NONE
            x = x1
    elif design.ground == "lobby":
        win_y0 = y0 + int(0.6 * tpm)
        img[win_y0:h - base_px, int(0.05 * w):int(0.95 * w)] = np.clip(np.asarray(design.glass_bgr) * 0.8, 0, 255)
        glow[win_y0:h - base_px, int(0.05 * w):int(0.95 * w)] = GLOW_WINDOW
        for k in range(1, 8):
            x = int(w * (0.05 + 0.9 * k / 8))
            img[win_y0:h - base_px, x:x + 1] = trim
        cx = w // 2
        img[h - base_px - int(2.4 * tpm):h - base_px, cx - int(1.2 * tpm):cx + int(1.2 * tpm)] = (40, 40, 45)
    elif design.ground == "garage":
        gw = int(3.0 * tpm)
        x = int(rng.integers(0, max(1, w - gw)))
        img[h - int(2.6 * tpm):h, x:x + gw] = (30, 30, 32)
        img[h - int(2.6 * tpm):h - int(2.4 * tpm), x:x + gw] = trim
    else:  # plain: a door and small windows
        dw = max(2, int(1.2 * tpm))
        dx = int(rng.integers(0, max(1, w - dw)))
        img[h - int(2.3 * tpm):h, dx:dx + dw] = (np.asarray(design.trim_bgr) * 0.5).astype(np.uint8)
        for k in range(max(1, int(w / (3.0 * tpm)))):
            wx = int(k * 3.0 * tpm + tpm)
            if abs(wx - dx) < 2 * tpm or wx + tpm > w:
                continue
            img[h - int(2.6 * tpm):h - int(1.2 * tpm), wx:wx + int(1.2 * tpm)] = design.glass_bgr


def render_rear_wall(rng: np.random.Generator, width_m: float, height_m: float,
                     texels_per_m: float = FACADE_TEXELS_PER_M) -> tuple[np.ndarray, np.ndarray]:
    """A plain back-of-block wall (the inside of a block, seen through gaps): grey-beige with small
    windows."""
    tpm = texels_per_m
    w, h = max(4, int(round(width_m * tpm))), max(4, int(round(height_m * tpm)))
    base = np.array(bgr(_jitter(rng, (165, 158, 145), 0.08)), np.float32)
    img = np.clip(base + _smooth_noise(rng, h, w, 20, 8.0)[..., None], 0, 255).astype(np.uint8)
    glow = np.zeros((h, w), np.uint8)
    for y in range(int(1.0 * tpm), h - int(1.5 * tpm), int(3.2 * tpm)):
        for x in range(int(1.0 * tpm), w - int(1.0 * tpm), int(4.0 * tpm)):
            img[y:y + int(1.2 * tpm), x:x + int(0.9 * tpm)] = (85, 80, 75)
    return img, glow


# ------------------------------------------------------------------------------------------ cars


@dataclass(frozen=True)
class CarModel:
    """Body dimensions (m) and profile of a vehicle type."""

    name: str
    length_m: float
    width_m: float
    height_m: float
    belt_m: float  # top of the doors / bottom of the windows
    hood_frac: float  # where the windshield starts (fraction of length from the front)
    trunk_frac: float  # where the rear window ends (fraction of length from the front)
    wheel_r_m: float


CAR_MODELS: tuple[CarModel, ...] = (
    CarModel("sedan", 4.6, 1.80, 1.45, 0.90, 0.30, 0.80, 0.32),
    CarModel("hatchback", 4.1, 1.75, 1.50, 0.92, 0.28, 0.95, 0.31),
    CarModel("suv", 4.8, 1.95, 1.78, 1.05, 0.22, 0.97, 0.38),
    CarModel("pickup", 5.4, 2.0, 1.85, 1.05, 0.25, 0.55, 0.40),
    CarModel("van", 5.2, 2.0, 2.2, 1.10, 0.14, 0.99, 0.36),
    CarModel("bus", 12.0, 2.55, 3.1, 1.15, 0.03, 0.99, 0.50),
)
CAR_COLORS_RGB = [(240, 240, 240), (20, 20, 22), (140, 140, 145), (190, 190, 195), (30, 50, 110),
                  (150, 20, 25), (235, 190, 30), (60, 90, 60), (90, 60, 40), (200, 200, 190), (40, 40, 45)]


@dataclass(frozen=True)
class CarFaces:
    """Texture ids of a car's four faces in a bank (front, rear, left, right), as seen from outside."""

    front: int
    rear: int
    left: int
    right: int


def _car_side(rng: np.random.Generator, model: CarModel, body_bgr: BGR, glass_bgr: BGR
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right side of a car (front at the image's right): bgr, alpha, glow."""
    tpm = CAR_TEXELS_PER_M
    w, h = int(round(model.length_m * tpm)), int(round(model.height_m * tpm))
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    glow = np.zeros((h, w), np.uint8)
    y_of = lambda m: int(round(h - m * tpm))  # noqa: E731 - height above ground (m) -> row
    clearance = 0.22 if model.name != "bus" else 0.35
    belt = model.belt_m
    body = np.array([[1, y_of(clearance)], [w - 2, y_of(clearance)], [w - 1, y_of(belt - 0.2)],
                     [w - 3, y_of(belt)], [2, y_of(belt)], [0, y_of(belt - 0.15)]], np.int32)
    front_x = int(w * (1.0 - model.hood_frac))  # windshield base (front at the right)
    rear_x = int(w * (1.0 - model.trunk_frac))
    roof_front = front_x - int(0.9 * tpm) if model.name not in ("van", "bus") else front_x - int(0.2 * tpm)
    roof_rear = rear_x + int(0.35 * tpm) if model.trunk_frac < 0.9 else rear_x
    cabin = np.array([[rear_x, y_of(belt)], [front_x, y_of(belt)], [roof_front, 0], [roof_rear, 0]], np.int32)
    for poly in (body, cabin):
        cv2.fillPoly(img, [poly], body_bgr)
        cv2.fillPoly(alpha, [poly], 255)
    # Side windows inside the cabin outline, split by a pillar.
    inset = max(1, int(0.08 * tpm))
    win = np.array([[rear_x + inset * 2, y_of(belt) - inset], [front_x - inset * 2, y_of(belt) - inset],
                    [roof_front - inset, inset * 2], [roof_rear + inset, inset * 2]], np.int32)
    cv2.fillPoly(img, [win], glass_bgr)
    if model.name == "bus":
        for x in range(rear_x + inset, front_x, int(1.3 * tpm)):
            img[inset * 2:y_of(belt) - inset, x:x + 2] = body_bgr
    else:
        mid = (rear_x + front_x) // 2
        img[:y_of(belt), mid - 1:mid + 1] = np.minimum(np.asarray(body_bgr) * 0.8, 255).astype(np.uint8)
    # Shading: darker lower body, a highlight line along the shoulder, door seams, handles.
    img[y_of(0.5):, :] = (img[y_of(0.5):, :] * 0.8).astype(np.uint8)
    img[y_of(belt - 0.05):y_of(belt - 0.1), 2:w - 3] = np.clip(np.asarray(body_bgr, np.float32) * 1.25 + 20, 0, 255)
    for x in (int(w * 0.45), int(w * 0.68)):
        img[y_of(belt):y_of(clearance + 0.05), x:x + 1] = (np.asarray(body_bgr) * 0.55).astype(np.uint8)
    # Wheels with arches; they stick out below the body to the ground.
    for cx in (int(w * 0.18), int(w * 0.82)) if model.name != "bus" else (int(w * 0.2), int(w * 0.78)):
        cy, r = y_of(model.wheel_r_m), int(model.wheel_r_m * tpm)
        cv2.circle(img, (cx, cy), r + 2, (25, 25, 25), -1)
        cv2.circle(alpha, (cx, cy), r + 1, 255, -1)
        cv2.circle(img, (cx, cy), r, (30, 30, 32), -1)
        cv2.circle(img, (cx, cy), max(1, int(r * 0.55)), (150, 150, 155), -1)
    # Lamps at the ends.
    img[y_of(belt - 0.1):y_of(belt - 0.3), w - 3:w] = (220, 230, 240)
    glow[y_of(belt - 0.1):y_of(belt - 0.3), w - 3:w] = GLOW_WHITE
    img[y_of(belt - 0.1):y_of(belt - 0.3), 0:3] = (30, 30, 200)
    glow[y_of(belt - 0.1):y_of(belt - 0.3), 0:3] = GLOW_RED
    img = _add_noise(img, rng.normal(0, 2.0, (h, w)).astype(np.float32))
    return img, alpha, glow


def _car_end(rng: np.random.Generator, model: CarModel, body_bgr: BGR, glass_bgr: BGR, front: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front or rear face of a car: bgr, alpha, glow."""
    tpm = CAR_TEXELS_PER_M
    w, h = int(round(model.width_m * tpm)), int(round(model.height_m * tpm))
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    glow = np.zeros((h, w), np.uint8)
    y_of = lambda m: int(round(h - m * tpm))  # noqa: E731
    belt = model.belt_m
    clearance = 0.22 if model.name != "bus" else 0.35
    cv2.rectangle(img, (0, y_of(belt)), (w - 1, y_of(clearance)), body_bgr, -1)
    cv2.rectangle(alpha, (0, y_of(belt)), (w - 1, y_of(clearance)), 255, -1)
    roof_inset = int(0.18 * tpm) if model.name not in ("van", "bus") else int(0.05 * tpm)
    cabin = np.array([[1, y_of(belt)], [w - 2, y_of(belt)], [w - 1 - roof_inset, 0], [roof_inset, 0]], np.int32)
    cv2.fillPoly(img, [cabin], body_bgr)
    cv2.fillPoly(alpha, [cabin], 255)
    g = max(1, int(0.08 * tpm))
    shield = np.array([[g + 1, y_of(belt) - g], [w - 2 - g, y_of(belt) - g], [w - 1 - roof_inset - g, g + 1],
                       [roof_inset + g, g + 1]], np.int32)
    cv2.fillPoly(img, [shield], glass_bgr if front else np.clip(np.asarray(glass_bgr) * 0.8, 0, 255).tolist())
    # Wheels (tyres) under the body at both corners.
    tw = int(0.25 * tpm)
    for x0 in (int(0.06 * w), w - int(0.06 * w) - tw):
        cv2.rectangle(img, (x0, y_of(clearance + 0.05)), (x0 + tw, h - 1), (25, 25, 25), -1)
        cv2.rectangle(alpha, (x0, y_of(clearance + 0.05)), (x0 + tw, h - 1), 255, -1)
    lamp_y0, lamp_y1 = y_of(belt - 0.05), y_of(belt - 0.25)
    lw = int(0.32 * w)
    if front:
        img[y_of(0.6):y_of(0.35), int(0.3 * w):int(0.7 * w)] = (35, 35, 38)  # grille
        for x0 in (int(0.04 * w), w - int(0.04 * w) - lw):
            img[lamp_y0:lamp_y1, x0:x0 + lw] = (225, 235, 245)
            glow[lamp_y0:lamp_y1, x0:x0 + lw] = GLOW_WHITE
    else:
        for x0 in (int(0.03 * w), w - int(0.03 * w) - lw):
            img[lamp_y0:lamp_y1, x0:x0 + lw] = (30, 30, 190)
            glow[lamp_y0:lamp_y1, x0:x0 + lw] = GLOW_RED
        img[y_of(0.62):y_of(0.45), int(0.38 * w):int(0.62 * w)] = (230, 230, 230)  # plate
    img[y_of(0.35):y_of(clearance), :] = (np.asarray(body_bgr) * 0.5 + 20).astype(np.uint8)  # bumper
    img = _add_noise(img, rng.normal(0, 2.0, (h, w)).astype(np.float32))
    return img, alpha, glow


def add_car_textures(bank: TextureBank, rng: np.random.Generator, model: CarModel,
                     color_rgb: tuple[int, int, int] | None = None) -> CarFaces:
    """Four face textures of one car in ``bank`` (class car)."""
    if color_rgb is None:
        color_rgb = CAR_COLORS_RGB[int(rng.integers(len(CAR_COLORS_RGB)))]
    body = bgr(_jitter(rng, color_rgb, 0.04))
    glass = bgr(_jitter(rng, (50, 60, 70), 0.15))
    right = _car_side(rng, model, body, glass)
    left = tuple(np.ascontiguousarray(a[:, ::-1]) for a in right)  # front at the image's left
    front = _car_end(rng, model, body, glass, front=True)
    rear = _car_end(rng, model, body, glass, front=False)
    ids = [bank.add(bgr, a, g, C.CAR) for bgr, a, g in (front, rear, left, right)]
    return CarFaces(*ids)


# ------------------------------------------------------------------------------------------ people

_SKIN_RGB = [(255, 220, 190), (230, 180, 140), (190, 140, 100), (140, 95, 65), (100, 70, 50)]
CLOTH_RGB = [(30, 30, 35), (200, 30, 30), (30, 60, 140), (240, 240, 240), (90, 90, 95), (20, 110, 60),
              (230, 190, 40), (120, 70, 40), (160, 90, 160), (60, 110, 170), (200, 120, 80)]
_PANTS_RGB = [(30, 35, 60), (25, 25, 28), (90, 85, 75), (150, 130, 100), (50, 60, 90), (110, 110, 115)]


@dataclass(frozen=True)
class PersonLook:
    skin_bgr: tuple[int, int, int]
    hair_bgr: tuple[int, int, int]
    shirt_bgr: tuple[int, int, int]
    pants_bgr: tuple[int, int, int]
    height_m: float
    bag: bool


def random_person_look(rng: np.random.Generator) -> PersonLook:
    return PersonLook(
        skin_bgr=bgr(_SKIN_RGB[int(rng.integers(len(_SKIN_RGB)))]),
        hair_bgr=bgr([(20, 15, 10), (60, 40, 25), (140, 110, 70), (200, 200, 200), (30, 30, 30)][int(rng.integers(5))]),
        shirt_bgr=bgr(_jitter(rng, CLOTH_RGB[int(rng.integers(len(CLOTH_RGB)))], 0.08)),
        pants_bgr=bgr(_PANTS_RGB[int(rng.integers(len(_PANTS_RGB)))]),
        height_m=float(rng.uniform(1.55, 1.92)),
        bag=bool(rng.random() < 0.3),
    )


PERSON_SPRITE_W_M = 0.8  # sprite canvas width (m); the figure is narrower


def person_sprite(look: PersonLook, view: str, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """A walking person: (bgr [H, W, 3], alpha [H, W]); ``view`` "side" (walking to the image's right)
    or "front"; ``phase`` in [0, 1) of the walk cycle. Canvas PERSON_SPRITE_W_M x look.height_m."""
    tpm = SPRITE_TEXELS_PER_M
    w, h = int(PERSON_SPRITE_W_M * tpm), int(look.height_m * tpm)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    s = look.height_m / 1.75  # proportions scale with height
    y_of = lambda m: int(round(h - m * s * tpm))  # noqa: E731
    cx = w // 2
    swing = math.sin(2 * math.pi * phase)

    def limb(p0, p1, width_m, color):
        t = max(1, int(width_m * tpm))
        cv2.line(img, p0, p1, color, t, cv2.LINE_8)
        cv2.line(alpha, p0, p1, 255, t, cv2.LINE_8)

    hip = (cx, y_of(0.92))
    shoulder_y = y_of(1.42)
    if view == "side":
        for sgn, shade in ((-1, 0.75), (1, 1.0)):  # far leg darker, drawn first
            foot = (cx + int(sgn * swing * 0.28 * tpm), y_of(0.04))
            knee = (cx + int(sgn * swing * 0.16 * tpm) + 2, y_of(0.48))
            col = tuple(int(c * shade) for c in look.pants_bgr)
            limb(hip, knee, 0.13, col)
            limb(knee, foot, 0.11, col)
            limb((foot[0] - 2, foot[1]), (foot[0] + int(0.12 * tpm), foot[1]), 0.07, (30, 30, 30))
        torso = np.array([[cx - int(0.12 * tpm), y_of(0.9)], [cx + int(0.1 * tpm), y_of(0.9)],
                          [cx + int(0.1 * tpm), shoulder_y], [cx - int(0.12 * tpm), shoulder_y]], np.int32)
        cv2.fillPoly(img, [torso], look.shirt_bgr)
        cv2.fillPoly(alpha, [torso], 255)
        hand = (cx - int(swing * 0.25 * tpm), y_of(0.85))
        limb((cx, shoulder_y + 3), hand, 0.08, tuple(int(c * 0.85) for c in look.shirt_bgr))
        if look.bag:
            cv2.rectangle(img, (cx - int(0.2 * tpm), y_of(1.35)), (cx - int(0.1 * tpm), y_of(1.0)), (40, 60, 90), -1)
            cv2.rectangle(alpha, (cx - int(0.2 * tpm), y_of(1.35)), (cx - int(0.1 * tpm), y_of(1.0)), 255, -1)
    else:
        lift = int(abs(swing) * 0.05 * tpm)
        for sgn in (-1, 1):
            x = cx + sgn * int(0.08 * tpm)
            up = lift if (sgn > 0) == (swing > 0) else 0
            limb((x, y_of(0.9)), (x, y_of(0.05) - up), 0.13, look.pants_bgr)
            limb((x - 2, y_of(0.03) - up), (x + 2, y_of(0.03) - up), 0.08, (30, 30, 30))
        torso = np.array([[cx - int(0.17 * tpm), y_of(0.88)], [cx + int(0.17 * tpm), y_of(0.88)],
                          [cx + int(0.2 * tpm), shoulder_y], [cx - int(0.2 * tpm), shoulder_y]], np.int32)
        cv2.fillPoly(img, [torso], look.shirt_bgr)
        cv2.fillPoly(alpha, [torso], 255)
        for sgn in (-1, 1):
            limb((cx + sgn * int(0.21 * tpm), shoulder_y + 3), (cx + sgn * int(0.24 * tpm), y_of(0.85)), 0.08,
                 tuple(int(c * 0.85) for c in look.shirt_bgr))
    # Neck, head, hair.
    head_c = (cx + (2 if view == "side" else 0), y_of(1.6))
    r = max(2, int(0.11 * s * tpm))
    limb((cx, shoulder_y), (cx, y_of(1.5)), 0.07, look.skin_bgr)
    cv2.circle(img, head_c, r, look.skin_bgr, -1)
    cv2.circle(alpha, head_c, r, 255, -1)
    cv2.ellipse(img, (head_c[0] - (2 if view == "side" else 0), head_c[1] - r // 3), (r, max(1, r * 2 // 3)), 0, 180, 360,
                look.hair_bgr, -1)
    return img, alpha


def bicyclist_sprite(look: PersonLook, frame_bgr: tuple[int, int, int], view: str, phase: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A rider on a bicycle: (bgr, alpha, width_m). ``view`` "side" (riding to the image's right) or
    "rear"/"front" (seen end-on). Height 1.75 m."""
    tpm = SPRITE_TEXELS_PER_M
    width_m = 1.8 if view == "side" else 0.7
    w, h = int(width_m * tpm), int(1.75 * tpm)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    y_of = lambda m: int(round(h - m * tpm))  # noqa: E731

    def line(p0, p1, width, color):
        t = max(1, int(width * tpm))
        cv2.line(img, p0, p1, color, t)
        cv2.line(alpha, p0, p1, 255, t)

    if view == "side":
        r = int(0.34 * tpm)
        rear_c, front_c = (int(0.42 * tpm), y_of(0.34)), (w - int(0.42 * tpm), y_of(0.34))
        for c in (rear_c, front_c):
            cv2.circle(img, c, r, (30, 30, 30), max(2, int(0.05 * tpm)))
            cv2.circle(alpha, c, r, 255, max(2, int(0.05 * tpm)))
            line(c, c, 0.04, (120, 120, 120))
        crank = (int(0.85 * tpm), y_of(0.32))
        seat = (int(0.72 * tpm), y_of(0.95))
        bar = (w - int(0.55 * tpm), y_of(1.0))
        for a, b in ((rear_c, crank), (crank, seat), (seat, rear_c), (crank, bar), (seat, bar), (bar, front_c)):
            line(a, b, 0.04, frame_bgr)
        # Rider: legs to the pedals, torso leaning forward, arms to the bar, head with a helmet.
        ang = 2 * math.pi * phase
        hip = (seat[0], seat[1] - 4)
        for k, shade in ((0, 0.75), (math.pi, 1.0)):
            pedal = (crank[0] + int(0.17 * tpm * math.cos(ang + k)), crank[1] + int(0.17 * tpm * math.sin(ang + k)))
            knee = ((hip[0] + pedal[0]) // 2 + int(0.15 * tpm), (hip[1] + pedal[1]) // 2 - int(0.05 * tpm))
            col = tuple(int(c * shade) for c in look.pants_bgr)
            line(hip, knee, 0.12, col)
            line(knee, pedal, 0.1, col)
        shoulder = (seat[0] + int(0.38 * tpm), y_of(1.45))
        line(hip, shoulder, 0.24, look.shirt_bgr)
        line(shoulder, bar, 0.08, tuple(int(c * 0.85) for c in look.shirt_bgr))
        head = (shoulder[0] + int(0.1 * tpm), shoulder[1] - int(0.18 * tpm))
    else:
        cx = w // 2
        line((cx, y_of(0.02)), (cx, y_of(0.68)), 0.06, (30, 30, 30))  # wheel seen end-on
        line((cx - int(0.25 * tpm), y_of(1.0)), (cx + int(0.25 * tpm), y_of(1.0)), 0.04, frame_bgr)  # bar
        for sgn in (-1, 1):
            up = int(0.1 * tpm * math.sin(2 * math.pi * phase) * sgn)
            line((cx + sgn * int(0.09 * tpm), y_of(0.95)), (cx + sgn * int(0.1 * tpm), y_of(0.3) - up), 0.11, look.pants_bgr)
        torso = np.array([[cx - int(0.17 * tpm), y_of(0.95)], [cx + int(0.17 * tpm), y_of(0.95)],
                          [cx + int(0.2 * tpm), y_of(1.42)], [cx - int(0.2 * tpm), y_of(1.42)]], np.int32)
        cv2.fillPoly(img, [torso], look.shirt_bgr)
        cv2.fillPoly(alpha, [torso], 255)
        for sgn in (-1, 1):
            line((cx + sgn * int(0.2 * tpm), y_of(1.38)), (cx + sgn * int(0.25 * tpm), y_of(1.02)), 0.07, look.shirt_bgr)
        head = (cx, y_of(1.56))
    r = max(2, int(0.11 * tpm))
    cv2.circle(img, head, r, look.skin_bgr, -1)
    cv2.circle(alpha, head, r, 255, -1)
    helmet = (frame_bgr[0] // 2 + 100, frame_bgr[1] // 2 + 60, frame_bgr[2] // 2 + 60)
    cv2.ellipse(img, (head[0], head[1] - r // 4), (r + 1, r), 0, 180, 360, helmet, -1)
    cv2.ellipse(alpha, (head[0], head[1] - r // 4), (r + 1, r), 0, 180, 360, 255, -1)
    return img, alpha, width_m


# ------------------------------------------------------------------------------------------ street furniture

TREE_TEXELS_PER_M = 20.0


def tree_sprite(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A street tree: (bgr, alpha, width_m, height_m); canopy of overlapping leafy blobs on a trunk."""
    tpm = TREE_TEXELS_PER_M
    height_m = float(rng.uniform(5.0, 9.0))
    width_m = float(rng.uniform(3.2, 5.5))
    w, h = int(width_m * tpm), int(height_m * tpm)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    trunk_w = max(2, int(rng.uniform(0.22, 0.35) * tpm))
    trunk_top = int(h * rng.uniform(0.45, 0.6))
    cx = w // 2
    cv2.rectangle(img, (cx - trunk_w // 2, trunk_top), (cx + trunk_w // 2, h - 1), (35, 55, 75), -1)
    cv2.rectangle(alpha, (cx - trunk_w // 2, trunk_top), (cx + trunk_w // 2, h - 1), 255, -1)
    base = np.array(bgr(_jitter(rng, (60, 110, 45), 0.15)), np.float32)
    canopy_h = int(h * rng.uniform(0.62, 0.75))
    for _ in range(int(rng.integers(14, 24))):
        r = int(rng.uniform(0.18, 0.32) * w)
        bx = int(rng.normal(cx, w * 0.17))
        by = int(rng.uniform(r, max(r + 1, canopy_h - r)))
        col = np.clip(base * rng.uniform(0.7, 1.25), 0, 255)
        cv2.circle(img, (bx, by), r, tuple(float(c) for c in col), -1)
        cv2.circle(alpha, (bx, by), r, 255, -1)
    # Leaf texture: speckle the canopy with light and dark texels, ragged edge.
    leaf = rng.normal(0, 22, (h, w)).astype(np.float32)
    canopy = (alpha > 0) & (np.arange(h)[:, None] < canopy_h + 2)
    img = np.where(canopy[..., None], np.clip(img.astype(np.float32) + leaf[..., None], 0, 255), img).astype(np.uint8)
    ragged = canopy & (rng.random((h, w)) < 0.06)
    alpha[ragged] = 0
    alpha[alpha > 0] = 255
    return img, alpha, width_m, height_m


def streetlight_sprite(arm_right: bool, height_m: float = 8.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A lamp post with an arm (to the image's right if ``arm_right``): (bgr, alpha, glow, width_m).
    The post stands at the sprite's horizontal centre."""
    tpm = 20.0
    arm_m = 1.8
    width_m = 2 * arm_m + 0.4
    w, h = int(width_m * tpm), int(height_m * tpm)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    glow = np.zeros((h, w), np.uint8)
    cx = w // 2
    grey = (95, 100, 100)
    pw = max(2, int(0.16 * tpm))
    cv2.rectangle(img, (cx - pw // 2, 2), (cx + pw // 2, h - 1), grey, -1)
    cv2.rectangle(alpha, (cx - pw // 2, 2), (cx + pw // 2, h - 1), 255, -1)
    cv2.rectangle(img, (cx - pw, h - int(0.5 * tpm)), (cx + pw, h - 1), (80, 85, 85), -1)  # base
    cv2.rectangle(alpha, (cx - pw, h - int(0.5 * tpm)), (cx + pw, h - 1), 255, -1)
    end = cx + int(arm_m * tpm) * (1 if arm_right else -1)
    cv2.line(img, (cx, 6), (end, 3), grey, 2)
    cv2.line(alpha, (cx, 6), (end, 3), 255, 2)
    lx0, lx1 = sorted((end - int(0.35 * tpm) * (1 if arm_right else -1), end))
    cv2.rectangle(img, (lx0, 1), (lx1, 7), (70, 70, 70), -1)
    cv2.rectangle(alpha, (lx0, 1), (lx1, 7), 255, -1)
    img[6:8, lx0:lx1 + 1] = (200, 235, 250)
    glow[6:8, lx0:lx1 + 1] = GLOW_WINDOW
    return img, alpha, glow, width_m


def pole_sprite(height_m: float, width_m: float, bgr: tuple[int, int, int], crossbar: bool = False
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """A plain post (signs, traffic lights) or a wooden utility pole with a crossbar: (bgr, alpha,
    sprite width_m)."""
    tpm = 20.0
    sprite_w_m = 1.6 if crossbar else width_m
    w, h = max(1, int(round(sprite_w_m * tpm))), int(height_m * tpm)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    pw = max(1, int(round(width_m * tpm)))
    x0 = (w - pw) // 2
    img[:, x0:x0 + pw] = bgr
    alpha[:, x0:x0 + pw] = 255
    img[:, x0:x0 + max(1, pw // 3)] = np.clip(np.asarray(bgr) * 1.2, 0, 255)  # lit side of the round post
    if crossbar:
        img[int(0.4 * tpm):int(0.55 * tpm), :] = bgr
        alpha[int(0.4 * tpm):int(0.55 * tpm), :] = 255
    return img, alpha, sprite_w_m


SIGN_KINDS = ("speed", "oneway", "noparking", "street", "crossing", "bus", "noleft")


def sign_face(rng: np.random.Generator, kind: str, text: str = "") -> tuple[np.ndarray, np.ndarray, float, float]:
    """Front of a traffic sign plate: (bgr, alpha, width_m, height_m)."""
    tpm = 40.0
    sizes = {"speed": (0.6, 0.75), "oneway": (0.9, 0.3), "noparking": (0.45, 0.6), "street": (1.4, 0.3),
             "crossing": (0.75, 0.75), "bus": (0.45, 0.6), "noleft": (0.6, 0.6)}
    width_m, height_m = sizes[kind]
    w, h = int(width_m * tpm), int(height_m * tpm)
    img = np.full((h, w, 3), 245, np.uint8)
    alpha = np.full((h, w), 255, np.uint8)
    black, red = (20, 20, 20), (40, 30, 200)
    if kind == "speed":
        cv2.rectangle(img, (1, 1), (w - 2, h - 2), black, 1)
        _draw_text_sign(img, 3, 3, w - 3, h // 3, (245, 245, 245), black, "SPEED")
        _draw_text_sign(img, 3, h // 3, w - 3, h - 3, (245, 245, 245), black, str(int(rng.choice([25, 30, 35, 40]))))
    elif kind == "oneway":
        img[:] = black
        cv2.arrowedLine(img, (int(0.1 * w), h // 2), (int(0.9 * w), h // 2), (245, 245, 245), max(1, h // 5), tipLength=0.3)
    elif kind == "noparking":
        cv2.circle(img, (w // 2, w // 2), w // 2 - 2, red, 2)
        cv2.line(img, (4, 4), (w - 4, w - 4), red, 2)
        _draw_text_sign(img, 2, w, w - 2, h - 2, (245, 245, 245), black, "P")
    elif kind == "street":
        img[:] = (60, 110, 20)
        _draw_text_sign(img, 2, 2, w - 2, h - 2, (60, 110, 20), (245, 245, 245), text or "MAIN ST")
    elif kind == "crossing":
        img[:] = (20, 200, 240)
        alpha[:] = 0
        pts = np.array([[w // 2, 0], [w - 1, h // 2], [w // 2, h - 1], [0, h // 2]], np.int32)
        cv2.fillPoly(alpha, [pts], 255)
        cv2.polylines(img, [pts], True, black, 2)
        cv2.circle(img, (w // 2, h // 3), 3, black, -1)
        cv2.line(img, (w // 2, h // 3), (w // 2, 2 * h // 3), black, 3)
    elif kind == "bus":
        img[:] = (160, 80, 20)
        _draw_text_sign(img, 2, h // 4, w - 2, 3 * h // 4, (160, 80, 20), (245, 245, 245), "BUS")
    elif kind == "noleft":
        cv2.circle(img, (w // 2, h // 2), w // 2 - 2, red, 3)
        cv2.arrowedLine(img, (w // 2 + 4, h - 8), (8, h // 2 - 4), black, 3, tipLength=0.4)
        cv2.line(img, (8, 8), (w - 8, h - 8), red, 3)
    return img, alpha, width_m, height_m


def plate_back(width_m: float, height_m: float, alpha_front: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The grey metal back of a sign plate (mirrored outline of the front)."""
    h, w = (alpha_front.shape if alpha_front is not None else (int(height_m * 40), int(width_m * 40)))
    img = np.full((h, w, 3), (150, 150, 145), np.uint8)
    alpha = np.full((h, w), 255, np.uint8) if alpha_front is None else np.ascontiguousarray(alpha_front[:, ::-1])
    return img, alpha


TRAFFIC_LIGHT_W_M, TRAFFIC_LIGHT_H_M, TRAFFIC_LIGHT_D_M = 0.38, 1.05, 0.30


def traffic_light_face(state: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front of a three-lamp signal head with ``state`` in red | yellow | green lit: (bgr, alpha, glow)."""
    tpm = 40.0
    w, h = int(TRAFFIC_LIGHT_W_M * tpm), int(TRAFFIC_LIGHT_H_M * tpm)
    img = np.full((h, w, 3), (28, 30, 30), np.uint8)
    alpha = np.full((h, w), 255, np.uint8)
    glow = np.zeros((h, w), np.uint8)
    lamps = (("red", (40, 40, 255), GLOW_RED), ("yellow", (30, 190, 255), GLOW_AMBER), ("green", (150, 255, 60), GLOW_GREEN))
    r = int(0.13 * tpm)
    for k, (name, color, code) in enumerate(lamps):
        c = (w // 2, int((k + 0.5) * h / 3))
        on = name == state
        cv2.circle(img, c, r, color if on else tuple(int(v * 0.18) + 15 for v in color), -1)
        if on:
            cv2.circle(glow, c, r, code, -1)
    return img, alpha, glow


def traffic_light_back() -> tuple[np.ndarray, np.ndarray]:
    tpm = 40.0
    w, h = int(TRAFFIC_LIGHT_W_M * tpm), int(TRAFFIC_LIGHT_H_M * tpm)
    return np.full((h, w, 3), (35, 38, 38), np.uint8), np.full((h, w), 255, np.uint8)


def traffic_light_side() -> tuple[np.ndarray, np.ndarray]:
    tpm = 40.0
    w, h = int(TRAFFIC_LIGHT_D_M * tpm), int(TRAFFIC_LIGHT_H_M * tpm)
    return np.full((h, w, 3), (32, 34, 34), np.uint8), np.full((h, w), 255, np.uint8)


FENCE_TEXELS_PER_M = 20.0


def fence_texture(rng: np.random.Generator, kind: str, height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """A tileable fence panel 2 m long: (bgr, alpha); ``kind`` chainlink | picket | railing | wall."""
    tpm = FENCE_TEXELS_PER_M
    w, h = int(2.0 * tpm), int(height_m * tpm)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    if kind == "chainlink":
        img[:] = (140, 140, 135)
        yy, xx = np.mgrid[0:h, 0:w]
        mesh = ((xx + yy) % 4 == 0) | ((xx - yy) % 4 == 0)
        alpha[mesh] = 255
        for x in (0, w // 2):
            img[:, x:x + 2] = (110, 110, 105)
            alpha[:, x:x + 2] = 255
        img[:2] = (110, 110, 105)
        alpha[:2] = 255
    elif kind == "picket":
        color = bgr(_jitter(rng, [(235, 235, 230), (150, 100, 60), (90, 70, 50)][int(rng.integers(3))], 0.05))
        for x in range(0, w, int(0.15 * tpm)):
            img[:, x:x + 2] = color
            alpha[2:, x:x + 2] = 255
        for y in (int(0.25 * h), int(0.75 * h)):
            img[y:y + 2] = color
            alpha[y:y + 2] = 255
    elif kind == "railing":
        img[:] = (40, 45, 45)
        for x in range(0, w, int(0.12 * tpm)):
            alpha[:, x:x + 1] = 255
        alpha[:2] = 255
        alpha[h - 3:h - 1] = 255
    else:  # low wall
        img[:] = bgr(_jitter(rng, (170, 160, 140), 0.08))
        img = _add_noise(img, _smooth_noise(rng, h, w, 6, 10.0))
        alpha[:] = 255
        img[:2] = (120, 115, 105)
    return img, alpha


def bin_texture(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A litter bin / newspaper box side (unlabelled clutter): (bgr, alpha), 0.6 x 1.0 m."""
    tpm = 40.0
    w, h = int(0.6 * tpm), int(1.0 * tpm)
    color = bgr([(40, 80, 40), (30, 30, 30), (40, 60, 150), (180, 60, 40)][int(rng.integers(4))])
    img = _add_noise(np.full((h, w, 3), color, np.uint8), rng.normal(0, 4, (h, w)).astype(np.float32))
    img[: int(0.1 * tpm)] = (np.asarray(color) * 0.6).astype(np.uint8)
    return img, np.full((h, w), 255, np.uint8)


# ------------------------------------------------------------------------------------------ ground & sky


def ground_noise(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A tileable-enough float32 [size, size] noise for road and pavement wear, values about +-1:
    large patches plus fine grain."""
    coarse = _smooth_noise(rng, size, size, 32, 0.6)
    medium = _smooth_noise(rng, size, size, 6, 0.35)
    fine = rng.normal(0, 0.1, (size, size)).astype(np.float32)
    # Mirror-blend the edges so that the tile boundary does not show as a seam.
    noise = coarse + medium + fine
    ramp = np.minimum(np.arange(size), size - 1 - np.arange(size)).astype(np.float32)
    wgt = np.clip(ramp / 12.0, 0, 1)
    noise = noise * wgt[None, :] + noise[:, ::-1] * (1 - wgt[None, :])
    noise = noise * wgt[:, None] + noise[::-1, :] * (1 - wgt[:, None])
    return noise.astype(np.float32)


SKY_AZIMUTH_BINS = 2048


def sky_panorama(rng: np.random.Generator, zenith_bgr: BGR, horizon_bgr: BGR, sun_azimuth_deg: float,
                 sun_elevation_deg: float, rows: int, fy_px: float, cy_px: float, cloudiness: float) -> np.ndarray:
    """The sky as a cylinder: uint8 [rows, SKY_AZIMUTH_BINS, 3]; row j of the image above the horizon
    samples row j, column = azimuth / 360 * bins. Gradient from the horizon colour to the zenith colour,
    soft clouds, a glow around the sun."""
    bins = SKY_AZIMUTH_BINS
    j = np.arange(rows, dtype=np.float32) + 0.5
    elev = np.degrees(np.arctan2(cy_px - j, fy_px))  # elevation of each row (deg)
    t = np.clip(elev / 40.0, 0, 1) ** 0.6
    zen = np.asarray(zenith_bgr, np.float32)
    hor = np.asarray(horizon_bgr, np.float32)
    col = hor[None, :] * (1 - t[:, None]) + zen[None, :] * t[:, None]
    sky = np.repeat(col[:, None, :], bins, axis=1)
    # Clouds: value noise stretched along the azimuth, flattened towards the horizon (perspective).
    if cloudiness > 0:
        cl = np.zeros((rows, bins), np.float32)
        for cells, amp in ((16, 1.0), (64, 0.5), (256, 0.25)):  # cells around the horizon (bins % cells == 0)
            grid = rng.uniform(0, 1, (max(2, rows * cells * 2 // bins + 2), cells)).astype(np.float32)
            # Resize three periods and keep the middle one, so that the sky wraps seamlessly at 360 deg.
            wide = cv2.resize(np.tile(grid, (1, 3)), (3 * bins, rows), interpolation=cv2.INTER_CUBIC)
            cl += amp * wide[:, bins:2 * bins]
        cl /= 1.75
        cover = np.clip((cl - (1.0 - cloudiness)) * 3.0, 0, 1) * np.clip(elev[:, None] / 3.0, 0, 1)
        cloud_col = np.clip(hor * 1.05 + 15, 0, 255)
        sky = sky * (1 - cover[..., None] * 0.85) + cloud_col[None, None, :] * cover[..., None] * 0.85
    if sun_elevation_deg > -4:
        az = np.arange(bins, dtype=np.float32) * 360.0 / bins
        daz = (az - sun_azimuth_deg + 180.0) % 360.0 - 180.0
        dist = np.hypot(daz[None, :], elev[:, None] - sun_elevation_deg)
        glow = np.exp(-dist / 12.0)[..., None] * np.array([40, 70, 90], np.float32)
        disc = (dist < 1.6)[..., None] * np.array([255, 255, 255], np.float32)
        sky = np.maximum(sky + glow, disc)
    return np.clip(sky, 0, 255).astype(np.uint8)
