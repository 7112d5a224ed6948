"""Builders for drive tests (synthetic drives, geotagged photos, videos), served as fixtures: pytest runs
with --import-mode=importlib, so test modules cannot import a helper module beside them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from perception.drives import CameraInfo, DriveMetadata, DriveWriter, GeoOrigin

T0_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
CLASSES = ["sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian", "bicyclist", "unlabelled"]
ORIGIN = GeoOrigin(55.7, 13.19, 40.0)


def frame_image(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A frame that differs per index (a moving bar on a gradient), uint8 [H, W, 3]."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None]
    x = (i * 5) % (width - 8)
    image[height // 4 : height // 2, x : x + 8] = (0, 0, 255)
    return image


def build_drive(path: Path, frames: int = 20, *, corrupt: tuple[int, ...] = (), **writer_kwargs) -> Path:
    """A drive with images at 10 Hz, GPS at 2 Hz heading north at 5 m/s, odometry at 10 Hz, and truth
    boxes/masks with every GPS fix; frames listed in ``corrupt`` hold garbage bytes instead of a JPEG."""
    camera = CameraInfo(64, 48, 60.0, 60.0, 32.0, 24.0)
    meta = DriveMetadata(source="test", geo_origin=ORIGIN, camera=camera, extra={"seed": 7, "city": "test"})
    with DriveWriter(path, meta, **writer_kwargs) as w:
        for i in range(frames):
            stamp = T0_NS + i * 100_000_000
            if i in corrupt:
                w.add_image(stamp, jpeg=b"\x00garbage, not a jpeg\x00" * 4)
            else:
                w.add_image(stamp, frame_image(i))
            if i % 5 == 0:
                # 5 m/s north: 2.5 m per 0.5 s
                lat = ORIGIN.lat_deg + (i * 0.5) / 111_320.0
                w.add_gps(stamp, lat_deg=lat, lon_deg=ORIGIN.lon_deg, alt_m=40.0, heading_deg=0.0,
                          horizontal_std_m=3.0, speed_mps=5.0)
                boxes = np.array([[1, 2, 10, 20], [30, 5, 40, 15]], np.float32)
                w.add_boxes(stamp, boxes, np.array([8, 9]), CLASSES)
                w.add_label_mask(stamp, label_mask(), CLASSES)
            w.add_odometry(stamp, speed_mps=5.0, yaw_rate_radps=0.1)
    return path


def label_mask() -> np.ndarray:
    return (np.arange(48 * 64).reshape(48, 64) % 12).astype(np.uint8)


def write_geotagged_jpeg(
    path: Path,
    *,
    lat_deg: float | None,
    lon_deg: float | None,
    when: dt.datetime | None,
    heading_deg: float | None = None,
    alt_m: float = 30.0,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
) -> None:
    """A JPEG with EXIF GPS (degrees/minutes/seconds), GPS date/time and optional GPSImgDirection."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        d = int(value)
        m = int((value - d) * 60)
        s = round(((value - d) * 60 - m) * 60, 4)
        return (float(d), float(m), s)

    if lat_deg is not None and lon_deg is not None:
        gps[1] = "N" if lat_deg >= 0 else "S"
        gps[2] = dms(lat_deg)
        gps[3] = "E" if lon_deg >= 0 else "W"
        gps[4] = dms(lon_deg)
        gps[6] = alt_m
    if when is not None:
        gps[29] = when.strftime("%Y:%m:%d")
        gps[7] = (float(when.hour), float(when.minute), when.second + when.microsecond / 1e6)
    if heading_deg is not None:
        gps[16] = "T"
        gps[17] = heading_deg
    exif.get_ifd(0x8769)[0xA405] = 28  # 35 mm-equivalent focal length
    image.save(path, exif=exif, quality=90)


def write_video(path: Path, frames: int = 30, fps: float = 10.0, size: tuple[int, int] = (80, 60)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(frame_image(i, *size))
    writer.release()


def set_mp4_creation_time(path: Path, when: dt.datetime) -> None:
    """Patch the mvhd creation time (version 0: u32 seconds since 1904) as a phone would write it."""
    data = bytearray(path.read_bytes())
    i = data.find(b"mvhd")
    assert i > 0 and data[i + 4] == 0
    seconds_1904 = int(when.timestamp()) + 2_082_844_800
    data[i + 8 : i + 12] = seconds_1904.to_bytes(4, "big")
    path.write_bytes(bytes(data))


@pytest.fixture
def make_drive(tmp_path):
    """make_drive(name="drive.mcap", frames=20, corrupt=(), **writer_kwargs) -> Path (see build_drive)."""

    def build(name: str = "drive.mcap", frames: int = 20, **kwargs) -> Path:
        return build_drive(tmp_path / name, frames, **kwargs)

    return build


@pytest.fixture
def kit() -> SimpleNamespace:
    """The builders and constants of this file, for test modules."""
    return SimpleNamespace(
        T0_NS=T0_NS, CLASSES=CLASSES, ORIGIN=ORIGIN, frame_image=frame_image, label_mask=label_mask,
        build_drive=build_drive, write_geotagged_jpeg=write_geotagged_jpeg, write_video=write_video,
        set_mp4_creation_time=set_mp4_creation_time,
    )
