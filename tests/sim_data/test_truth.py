"""Ground truth agrees with the rendered pixels: every labelled pixel got its colour from something of
that class, every box is the tight box of one object's visible pixels, and every visible object that is
big enough has its box."""

from __future__ import annotations

import numpy as np
import pytest

from perception import classes as C
from sim_data import SimConfig, SimDrive
from sim_data.render import unpack

SPRITE_CLASSES = (C.POLE, C.TREE, C.SIGN, C.FENCE, C.CAR, C.PEDESTRIAN, C.BICYCLIST, C.UNLABELLED)


@pytest.fixture(scope="module")
def busy_frames():
    """Ten moments of a heavy-traffic drive, each as (simulation, render result)."""
    drive = SimDrive(SimConfig(blocks=(2, 1), route="test_loop", traffic="heavy", width_px=160, height_px=120,
                               overcast=False))
    sim = drive.simulation()
    out = []
    for _ in range(10):
        sim.traffic.step(1.5)
        out.append(sim.render())
    return sim, out


def test_every_box_is_the_tight_box_of_one_visible_object(busy_frames):
    _, results = busy_frames
    n_boxes = 0
    for res in results:
        for (x1, y1, x2, y2), cid, iid in zip(res.boxes_xyxy, res.box_class_ids, res.box_instance_ids, strict=True):
            ys, xs = np.nonzero(res.instance_ids == iid)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            assert np.all(res.label_mask[ys, xs] == cid)  # the box's pixels carry its class
            assert cid in C.DETECTABLE_CLASSES
            n_boxes += 1
    assert n_boxes > 20


def test_every_visible_detectable_object_has_a_box(busy_frames):
    _, results = busy_frames
    for res in results:
        ids, counts = np.unique(res.instance_ids[res.instance_ids > 0], return_counts=True)
        boxed = set(res.box_instance_ids.tolist())
        for iid, count in zip(ids, counts, strict=True):
            cls = np.unique(res.label_mask[res.instance_ids == iid])
            assert len(cls) == 1  # one object, one class
            if cls[0] in C.DETECTABLE_CLASSES and count >= 12:
                assert iid in boxed


def test_boxes_cover_the_classes_people_care_about(busy_frames):
    _, results = busy_frames
    seen = {int(c) for res in results for c in res.box_class_ids}
    assert {C.CAR, C.SIGN} <= seen


def _recoloured(packed: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    """Packed texels with every colour replaced and the class bytes kept."""
    out = packed.copy()
    u = unpack(out)
    u[..., 0], u[..., 1], u[..., 2] = bgr
    return out


@pytest.mark.parametrize(
    ("part", "classes"),
    [("sky", (C.SKY,)), ("ground", (C.ROAD, C.SIDEWALK)), ("facades", (C.BUILDING,)), ("sprites", SPRITE_CLASSES)],
)
def test_each_pixel_takes_colour_and_label_from_the_same_surface(busy_frames, part, classes):
    """Repaint one kind of surface: exactly the pixels labelled with its classes change colour."""
    sim, _ = busy_frames
    r = sim.renderer
    pose = sim.pose()
    before = sim.render(pose)
    saved = {"sky": r.sky_packed, "ground": list(r.ground_packed), "facades": r.facades.packed, "sprites": r.sprites.packed}
    paint = (255, 0, 255)
    try:
        if part == "sky":
            r.sky_packed = _recoloured(r.sky_packed, paint)
        elif part == "ground":
            r.ground_packed = [_recoloured(g, paint) for g in r.ground_packed]
        elif part == "facades":
            r.facades.packed = _recoloured(r.facades.packed, paint)
        else:
            r.sprites.packed = _recoloured(r.sprites.packed, paint)
        after = sim.render(pose)
    finally:
        r.sky_packed, r.ground_packed = saved["sky"], saved["ground"]
        r.facades.packed, r.sprites.packed = saved["facades"], saved["sprites"]
    np.testing.assert_array_equal(after.label_mask, before.label_mask)
    changed = np.any(after.image_bgr != before.image_bgr, axis=2)
    labelled = np.isin(before.label_mask, classes)
    assert labelled.any()
    np.testing.assert_array_equal(changed, labelled)
