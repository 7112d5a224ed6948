"""The small drives shipped in sim_data/drives are there, readable, small, and what their recipe makes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from perception import classes as C
from perception.drives import DriveReader
from sim_data import SimDrive
from sim_data.make_drives import DRIVES_DIR, SHIPPED, command


def test_shipped_drives_are_a_few_megabytes():
    sizes = {name: (DRIVES_DIR / f"{name}.mcap").stat().st_size for name in SHIPPED}
    assert sum(sizes.values()) < 8e6, sizes


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_drive_reads_back_with_all_its_truth(name):
    config = SHIPPED[name]
    with DriveReader(DRIVES_DIR / f"{name}.mcap") as drive:
        assert not drive.truncated and drive.errors.total == 0
        meta = drive.metadata
        assert meta.extra["route"] == config.route and meta.extra["gps_is_ground_truth"] is True
        assert (meta.camera.width_px, meta.camera.height_px) == (config.width_px, config.height_px)
        counts = {topic: info.message_count for topic, info in drive.channels.items()}
        n = counts["camera/image"]
        if config.frames is not None:
            assert n == config.frames
        for topic in ("gps/fix", "odometry", "truth/boxes", "truth/segmentation"):
            assert counts[topic] == n
        assert drive.channels["truth/segmentation"].class_names == list(C.CLASS_NAMES)


@pytest.mark.parametrize("name", ["train_small", "kidnap_small"])
def test_shipped_drive_is_what_its_recipe_renders(name):
    """The first frames regenerate identically (masks and GPS are lossless, so compare those)."""
    fresh = list(itertools.islice(SimDrive(SHIPPED[name]), 3))
    with DriveReader(DRIVES_DIR / f"{name}.mcap") as drive:
        masks = list(itertools.islice(drive.label_masks(), 3))
        fixes = list(itertools.islice(drive.fixes(), 3))
    for f, m, g in zip(fresh, masks, fixes, strict=True):
        assert m.header.stamp_ns == f.stamp_ns
        np.testing.assert_array_equal(m.label_mask, f.label_mask)
        assert (g.lat_deg, g.lon_deg) == pytest.approx((f.lat_deg, f.lon_deg), abs=1e-10)


def test_recipes_are_printed_as_cli_commands():
    assert command("train_small").startswith("streetloc sim --blocks 2x1 --route train ")
    assert "-o sim_data/drives/demo_320.mcap" in command("demo_320")


def test_default_drives_are_shipped():
    import sim_data

    for path in (sim_data.DEFAULT_TRAIN_DRIVE, sim_data.DEFAULT_TEST_DRIVE, sim_data.DEFAULT_DEMO_DRIVE):
        assert path.is_file() and path.parent == DRIVES_DIR and path.stem in SHIPPED
