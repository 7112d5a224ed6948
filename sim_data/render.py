"""The renderer: a 2.5D column ray caster with exact pinhole geometry, pure numpy.

The camera never pitches or rolls (see ``camera.py``), so the world can be drawn column by column:

1. Ground: every pixel below the horizon is intersected with the road plane (``z = h fy / (v - cy)``)
   and samples the city's top-down ground raster (roads, markings, sidewalks), with mip levels by
   distance.
2. Sky: above the horizon, a cylindrical panorama indexed by each column's azimuth.
3. Buildings: each column's ray is intersected with every building footprint (slab test, all columns
   x all buildings at once); the nearest three hits per column are drawn far to near, so a tower shows
   above the low building in front of it. A wall spans the rows whose world height at the hit depth is
   between 0 and the building's height; texels come from its facade (mip level by distance).
4. Objects: props (lamp posts, trees, signs, parked cars, fences...) and the moving things, all in one
   vectorized pass: camera-facing billboards (people, bicyclists, posts, trees) and textured boxes
   (cars, sign plates, signal heads, fences) ray-cast per column become (object, column) segments,
   then pixels; a per-pixel depth test picks the nearest object, and each column is tested against the
   nearest wall's depth.

Colour and class travel together as one packed uint32 per texel (``pack_bgrc``): every pixel written
to the frame gets its class from the very texel that gave its colour, and every object pixel its
object's id in an instance map, so boxes (from the instance map) and masks agree with the pixels by
construction. Per frame the cost is a few dozen numpy passes over the image, whatever the number of
objects (a Python loop per object cost ~100 us each; the batched pass ~3 ms for all of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception import classes as C

from . import textures as T
from .camera import CameraPose, PinholeCamera
from .city import Billboard, Box, City
from .lighting import Lighting, haze_fraction, light_colors

NEAR_M = 0.3  # nothing nearer than this is drawn
WALL_LAYERS = 3  # building hits drawn per column
INF = np.float32(np.inf)


@dataclass
class RenderResult:
    """One rendered frame.

    image_bgr: uint8 [H, W, 3]. label_mask: uint8 [H, W] class ids (perception.classes).
    instance_ids: int32 [H, W], 0 for stuff (sky, road, buildings...), else the object drawn there.
    boxes_xyxy: float32 [N, 4] boxes of the visible detectable objects, (x1, y1, x2, y2) in pixel-edge
    coordinates covering pixels x1 <= i < x2, y1 <= j < y2. box_class_ids: int64 [N].
    box_instance_ids: int64 [N]. wall_depth_m: float32 [W] depth of the nearest building per column.
    """

    image_bgr: np.ndarray
    label_mask: np.ndarray
    instance_ids: np.ndarray
    boxes_xyxy: np.ndarray
    box_class_ids: np.ndarray
    box_instance_ids: np.ndarray
    wall_depth_m: np.ndarray


def pack_bgrc(bgr: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Pack colours uint8 [..., 3] and classes uint8 [...] into uint32 [...] texels (bytes B, G, R, class
    in memory order), so that one gather or scatter moves a texel's colour and class together."""
    shape = cls.shape
    out = np.empty((*shape, 4), np.uint8)
    out[..., :3] = bgr
    out[..., 3] = cls
    return out.view(np.uint32).reshape(shape)


def unpack(packed: np.ndarray) -> np.ndarray:
    """uint32 [...] packed texels -> uint8 [..., 4] view (B, G, R, class)."""
    return packed.view(np.uint8).reshape(*packed.shape, 4)


TRANSPARENT = 255  # class byte of transparent sprite texels


class _LitBank:
    """A texture bank's texels under one lighting, packed (see ``pack_bgrc``): uint32 [N]; transparent
    texels (alpha 0) carry class TRANSPARENT. Plus the bank's offset/width/height tables."""

    def __init__(self, bank: T.TextureBank, lighting: Lighting) -> None:
        self.offset, self.width, self.height = bank.offset, bank.width, bank.height
        cls = np.where(bank.alpha > 0, bank.cls, TRANSPARENT).astype(np.uint8)
        self.packed = pack_bgrc(_light_texels(lighting, bank.bgr, bank.glow), cls)


