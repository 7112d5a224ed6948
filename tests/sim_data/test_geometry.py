"""The renderer draws the world where the pinhole camera projects it: objects, walls and road paint
land on the pixels their 3D points project to."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception import classes as C
from sim_data.camera import CameraPose, PinholeCamera
from sim_data.city import CROSSWALK_GAP_M, CROSSWALK_M, Billboard, Box


def _street_pose(city, heading_deg: float = 0.0) -> CameraPose:
    """In the first lane of the middle avenue, 20 m north of the first street."""
    av = city.avenues[1]
    return CameraPose(av.center_m + av.lane_offset_m(0), city.streets[0].center_m + 20.0, heading_deg, 1.5)


def _opaque_faces(city) -> tuple[int, int, int, int]:
    """Texture ids of the signal heads' back and sides: fully opaque, class sign."""
    faces = city.signals[0].box.faces
    return (faces[1], faces[1], faces[2], faces[3])


def _pixel_span(lo: float, hi: float) -> tuple[int, int]:
    """Pixels whose centres lie in [lo, hi): indices ceil(lo - 0.5) .. ceil(hi - 0.5) - 1."""
    return math.ceil(lo - 0.5), math.ceil(hi - 0.5)


def test_camera_from_hfov_and_projection():
    cam = PinholeCamera.from_hfov(320, 240, 90.0)
    assert cam.fx_px == pytest.approx(160.0)
    assert (cam.cx_px, cam.cy_px) == (160.0, 120.0)
    assert cam.hfov_deg == pytest.approx(90.0)
    pose = CameraPose(10.0, 20.0, 90.0, 1.5)  # looking east
    # 10 m east, 2 m south (= to the camera's right), on the ground.
    uv, z = pose.project(cam, 20.0, 18.0, 0.0)
    assert z[0] == pytest.approx(10.0)
    assert uv[0, 0] == pytest.approx(160.0 + 160.0 * 2.0 / 10.0)
    assert uv[0, 1] == pytest.approx(120.0 + 160.0 * 1.5 / 10.0)
    # A point at the camera's height on the optical axis is the principal point.
    uv, _ = pose.project(cam, 30.0, 20.0, 1.5)
    np.testing.assert_allclose(uv[0], (160.0, 120.0))


def test_billboard_covers_exactly_the_pixels_its_corners_project_to(small_city, bare_renderer, camera):
    pose = _street_pose(small_city)
    right_m, ahead_m, base_m, width_m, height_m = 1.2, 10.0, 0.2, 1.0, 2.0
    obj = Billboard(pose.east_m + right_m, pose.north_m + ahead_m, base_m, width_m, height_m,
                    _opaque_faces(small_city)[0], C.SIGN, 4242)
    res = bare_renderer.render(pose, [obj])
    # Project the rectangle's corners with the camera model, independently of the renderer.
    east = pose.east_m + right_m + np.array([-0.5, 0.5]) * width_m
    uv, _ = pose.project(camera, east, np.full(2, obj.north_m), np.array([base_m + height_m, base_m]))
    x1, x2 = _pixel_span(uv[0, 0], uv[1, 0])
    y1, y2 = _pixel_span(uv[0, 1], uv[1, 1])
    ys, xs = np.nonzero(res.instance_ids == 4242)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (x1, x2, y1, y2)
    assert len(xs) == (x2 - x1) * (y2 - y1)  # a full rectangle: nothing in front of it
    assert np.all(res.label_mask[ys, xs] == C.SIGN)
    k = list(res.box_instance_ids).index(4242)
    np.testing.assert_array_equal(res.boxes_xyxy[k], [x1, y1, x2, y2])
    assert res.box_class_ids[k] == C.SIGN


@pytest.mark.parametrize("yaw_deg", [0.0, 30.0, 90.0, 135.0])
def test_oriented_box_silhouette_matches_its_projected_corners(small_city, bare_renderer, camera, yaw_deg):
    pose = _street_pose(small_city)
    box = Box(pose.east_m + 2.0, pose.north_m + 14.0, yaw_deg, 4.0, 1.8, 0.3, 1.6, _opaque_faces(small_city), 40.0,
              C.SIGN, 777)
    res = bare_renderer.render(pose, [box])
    h = math.radians(yaw_deg)
    fwd, left = np.array([math.sin(h), math.cos(h)]), np.array([-math.cos(h), math.sin(h)])
    corners = [np.array([box.east_m, box.north_m]) + sx * 2.0 * fwd + sy * 0.9 * left for sx in (-1, 1) for sy in (-1, 1)]
    e = np.array([c[0] for c in corners] * 2)
    n = np.array([c[1] for c in corners] * 2)
    up = np.array([0.3] * 4 + [1.9] * 4)
    uv, _ = pose.project(camera, e, n, up)
    ys, xs = np.nonzero(res.instance_ids == 777)
    # The silhouette is the hull of the projected corners; pixel centres decide, so allow one pixel.
    assert abs(xs.min() - uv[:, 0].min()) <= 1.0 and abs(xs.max() + 1 - uv[:, 0].max()) <= 1.0
    assert abs(ys.min() - uv[:, 1].min()) <= 1.0 and abs(ys.max() + 1 - uv[:, 1].max()) <= 1.0
    # Every pixel centre inside the hull of the projected corners belongs to the box, and no other.
    import cv2

    hull = cv2.convexHull(uv.astype(np.float32))
    inside = np.array([[cv2.pointPolygonTest(hull, (x + 0.5, y + 0.5), True) for x in range(camera.width_px)]
                       for y in range(camera.height_px)])
    drawn = res.instance_ids == 777
    assert np.all(drawn[inside > 0.75]) and not np.any(drawn[inside < -0.75])


