"""The class table is CamVid's, in CamVid's order, and stays light to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception import classes as C

CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"


def test_the_table_is_camvids_twelve_labels():
    assert C.CLASS_NAMES == ("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car",
                             "pedestrian", "bicyclist", "unlabelled")
    assert [C.SKY, C.BUILDING, C.POLE, C.ROAD, C.SIDEWALK, C.TREE, C.SIGN, C.FENCE, C.CAR, C.PEDESTRIAN,
            C.BICYCLIST, C.UNLABELLED] == list(range(12))
    assert (C.NUM_LABELS, C.NUM_CLASSES, C.IGNORE_INDEX) == (12, 11, C.UNLABELLED)
    assert C.DETECTABLE_CLASSES == (C.SIGN, C.CAR, C.PEDESTRIAN, C.BICYCLIST)
    assert C.is_detectable(C.CAR) and not C.is_detectable(C.POLE)


def test_names_and_ids_round_trip_and_bad_ones_say_so():
    for k, name in enumerate(C.CLASS_NAMES):
        assert C.class_id(name) == k and C.class_name(k) == name
    with pytest.raises(ValueError, match="unknown class 'truck'"):
        C.class_id("truck")
    with pytest.raises(ValueError, match="outside"):
        C.class_name(12)


def test_colorize_uses_the_camvid_palette():
    mask = np.array([[C.SKY, C.ROAD], [C.CAR, 200]], np.uint8)
    rgb = C.colorize(mask, bgr=False)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (128, 128, 128) and tuple(rgb[0, 1]) == (128, 64, 128)
    assert tuple(rgb[1, 0]) == (64, 0, 128)
    assert tuple(rgb[1, 1]) == (0, 0, 0)  # out of the table: drawn as unlabelled
    np.testing.assert_array_equal(C.colorize(mask), rgb[..., ::-1])
    assert len({tuple(c) for c in C.PALETTE_RGB}) == 12  # every class its own colour


def test_camvid_annotations_use_this_table():
    # CI and every checkout keep the shared data next to the repository: absent data is a failure
    assert CAMVID.is_dir(), f"{CAMVID} is missing: the shared data belongs at ../shared/data next to the repository"
    files = sorted((CAMVID / "trainannot").glob("*.png"))[:20]
    assert files
    seen = set()
    for f in files:
        ids = np.unique(cv2.imread(str(f), cv2.IMREAD_UNCHANGED))
        assert ids.max() < C.NUM_LABELS
        seen.update(ids.tolist())
    assert {C.SKY, C.BUILDING, C.ROAD, C.CAR} <= seen


def test_importing_the_table_pulls_in_neither_torch_nor_zmq():
    code = "import sys, perception.classes; print('torch' in sys.modules, 'zmq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