def _light_texels(lighting: Lighting, bgr: np.ndarray, glow: np.ndarray) -> np.ndarray:
    """Lit colours of texels: albedo under the drive's light; windows glow at night, lamps always."""
    lit = light_colors(lighting, bgr)
    codes = np.flatnonzero(glow)
    if len(codes):
        g = glow[codes]
        always = T.GLOW_ALWAYS[g]
        strength = np.where(always, 1.0, lighting.night).astype(np.float32)[:, None]
        own = bgr[codes].astype(np.float32)
        target = np.where((g == T.GLOW_SELF)[:, None], own * 1.1, T.GLOW_PALETTE_BGR[g])
        # Lamps keep their own colour by day (the texture holds it) and glow in the palette's at night.
        target = np.where(always[:, None], own * (1 - lighting.night) + T.GLOW_PALETTE_BGR[g] * lighting.night, target)
        mixed = lit[codes].astype(np.float32) * (1 - strength) + target * strength
        lit[codes] = np.clip(mixed, 0, 255).astype(np.uint8)
    return lit


def _shade(texels: np.ndarray, gain: np.ndarray, haze_f: np.ndarray, haze_bgr: np.ndarray) -> np.ndarray:
    """Shade packed texels uint32 [N]: colour * gain * (1 - f) + haze * f, class kept. ``gain`` and
    ``haze_f`` float32 [N]."""
    c = unpack(texels)
    a = (gain * (1.0 - haze_f))[:, None]
    out = c[:, :3].astype(np.float32) * a + haze_bgr[None, :] * haze_f[:, None]
    res = np.empty_like(c)
    res[:, :3] = np.minimum(out, 255.0)
    res[:, 3] = c[:, 3]
    return res.view(np.uint32).reshape(-1)


