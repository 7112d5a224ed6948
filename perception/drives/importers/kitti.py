"""A KITTI raw drive (``<date>_drive_<nnnn>_sync`` or ``_extract``) into a drive.

Reads ``image_02/data/*.png`` with ``image_02/timestamps.txt`` (left colour camera) and
``oxts/data/*.txt`` with ``oxts/timestamps.txt``. Each oxts row has 30 values; used here:

| index | name          | unit / convention                                   | goes to                      |
|-------|---------------|-----------------------------------------------------|------------------------------|
| 0-2   | lat, lon, alt | deg, deg, m                                         | ``gps/fix``                  |
| 5     | yaw           | rad, 0 = east, counter-clockwise positive           | heading = 90 - yaw (deg, cw from north) |
| 6, 7  | vn, ve        | m/s north, east                                     | speed over ground            |
| 8     | vf            | m/s forward                                         | ``odometry`` speed           |
| 22    | wu            | rad/s about the up axis (ccw positive)              | ``odometry`` yaw rate        |
| 23    | pos_accuracy  | m (north/east)                                      | horizontal std               |

Intrinsics come from ``calib_cam_to_cam.txt`` (in the drive folder or its date folder): ``P_rect_02``
for rectified (sync) images, ``K_02``/``D_02`` for unrectified (extract) ones, chosen by image size.
KITTI's timestamps carry no time zone; they are taken as UTC.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from localization.geodesy import GeoOrigin
from perception.drives.metadata import CameraInfo, DriveMetadata
from perception.drives.trackio import parse_time_ns
from perception.drives.writer import DriveWriter

from ._common import ImportResult, resize_to_width

OXTS_FIELDS = 30
_LAT, _LON, _ALT, _YAW, _VN, _VE, _VF, _WU, _POS_ACC = 0, 1, 2, 5, 6, 7, 8, 22, 23
MIN_OXTS_STD_M = 0.02  # RTK-grade; pos_accuracy below this is not believable


def _read_timestamps(path: Path) -> list[int]:
    if not path.is_file():
        raise OSError(f"{path}: KITTI timestamps file not found")
    stamps = []
    with open(path, encoding="ascii", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                stamps.append(parse_time_ns(text))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: {text!r} is not a KITTI timestamp (YYYY-MM-DD hh:mm:ss.fffffffff)") from None
    return stamps


def _read_oxts_row(path: Path, stamps_file: Path, stamp_line: int) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: missing oxts row for {stamps_file}:{stamp_line}")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not text:
        raise ValueError(f"{path}:1: empty oxts row (for {stamps_file}:{stamp_line})")
    first_line = text.splitlines()[0]
    try:
        values = np.array([float(v) for v in first_line.split()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}:1: oxts row is not numbers: {first_line[:80]!r}") from None
    if len(values) != OXTS_FIELDS:
        raise ValueError(f"{path}:1: expected {OXTS_FIELDS} oxts values, got {len(values)}")
    if not np.all(np.isfinite(values[[_LAT, _LON, _ALT]])):
        raise ValueError(f"{path}:1: oxts position is not finite: {values[:3].tolist()}")
    return values


def _find_calibration(drive: Path) -> Path | None:
    for folder in (drive, drive.parent):
        candidate = folder / "calib_cam_to_cam.txt"
        if candidate.is_file():
            return candidate
    return None


def _read_camera(calib: Path, camera: str, width: int, height: int) -> CameraInfo | None:
    index = camera.rsplit("_", 1)[-1]  # "02"
    values: dict[str, list[float]] = {}
    for line in calib.read_text(encoding="ascii", errors="replace").splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = [float(v) for v in rest.split()]
        except ValueError:
            continue  # calib_time and other text lines
    rect_size = values.get(f"S_rect_{index}")
    raw_size = values.get(f"S_{index}")
    if rect_size and round(rect_size[0]) == width and round(rect_size[1]) == height and len(values.get(f"P_rect_{index}", [])) == 12:
        p = values[f"P_rect_{index}"]
        return CameraInfo(width, height, p[0], p[5], p[2], p[6])
    if raw_size and round(raw_size[0]) == width and round(raw_size[1]) == height and len(values.get(f"K_{index}", [])) == 9:
        k = values[f"K_{index}"]
        return CameraInfo(width, height, k[0], k[4], k[2], k[5], "plumb_bob", tuple(values.get(f"D_{index}", [])))
    return None


def import_kitti(
    drive: str | Path,
    out: str | Path,
    *,
    camera: str = "image_02",
    max_frames: int | None = None,
    max_width_px: int | None = None,
    jpeg_quality: int = 90,
) -> ImportResult:
    """Write a KITTI raw drive folder as a drive at ``out`` (frames re-encoded as JPEG)."""
    drive = Path(drive)
    if not drive.is_dir():
        raise OSError(f"{drive}: not a KITTI raw drive folder")
    image_dir = drive / camera / "data"
    oxts_dir = drive / "oxts" / "data"
    for folder in (image_dir, oxts_dir):
        if not folder.is_dir():
            raise OSError(f"{folder}: missing (a KITTI raw drive has {camera}/data and oxts/data)")
    image_stamps_file = drive / camera / "timestamps.txt"
    oxts_stamps_file = drive / "oxts" / "timestamps.txt"
    image_stamps = _read_timestamps(image_stamps_file)
    oxts_stamps = _read_timestamps(oxts_stamps_file)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".png")
    if len(images) != len(image_stamps):
        raise ValueError(f"{image_stamps_file}: {len(image_stamps)} timestamps but {len(images)} PNG images in {image_dir}")
    if not images:
        raise ValueError(f"{image_dir}: no PNG images")
    if max_frames is not None:
        images, image_stamps = images[:max_frames], image_stamps[:max_frames]
        if image_stamps:
            # keep the oxts rows up to the last kept frame (plus one, for interpolation)
            keep = int(np.searchsorted(np.array(oxts_stamps), image_stamps[-1], side="right")) + 1
            oxts_stamps = oxts_stamps[:keep]
    # Every timestamp must have its row; read all before writing so that a bad drive leaves no file.
    rows = [
        _read_oxts_row(oxts_dir / f"{i:010d}.txt", oxts_stamps_file, i + 1) for i in range(len(oxts_stamps))
    ]
    if not rows:
        raise ValueError(f"{oxts_stamps_file}: no oxts timestamps")

    first = cv2.imread(str(images[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise ValueError(f"{images[0]}: not a readable PNG")
    height, width = resize_to_width(first, max_width_px).shape[:2]
    calib = _find_calibration(drive)
    camera_info = None
    result = ImportResult(Path(out))
    if calib is not None:
        camera_info = _read_camera(calib, camera, first.shape[1], first.shape[0])
        if camera_info is not None and (width, height) != (first.shape[1], first.shape[0]):
            camera_info = camera_info.scaled(width, height)
    if camera_info is None:
        result.notes.append("no matching calib_cam_to_cam.txt: no intrinsics stored")

    origin = GeoOrigin(float(rows[0][_LAT]), float(rows[0][_LON]), float(rows[0][_ALT]))
    metadata = DriveMetadata(
        source=f"import kitti {drive.name}",
        geo_origin=origin,
        camera=camera_info,
        extra={"importer": "kitti", "drive": drive.name, "camera": camera, "time_zone": "taken as UTC"},
    )
    # Merge both streams by time so the file's chunks stay in time order.
    events = [(s, 0, i) for i, s in enumerate(oxts_stamps)] + [(s, 1, i) for i, s in enumerate(image_stamps)]
    events.sort()
    with DriveWriter(out, metadata, jpeg_quality=jpeg_quality) as writer:
        for stamp_ns, kind, i in events:
            if kind == 1:
                image = first if i == 0 else cv2.imread(str(images[i]), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"{images[i]}: not a readable PNG")
                writer.add_image(stamp_ns, resize_to_width(image, max_width_px))
                result.frames += 1
            else:
                row = rows[i]
                heading_deg = (90.0 - np.degrees(row[_YAW])) % 360.0
                writer.add_gps(
                    stamp_ns,
                    lat_deg=float(row[_LAT]),
                    lon_deg=float(row[_LON]),
                    alt_m=float(row[_ALT]),
                    heading_deg=float(heading_deg),
                    horizontal_std_m=max(float(row[_POS_ACC]), MIN_OXTS_STD_M),
                    speed_mps=float(np.hypot(row[_VN], row[_VE])),
                )
                writer.add_odometry(stamp_ns, speed_mps=float(row[_VF]), yaw_rate_radps=float(row[_WU]))
                result.gps_fixes += 1
                result.odometry += 1
            result.stamp(stamp_ns)
    return result