def _first_wall_hit(city, pose: CameraPose, slope: float) -> tuple[float, float]:
    """Brute force: depth and height of the first building the ray of a column meets."""
    b = city.buildings
    d = pose.forward_en + slope * pose.right_en
    best = (math.inf, 0.0)
    for k in range(len(b)):
        t0, t1 = 0.0, math.inf
        for o, dd, lo, hi in ((pose.east_m, d[0], b.x0[k], b.x1[k]), (pose.north_m, d[1], b.y0[k], b.y1[k])):
            if abs(dd) < 1e-12:
                if not lo <= o <= hi:
                    t0, t1 = 1.0, 0.0
                continue
            a, c = (lo - o) / dd, (hi - o) / dd
            t0, t1 = max(t0, min(a, c)), min(t1, max(a, c))
        if t0 < t1 and t0 < best[0]:
            best = (t0, float(b.height_m[k]))
    return best


@pytest.mark.parametrize("heading_deg", [0.0, 37.0, 90.0, 200.0, 300.0])
def test_walls_stand_where_the_buildings_are(bare_city, bare_renderer, camera, heading_deg):
    pose = _street_pose(bare_city, heading_deg)
    res = bare_renderer.render(pose)
    slopes = camera.column_slopes()
    checked = 0
    for col in range(0, camera.width_px, 7):
        z, height = _first_wall_hit(bare_city, pose, float(slopes[col]))
        if not math.isfinite(z):
            assert not np.isfinite(res.wall_depth_m[col])
            continue
        assert res.wall_depth_m[col] == pytest.approx(z, rel=1e-5)
        # The wall spans the rows between its roof line and its foot, projected at depth z.
        top, foot = _pixel_span(camera.cy_px - camera.fy_px * (height - pose.height_m) / z,
                                camera.cy_px + camera.fy_px * pose.height_m / z)
        top, foot = max(top, 0), min(foot, camera.height_px)
        assert np.all(res.label_mask[top:foot, col] == C.BUILDING), col
        if foot < camera.height_px:  # just below its foot: the ground in front of it
            assert res.label_mask[foot, col] in (C.ROAD, C.SIDEWALK)
        checked += 1
    assert checked > 10


def test_road_paint_and_kerbs_are_where_they_project(bare_city, bare_renderer, camera):
    pose = _street_pose(bare_city)
    av = bare_city.avenues[1]
    res = bare_renderer.render(pose)
    img, mask = res.image_bgr, res.label_mask

    def pixel(east_m: float, ahead_m: float) -> tuple[int, int]:
        uv, _ = pose.project(camera, east_m, pose.north_m + ahead_m, 0.0)
        row, col = int(uv[0, 1]), int(uv[0, 0])  # the pixel holding that point
        assert 0 <= row < camera.height_px and 0 <= col < camera.width_px, "point out of view"
        return row, col

    def yellow(b: int, g: int, r: int) -> bool:
        return r > 150 and g > 110 and b < 110

    # The double yellow centre line (0.14 m lines, centred 0.15 m either side of the centre line; the
    # ground raster has 1/8 m texels, so look in the 3 x 3 pixels around the projection), and no
    # yellow half a metre beside it.
    for ahead in (6.0, 9.0):
        for side in (-0.15, 0.15):
            r, c = pixel(av.center_m + side, ahead)
            assert any(yellow(*img[r + dr, c + dc]) for dr in (-1, 0, 1) for dc in (-1, 0, 1)), (ahead, side)
            assert mask[r, c] == C.ROAD
        for side in (-0.7, 0.7):
            assert not yellow(*img[pixel(av.center_m + side, ahead)])
    # A zebra stripe (0.6 x 3 m) behind the camera, seen looking back south: its centre is white.
    back = CameraPose(pose.east_m, pose.north_m, 180.0, pose.height_m)
    res_back = bare_renderer.render(back)
    crossing = bare_city.streets[0]
    along = crossing.center_m + crossing.half_road_m + CROSSWALK_GAP_M + 0.5 * CROSSWALK_M
    stripes = np.arange(-av.half_road_m + 0.3, av.half_road_m - 0.3, 1.2) + 0.3  # stripe centres across
    stripe = stripes[np.argmin(np.abs(av.center_m + stripes - pose.east_m))]
    uv, _ = back.project(camera, av.center_m + stripe, along, 0.0)
    b, g, r = (int(v) for v in res_back.image_bgr[int(uv[0, 1]), int(uv[0, 0])])
    assert min(b, g, r) > 170, (b, g, r)
    # Across the kerb: road half a metre inside it, sidewalk half a metre beyond it (both sides).
    for ahead in (20.0, 30.0):
        for sgn in (-1.0, 1.0):
            kerb = av.center_m + sgn * av.half_road_m
            assert mask[pixel(kerb - sgn * 0.5, ahead)] == C.ROAD
            assert mask[pixel(kerb + sgn * 0.6, ahead)] == C.SIDEWALK
    # Along a row, the road/sidewalk boundary sits where the kerb line projects (ground raster: 1/8 m).
    kerb_e = av.center_m + av.half_road_m
    row, _ = pixel(kerb_e, 20.0)
    z = camera.fy_px * pose.height_m / (row + 0.5 - camera.cy_px)
    u_kerb = camera.cx_px + camera.fx_px * (kerb_e - pose.east_m) / z
    first_walk = np.flatnonzero(mask[row, int(camera.cx_px):] == C.SIDEWALK)[0] + int(camera.cx_px)
    assert abs(first_walk - u_kerb) <= 1.0 + camera.fx_px * 0.125 / z
