"""Datasets over drives: frame selection, poses in a local frame, colour order, caching, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from perception.datasets import DriveSpec, block_split, load_frames, resize_to_input
from perception.drives import CameraInfo, DriveMetadata, DriveWriter
from perception.models.posenet.data import PoseDataset, load_pose_frames

T0_NS = 1_700_000_000_000_000_000
ORIGIN = GeoOrigin(34.05, -118.24, 0.0)


def write_drive(path, frames: int = 12, *, gps_frames: int | None = None, with_heading: bool = True) -> str:
    """Frames at 10 Hz moving east 1 m per frame; frame i is filled with red = 10 i (BGR order on disk).
    GPS stops after ``gps_frames`` frames."""
    frame = LocalFrame(ORIGIN)
    with DriveWriter(path, DriveMetadata(source="toy", geo_origin=ORIGIN, camera=CameraInfo.from_hfov(64, 48, 90)),
                     image_encoding="bgr8") as w:
        for i in range(frames):
            stamp = T0_NS + i * 100_000_000
            image = np.zeros((48, 64, 3), np.uint8)
            image[:, :, 2] = 10 * i  # red, in BGR
            w.add_image(stamp, image)
            if gps_frames is None or i < gps_frames:
                lat, lon, _ = frame.to_geodetic(float(i), 5.0)
                w.add_gps(stamp, lat_deg=float(lat), lon_deg=float(lon),
                          heading_deg=90.0 if with_heading else None, horizontal_std_m=0.1)
    return str(path)


def test_drive_spec_parses_slices_and_names_bad_ones():
    assert DriveSpec.parse("a.mcap").frames == slice(None)
    spec = DriveSpec.parse("dir/lund.mcap@1::2")
    assert str(spec.path) == "dir/lund.mcap" and spec.frames == slice(1, None, 2)
    assert str(spec) == "dir/lund.mcap@1::2"
    assert DriveSpec.parse("x@y.mcap").path.name == "x@y.mcap"  # an @ without a slice is part of the name
    with pytest.raises(ValueError, match="START:STOP"):
        DriveSpec.parse("a.mcap@a:b")
    with pytest.raises(ValueError, match="positive"):
        DriveSpec.parse("a.mcap@::0")


def test_frames_carry_their_pose_in_the_local_frame_as_rgb(tmp_path):
    drive = write_drive(tmp_path / "d.mcap")
    frames = load_pose_frames([drive], size_px=(32, 24))
    assert frames.images.shape == (12, 3, 24, 32) and frames.images.dtype == torch.uint8
    np.testing.assert_allclose(frames.east_m, np.arange(12), atol=1e-6)
    np.testing.assert_allclose(frames.north_m, 5.0, atol=1e-6)
    assert np.all(frames.heading_deg == 90.0)
    # channel 0 is red: the model sees RGB whatever the drive stored
    assert frames.images[5, 0].float().mean() == pytest.approx(50, abs=1)
    assert frames.images[5, 2].float().mean() == pytest.approx(0, abs=1)
    assert frames.drives[0]["frames"] == 12 and frames.drives[0]["source"] == "toy"


def test_every_other_frame_and_frames_without_gps_are_skipped(tmp_path):
    drive = write_drive(tmp_path / "d.mcap", frames=12, gps_frames=8)
    even = load_pose_frames([f"{drive}@0::2"], size_px=(16, 12))
    odd = load_pose_frames([f"{drive}@1::2"], size_px=(16, 12))
    assert list(even.east_m.round()) == [0, 2, 4, 6]  # frames 8, 10 have no GPS at their time
    assert list(odd.east_m.round()) == [1, 3, 5, 7]
    assert even.skipped["no_gps"] == 2


def test_unknown_heading_is_nan_and_masked(tmp_path):
    drive = write_drive(tmp_path / "d.mcap", with_heading=False)
    frames = load_pose_frames([drive], size_px=(16, 12))
    assert np.all(np.isnan(frames.heading_deg))
    sample = PoseDataset(frames, center_enu_m=(0.0, 0.0), scale_m=10.0)[3]
    assert not bool(sample["heading_valid"])
    np.testing.assert_allclose(sample["position"].numpy(), [0.3, 0.5], atol=1e-5)


def test_cache_gives_the_same_frames(tmp_path):
    drive = write_drive(tmp_path / "d.mcap")
    first = load_pose_frames([drive], size_px=(16, 12), cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_pose_frames([drive], size_px=(16, 12), cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, again.images)
    np.testing.assert_array_equal(first.east_m, again.east_m)


def test_missing_drive_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mcap"):
        load_pose_frames([tmp_path / "nope.mcap"], size_px=(16, 12))


def test_block_split_holds_out_whole_blocks():
    train, val = block_split(400, val_fraction=0.1, block=40, seed=3)
    assert len(val) == 40 and len(train) == 360
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(400))
    assert val.max() - val.min() == 39  # one contiguous block


def test_resize_accepts_mono_and_rejects_non_images():
    assert resize_to_input(np.zeros((10, 20), np.uint8), (8, 6)).shape == (3, 6, 8)
    with pytest.raises(ValueError, match="uint8"):
        resize_to_input(np.zeros((10, 20, 4), np.uint8), (8, 6))


class _BoxTruth:
    """A detector-style truth: a different number of boxes per frame (ragged)."""

    key = "test-boxes"
    what = "boxes"
    gps = "none"

    def open(self, reader, size_px):
        boxes = {b.header.stamp_ns: b for b in reader.boxes()}

        def read(frame):
            b = boxes.get(frame.stamp_ns)
            return "no_boxes" if b is None else {"boxes": b.boxes_xyxy_px, "n": len(b.class_ids)}

        return read


def test_ragged_truth_is_kept_per_frame_and_survives_the_cache_and_subsets(tmp_path):
    drive = str(Path(__file__).resolve().parents[2] / "sim_data" / "drives" / "train_small.mcap")
    first = load_frames([f"{drive}@::10"], size_px=(32, 24), truth=_BoxTruth(), cache_dir=tmp_path)
    boxes, counts = first.truth["boxes"], first.truth["n"]
    assert isinstance(boxes, list) and len(boxes) == len(first) == len(counts)
    assert [len(b) for b in boxes] == counts.tolist() and len(set(counts.tolist())) > 1  # really ragged
    again = load_frames([f"{drive}@::10"], size_px=(32, 24), truth=_BoxTruth(), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert all(np.array_equal(a, b) for a, b in zip(boxes, again.truth["boxes"], strict=True))
    part = first.subset([2, 0])
    assert np.array_equal(part.truth["boxes"][0], boxes[2]) and part.truth["n"].tolist() == [counts[2], counts[0]]