class Renderer:
    """Renders views of one city under one lighting with one camera.

    Args:
        city: the city.
        camera: intrinsics.
        lighting: the drive's lighting.
        max_object_distance_m: objects (props and moving things) farther than this are not drawn.
        min_object_px: objects whose projected height is below this many pixels are not drawn (level of
            detail: a 4-pixel pedestrian is noise, and skipping them keeps the frame rate).
        sky_seed: seed of the clouds.
    """

    def __init__(self, city: City, camera: PinholeCamera, lighting: Lighting, *, max_object_distance_m: float = 160.0,
                 min_object_px: float = 4.0, sky_seed: int = 0) -> None:
        self.city = city
        self.camera = camera
        self.lighting = lighting
        self.max_object_distance_m = float(max_object_distance_m)
        self.min_object_px = float(min_object_px)
        W, H = camera.width_px, camera.height_px
        self.slopes = camera.column_slopes().astype(np.float64)  # x/z of each column's ray
        self.rows = np.arange(H, dtype=np.float64) + 0.5  # row centres
        self.cols = np.arange(W)
        self.horizon_row = int(np.searchsorted(self.rows, camera.cy_px, side="right"))  # first row below
        self.facades = _LitBank(city.facade_bank, lighting)
        self.sprites = _LitBank(city.sprite_bank, lighting)
        ground = city.ground
        self.ground = ground
        self.ground_packed = []
        for lev, bgr in enumerate(ground.bgr):
            h, w = bgr.shape[:2]
            cls = ground.cls if lev == 0 else cv2.resize(ground.cls, (w, h), interpolation=cv2.INTER_NEAREST)
            self.ground_packed.append(pack_bgrc(light_colors(lighting, bgr), cls).reshape(-1))
        self.haze_bgr = np.asarray(lighting.haze_bgr, np.float32)
        rng = np.random.default_rng([sky_seed, 0x5E7])
        cloudiness = 0.85 if lighting.overcast else float(rng.uniform(0.2, 0.55))
        sky = T.sky_panorama(rng, lighting.sky_zenith_bgr, lighting.sky_horizon_bgr, lighting.sun_azimuth_deg,
                             lighting.sun_elevation_deg, max(1, self.horizon_row), camera.fy_px, camera.cy_px, cloudiness)
        self.sky_packed = pack_bgrc(sky, np.full(sky.shape[:2], C.SKY, np.uint8))
        # Face shading of the four axis-aligned building faces (normals N, E, S, W).
        self.face_gain_nesw = lighting.face_gain(np.array([0.0, 90.0, 180.0, 270.0]))
        b = city.buildings
        self._b_cx, self._b_cy = 0.5 * (b.x0 + b.x1), 0.5 * (b.y0 + b.y1)
        self._b_r = 0.5 * np.hypot(b.x1 - b.x0, b.y1 - b.y0)
        self._ground_rows_cache: dict[float, tuple[np.ndarray, list[tuple[int, int, int]]]] = {}
        self._tan_half = (W / 2.0) / camera.fx_px

    # -------------------------------------------------------------------------------------- frame

    def render(self, pose: CameraPose, objects: list[Billboard | Box] | None = None, *, min_box_pixels: int = 12
               ) -> RenderResult:
        """Render the view from ``pose``: the city, its props, and the given moving ``objects``."""
        cam = self.camera
        H, W = cam.height_px, cam.width_px
        fb = np.empty((H, W), np.uint32)  # packed colour + class, see pack_bgrc
        inst = np.zeros((H, W), np.int32)
        fwd, right = pose.forward_en, pose.right_en
        dirs = fwd[None, :] + self.slopes[:, None] * right[None, :]  # (W, 2) ray per column, unit depth
        self._draw_sky(fb, pose)
        self._draw_ground(fb, pose, dirs)
        wall_z = self._draw_buildings(fb, pose, dirs)
        boxes, box_cls, box_ids = self._draw_objects(fb, inst, pose, wall_z, objects or [], min_box_pixels)
        fb8 = unpack(fb)
        return RenderResult(np.ascontiguousarray(fb8[:, :, :3]), np.ascontiguousarray(fb8[:, :, 3]), inst, boxes, box_cls,
                            box_ids, wall_z)

    def _draw_sky(self, fb: np.ndarray, pose: CameraPose) -> None:
        j0 = self.horizon_row
        if j0 <= 0:
            return
        az = (pose.heading_deg + np.degrees(np.arctan(self.slopes))) % 360.0
        col = (az * (T.SKY_AZIMUTH_BINS / 360.0)).astype(np.int64) % T.SKY_AZIMUTH_BINS
        fb[:j0] = np.take(self.sky_packed[:j0], col, axis=1)

    def _ground_rows(self, height_m: float) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Depth of each row below the horizon (float64 [R]) and row ranges per ground mip level."""
        cached = self._ground_rows_cache.get(height_m)
        if cached is not None:
            return cached
        cam = self.camera
        z = height_m * cam.fy_px / (self.rows[self.horizon_row:] - cam.cy_px)
        # A pixel's ground footprint across the image is z / fx: use the level whose texels match it
        # (along the view it is longer still; across is what aliases the lane markings first).
        footprint = z / cam.fx_px / self.ground.metres_per_texel
        level = np.clip(np.floor(np.log2(np.maximum(footprint, 1e-6))), 0, len(self.ground_packed) - 1).astype(int)
        ranges = []
        start = 0
        for k in range(1, len(level) + 1):
            if k == len(level) or level[k] != level[start]:
                ranges.append((start, k, int(level[start])))
                start = k
        self._ground_rows_cache[height_m] = (z, ranges)
        return z, ranges

    def _draw_ground(self, fb: np.ndarray, pose: CameraPose, dirs: np.ndarray) -> None:
        j0 = self.horizon_row
        if j0 >= self.camera.height_px:
            return
        z, ranges = self._ground_rows(pose.height_m)
        g = self.ground
        out = fb[j0:]
        for r0, r1, lev in ranges:
            res = g.metres_per_texel * (1 << lev)
            gh, gw = g.bgr[lev].shape[:2]
            zz = z[r0:r1, None]
            # Where each pixel's ray meets the road plane, in texels of this level.
            c = ((pose.east_m - g.east0_m) + zz * dirs[None, :, 0]) * (1.0 / res)
            r = ((g.north0_m - pose.north_m) - zz * dirs[None, :, 1]) * (1.0 / res)
            ci = np.clip(c, 0, gw - 1).astype(np.int64)
            ri = np.clip(r, 0, gh - 1).astype(np.int64)
            out[r0:r1] = self.ground_packed[lev][ri * gw + ci]
        # Haze on the far rows only (where it shows at all).
        f = haze_fraction(self.lighting, z)
        far = np.flatnonzero(f > 0.004)
        if len(far):
            a, b = int(far[0]), int(far[-1]) + 1
            band = out[a:b]
            n = band.size
            shaded = _shade(band.reshape(-1), np.ones(n, np.float32),
                            np.repeat(f[a:b], band.shape[1]).astype(np.float32), self.haze_bgr)
            out[a:b] = shaded.reshape(band.shape)

    def _draw_buildings(self, fb: np.ndarray, pose: CameraPose, dirs: np.ndarray) -> np.ndarray:
        """Draw the building walls; returns the nearest wall depth per column, float32 [W] (inf: none)."""
        cam = self.camera
        H, W = cam.height_px, cam.width_px
        b = self.city.buildings
        # Keep the buildings that can be in view (in front, within the field of view).
        de, dn = self._b_cx - pose.east_m, self._b_cy - pose.north_m
        f, r = pose.forward_en, pose.right_en
        zc, xc = de * f[0] + dn * f[1], de * r[0] + dn * r[1]
        keep = np.flatnonzero((zc > -self._b_r) & (np.abs(xc) < zc * self._tan_half + self._b_r * 1.5))
        if len(keep) == 0:
            return np.full(W, INF, np.float32)
        x0, x1, y0, y1 = b.x0[keep], b.x1[keep], b.y0[keep], b.y1[keep]
        dx, dy = dirs[:, 0], dirs[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_dx = np.where(np.abs(dx) > 1e-12, 1.0 / dx, 1e12)
            inv_dy = np.where(np.abs(dy) > 1e-12, 1.0 / dy, 1e12)
        # Slab test of every column's ray against every footprint: t = distance along the ray in units
        # of depth (the rays have unit forward component), so t is the depth z of the hit.
        tx0 = (x0[None, :] - pose.east_m) * inv_dx[:, None]
        tx1 = (x1[None, :] - pose.east_m) * inv_dx[:, None]
        ty0 = (y0[None, :] - pose.north_m) * inv_dy[:, None]
        ty1 = (y1[None, :] - pose.north_m) * inv_dy[:, None]
        txmin = np.minimum(tx0, tx1)
        tymin = np.minimum(ty0, ty1)
        t_in = np.maximum(txmin, tymin)
        t_out = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
        t = np.where((t_in < t_out) & (t_in > NEAR_M), t_in, np.inf)  # (W, B)
        k = min(WALL_LAYERS, t.shape[1])
        part = np.argpartition(t, k - 1, axis=1)[:, :k] if t.shape[1] > k else np.argsort(t, axis=1)[:, :k]
        tk = np.take_along_axis(t, part, axis=1)
        order = np.argsort(tk, axis=1)
        part = np.take_along_axis(part, order, axis=1).T  # (k, W) building (in keep) per layer and column
        tk = np.take_along_axis(tk, order, axis=1).T  # (k, W) depth per layer and column
        hit = np.isfinite(tk)
        zs = np.where(hit, tk, 1.0)
        gb = keep[part]  # building index
        height = b.height_m[gb]
        # Rows each layer covers: nearest layer fully, farther ones only above the nearer walls' tops.
        top = cam.cy_px - cam.fy_px * (height - pose.height_m) / zs
        bottom = cam.cy_px + cam.fy_px * pose.height_m / zs
        j_top = np.where(hit, np.clip(np.ceil(top - 0.5), 0, H), H).astype(np.int64)
        j_bot = np.where(hit, np.clip(np.ceil(bottom - 0.5), 0, H), H).astype(np.int64)
        for layer in range(1, k):
            j_bot[layer] = np.minimum(j_bot[layer], j_top[:layer].min(axis=0))
        lengths = np.maximum(j_bot - j_top, 0).reshape(-1)
        n_px = int(lengths.sum())
        if n_px:
            # Per (layer, column) pair: the face hit, u along it, texture and mip level, shading, haze.
            cols = np.broadcast_to(self.cols, (k, W))
            x_face = txmin[cols, part] >= tymin[cols, part]
            dxk, dyk = np.broadcast_to(dx, (k, W)), np.broadcast_to(dy, (k, W))
            he, hn = pose.east_m + zs * dxk, pose.north_m + zs * dyk
            # u along the face, left to right as seen from outside; face normal index N=0 E=1 S=2 W=3.
            u_m = np.where(x_face, np.where(dxk > 0, b.y1[gb] - hn, hn - b.y0[gb]),
                           np.where(dyk > 0, he - b.x0[gb], b.x1[gb] - he))
            normal = np.where(x_face, np.where(dxk > 0, 3, 1), np.where(dyk > 0, 2, 0))
            tex = b.texture[gb]
            tpm = T.FACADE_TEXELS_PER_M
            lev = np.clip(np.floor(np.log2(np.maximum(zs / cam.fx_px * tpm, 1e-6))), 0,
                          self.facades.offset.shape[0] - 1).astype(np.int64)
            off, tw, th = self.facades.offset[lev, tex], self.facades.width[lev, tex], self.facades.height[lev, tex]
            w0 = self.facades.width[0, tex]
            u = (np.mod(np.floor(u_m * tpm).astype(np.int64), w0) * tw) // w0
            # Texture row of image row j: v = (height - h_world(j)) * th / height, linear in j:
            # v = v0 + j * dv with h_world(j) = cam_h - (j + 0.5 - cy) z / fy.
            v_scale = th / height
            dv = zs / cam.fy_px * v_scale
            v0 = (height - pose.height_m + (0.5 - cam.cy_px) * zs / cam.fy_px) * v_scale
            fz = haze_fraction(self.lighting, zs)
            gain = self.face_gain_nesw[normal]
            # Ragged column segments -> pixels: repeat each pair's values over its rows.
            starts = np.cumsum(lengths) - lengths
            within = np.arange(n_px) - np.repeat(starts, lengths)
            jj = np.repeat(j_top.reshape(-1), lengths) + within

            def rep(a: np.ndarray) -> np.ndarray:
                return np.repeat(a.reshape(-1), lengths)

            v = (rep(v0.astype(np.float32)) + jj.astype(np.float32) * rep(dv.astype(np.float32))).astype(np.int64)
            np.clip(v, 0, rep(th - 1), out=v)
            texels = self.facades.packed[rep(off + u) + v * rep(tw)]
            flat = jj * W + rep(cols)
            fb.reshape(-1)[flat] = _shade(texels, rep(gain), rep(fz), self.haze_bgr)
        return tk[0].astype(np.float32)

    # -------------------------------------------------------------------------------------- objects

    def _candidates(self, pose: CameraPose, wall_z: np.ndarray, objects: list[Billboard | Box]) -> list[Billboard | Box]:
        """Props and moving objects that can show: near enough, in the field of view, tall enough on
        screen (level of detail), and not behind the walls over every column they could cover."""
        cam = self.camera
        c = self.city
        f, r = pose.forward_en, pose.right_en
        de, dn = c.props_east_m - pose.east_m, c.props_north_m - pose.north_m
        zc, xc = de * f[0] + dn * f[1], de * r[0] + dn * r[1]
        rad = c.props_radius_m
        near = np.flatnonzero((zc > -rad) & (zc < self.max_object_distance_m + rad) & (np.abs(xc) < zc * self._tan_half + rad * 1.5))
        items = [c.props[i] for i in near] + list(objects)
        if not items:
            return []
        pos = np.array([(o.east_m, o.north_m, o.radius_m, o.base_m + o.height_m) for o in items])
        de, dn = pos[:, 0] - pose.east_m, pos[:, 1] - pose.north_m
        zc, xc = de * f[0] + dn * f[1], de * r[0] + dn * r[1]
        rad = pos[:, 2]
        z_near = np.maximum(zc - rad, NEAR_M)
        px_h = cam.fy_px * pos[:, 3] / np.maximum(zc + rad, NEAR_M)
        i_lo = np.clip(np.floor(cam.cx_px + cam.fx_px * (xc - rad) / z_near), 0, cam.width_px - 1).astype(np.int64)
        i_hi = np.clip(np.ceil(cam.cx_px + cam.fx_px * (xc + rad) / z_near), 0, cam.width_px - 1).astype(np.int64)
        straddles = zc - rad < NEAR_M  # reaches behind the near plane: could cover the whole side
        i_hi = np.where(straddles & (xc > 0), cam.width_px - 1, i_hi)
        i_lo = np.where(straddles & (xc < 0), 0, i_lo)
        i_hi = np.maximum(i_hi, i_lo) + 1
        # Deepest wall over [i_lo, i_hi): reduceat over interleaved bounds, keeping the even entries.
        walls = np.append(np.where(np.isfinite(wall_z), wall_z, np.float32(1e9)), np.float32(0.0))
        deepest = np.maximum.reduceat(walls, np.stack([i_lo, i_hi], 1).reshape(-1))[::2]
        ok = ((np.hypot(zc, xc) < self.max_object_distance_m) & (zc + rad > NEAR_M) & (px_h >= self.min_object_px)
              & (z_near < deepest))
        return [items[k] for k in np.flatnonzero(ok)]

    def _billboard_columns(self, pose: CameraPose, wall_z: np.ndarray, bbs: list[Billboard]) -> dict[str, np.ndarray]:
        """(object, column) pairs of camera-facing billboards: the sprite is a screen-parallel rectangle
        at the depth of its foot point."""
        cam = self.camera
        W = cam.width_px
        rgt = pose.right_en
        arr = np.array([(o.east_m, o.north_m, o.base_m, o.base_m + o.height_m, o.width_m,
                         o.texture_alt if (o.texture_alt >= 0 and o.alt_dir_en[0] * rgt[0] + o.alt_dir_en[1] * rgt[1] > 0)
                         else o.texture) for o in bbs], np.float64)
        de, dn = arr[:, 0] - pose.east_m, arr[:, 1] - pose.north_m
        f = pose.forward_en
        z = de * f[0] + dn * f[1]
        x = de * rgt[0] + dn * rgt[1]
        zs = np.maximum(z, NEAR_M)
        u_l = cam.cx_px + cam.fx_px * (x - 0.5 * arr[:, 4]) / zs
        u_r = cam.cx_px + cam.fx_px * (x + 0.5 * arr[:, 4]) / zs
        i0 = np.clip(np.ceil(u_l - 0.5), 0, W).astype(np.int64)
        i1 = np.clip(np.ceil(u_r - 0.5), 0, W).astype(np.int64)
        # Thinner than a pixel: keep one column, so that distant posts do not flicker away.
        ic = np.floor(cam.cx_px + cam.fx_px * x / zs).astype(np.int64)
        thin = (i1 <= i0) & (ic >= 0) & (ic < W)
        i0, i1 = np.where(thin, ic, i0), np.where(thin, ic + 1, i1)
        counts = np.where(z > NEAR_M + 0.2, np.maximum(i1 - i0, 0), 0)
        q = np.repeat(np.arange(len(bbs)), counts)
        col = np.arange(len(q)) - np.repeat(np.cumsum(counts) - counts, counts) + i0[q]
        tex = arr[:, 5].astype(np.int64)[q]
        tw = self.sprites.width[0, tex]
        u = np.clip(((col + 0.5 - u_l[q]) * (tw / np.maximum(u_r - u_l, 1e-9)[q])).astype(np.int64), 0, tw - 1)
        zq = z[q]
        keep = zq < wall_z[col]
        return {"obj": q[keep], "col": col[keep], "z": zq[keep], "tex": tex[keep], "u": u[keep],
                "base": arr[q[keep], 2], "top": arr[q[keep], 3], "gain": np.ones(int(keep.sum()), np.float32)}

    def _box_columns(self, pose: CameraPose, wall_z: np.ndarray, boxes: list[Box]) -> dict[str, np.ndarray]:
        """(object, column) pairs of textured boxes: every column's ray against every box (slab test in
        each box's frame), keeping the face hit first."""
        arr = np.array([(o.east_m, o.north_m, math.radians(o.heading_deg), 0.5 * o.length_m, 0.5 * o.width_m, o.base_m,
                         o.base_m + o.height_m, o.texels_per_m, *o.faces) for o in boxes], np.float64)
        sh, ch = np.sin(arr[:, 2]), np.cos(arr[:, 2])
        hl, hw = arr[:, 3:4], arr[:, 4:5]
        fe, fn = pose.forward_en
        re_, rn = pose.right_en
        # Box frame: +x along the heading (sin h, cos h), +y to its left (-cos h, sin h).
        pe, pn = pose.east_m - arr[:, 0], pose.north_m - arr[:, 1]
        ox, oy = (pe * sh + pn * ch)[:, None], (-pe * ch + pn * sh)[:, None]
        dlx = (fe * sh + fn * ch)[:, None] + (re_ * sh + rn * ch)[:, None] * self.slopes[None, :]
        dly = (-fe * ch + fn * sh)[:, None] + (-re_ * ch + rn * sh)[:, None] * self.slopes[None, :]
        inv_x = 1.0 / np.where(np.abs(dlx) > 1e-12, dlx, 1e-12)
        inv_y = 1.0 / np.where(np.abs(dly) > 1e-12, dly, 1e-12)
        tx0, tx1 = (-hl - ox) * inv_x, (hl - ox) * inv_x
        ty0, ty1 = (-hw - oy) * inv_y, (hw - oy) * inv_y
        txmin, tymin = np.minimum(tx0, tx1), np.minimum(ty0, ty1)
        t_in = np.maximum(txmin, tymin)
        t_out = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
        outside = (np.abs(ox) > hl) | (np.abs(oy) > hw)  # the camera is not inside the box
        obj, col = np.nonzero((t_in < t_out) & (t_in > NEAR_M) & (t_in < wall_z[None, :]) & outside)
        t = t_in[obj, col]
        lx, ly = dlx[obj, col], dly[obj, col]
        x_face = txmin[obj, col] >= tymin[obj, col]
        px, py = ox[obj, 0] + t * lx, oy[obj, 0] + t * ly
        hlq, hwq = hl[obj, 0], hw[obj, 0]
        # Face 0 front (+x), 1 rear, 2 left (+y), 3 right; u runs left to right as seen from outside.
        face = np.where(x_face, np.where(lx < 0, 0, 1), np.where(ly < 0, 2, 3))
        u_m = np.choose(face, (py + hwq, hwq - py, hlq - px, px + hlq))
        tex = arr[obj, 8 + face].astype(np.int64)
        tw = self.sprites.width[0, tex]
        u = np.mod(np.floor(u_m * arr[obj, 7]).astype(np.int64), tw)
        normal_deg = np.degrees(arr[obj, 2]) + np.array([0.0, 180.0, -90.0, 90.0])[face]
        return {"obj": obj, "col": col, "z": t, "tex": tex, "u": u, "base": arr[obj, 5], "top": arr[obj, 6],
                "gain": self.lighting.face_gain(normal_deg)}

    def _draw_objects(self, fb: np.ndarray, inst: np.ndarray, pose: CameraPose, wall_z: np.ndarray,
                      objects: list[Billboard | Box], min_box_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw props and moving objects with a per-pixel depth test; return the boxes of the visible
        detectable objects (see RenderResult)."""
        cam = self.camera
        H, W = cam.height_px, cam.width_px
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        items = self._candidates(pose, wall_z, objects)
        bbs = [o for o in items if not isinstance(o, Box)]
        bxs = [o for o in items if isinstance(o, Box)]
        items = bbs + bxs  # object index = position in this list
        parts = []
        if bbs:
            parts.append(self._billboard_columns(pose, wall_z, bbs))
        if bxs:
            part = self._box_columns(pose, wall_z, bxs)
            part["obj"] = part["obj"] + len(bbs)
            parts.append(part)
        if not parts:
            return empty
        pc = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if len(pc["obj"]) == 0:
            return empty
        # Rows each (object, column) pair covers: world heights base..top at its depth.
        z = pc["z"]
        j_top = np.clip(np.ceil(cam.cy_px - cam.fy_px * (pc["top"] - pose.height_m) / z - 0.5), 0, H).astype(np.int64)
        j_bot = np.clip(np.ceil(cam.cy_px - cam.fy_px * (pc["base"] - pose.height_m) / z - 0.5), 0, H).astype(np.int64)
        lengths = np.maximum(j_bot - j_top, 0)
        q = np.repeat(np.arange(len(lengths)), lengths)
        if len(q) == 0:
            return empty
        jj = np.arange(len(q)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + j_top[q]
        tex = pc["tex"][q]
        bank = self.sprites
        tw, th = bank.width[0, tex], bank.height[0, tex]
        zq = z[q]
        top = pc["top"][q]
        h_world = pose.height_m - (jj + 0.5 - cam.cy_px) * (zq / cam.fy_px)
        v = np.clip(((top - h_world) * (th / (top - pc["base"][q]))).astype(np.int64), 0, th - 1)
        texels = bank.packed[bank.offset[0, tex] + v * tw + pc["u"][q]]
        opaque = np.flatnonzero(unpack(texels)[:, 3] != TRANSPARENT)
        q, jj, zq, texels = q[opaque], jj[opaque], zq[opaque], texels[opaque]
        pix = jj * W + pc["col"][q]
        obj = pc["obj"][q]
        # Per-pixel depth test among the objects (walls were tested per column already); a tiny
        # per-object offset breaks exact ties deterministically.
        key = zq + obj * 1e-9
        zbuf = np.full(H * W, np.inf)
        np.minimum.at(zbuf, pix, key)
        win = np.flatnonzero(key == zbuf[pix])
        q, pix, obj, texels = q[win], pix[win], obj[win], texels[win]
        zw = z[q]
        fb.reshape(-1)[pix] = _shade(texels, pc["gain"][q].astype(np.float32), haze_fraction(self.lighting, zw),
                                     self.haze_bgr)
        ids = np.array([o.instance_id for o in items], np.int32)
        inst.reshape(-1)[pix] = ids[obj]
        # Boxes: the extent of each detectable object's winning pixels (nothing is drawn after them).
        n = len(items)
        counts = np.bincount(obj, minlength=n)
        cols, rows = pix % W, pix // W
        x1, y1 = np.full(n, W, np.int64), np.full(n, H, np.int64)
        x2, y2 = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        np.minimum.at(x1, obj, cols)
        np.minimum.at(y1, obj, rows)
        np.maximum.at(x2, obj, cols)
        np.maximum.at(y2, obj, rows)
        cls = np.array([o.class_id for o in items], np.int64)
        det = np.flatnonzero(np.isin(cls, C.DETECTABLE_CLASSES) & (counts >= min_box_pixels))
        if len(det) == 0:
            return empty
        boxes = np.stack([x1[det], y1[det], x2[det] + 1, y2[det] + 1], 1).astype(np.float32)
        return boxes, cls[det], ids[det].astype(np.int64)
