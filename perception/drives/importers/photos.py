"""A folder of geotagged photos (EXIF GPS) into a drive.

Time of each photo, first found of: EXIF GPS date + time (UTC); DateTimeOriginal with its sub-seconds
and offset (no offset: taken as UTC, noted); IFD0 DateTime; Mapillary's ``MAPCaptureTime`` (UTC) in the
image description. Photos are sorted by that time. Heading: EXIF GPSImgDirection when present, else the
direction of travel along the photos' own track, over a baseline of `HEADING_BASELINE_SIGMAS` GPS errors.
Position error (1 sigma): EXIF GPSHPositioningError, else Mapillary's ``MAPGPSAccuracyMeters``, else
`DEFAULT_PHOTO_STD_M`.

Mapillary's compass (``MAPCompassHeading``) is not read: on the Lund walk (29 photos, iPhone 4S) it says
~185 deg for the first 20 photos while the walk and the pictures go north (~345 deg).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from localization.geodesy import GeoOrigin
from perception.drives.jpeg import encode_jpeg
from perception.drives.metadata import CameraInfo, DriveMetadata
from perception.drives.track import Track
from perception.drives.writer import DriveWriter

from ._common import ImportResult, resize_to_width

_UTC = dt.UTC
_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_TAG_ORIENTATION = 0x0112
_TAG_DATETIME = 0x0132
_TAG_DESCRIPTION = 0x010E
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_OFFSET_TIME_ORIGINAL = 0x9011
_TAG_SUBSEC_ORIGINAL = 0x9291
_TAG_FOCAL_35MM = 0xA405
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_ALT_REF, _GPS_ALT, _GPS_TIME = 5, 6, 7
_GPS_DIRECTION_REF, _GPS_DIRECTION = 16, 17
_GPS_DATE, _GPS_H_ERROR = 29, 31

PHOTO_SUFFIXES = (".jpg", ".jpeg")
DEFAULT_PHOTO_STD_M = 10.0  # phone GPS in a street canyon, when EXIF gives no error estimate
# The heading from two positions sigma metres off each, L metres apart, is off by about sqrt(2) sigma / L
# rad: a baseline of 4 sigmas keeps it near 20 deg. Photos are often only 5-10 m apart, so the nearest
# neighbours (the 4 m floor of `Track.headings_from_motion`) gave +-40 deg on the Lund walk.
HEADING_BASELINE_SIGMAS = 4.0
MAX_HEADING_BASELINE_M = 30.0  # longer would cut corners


@dataclass(frozen=True)
class PhotoExif:
    """What a photo's EXIF says about where and when it was taken."""

    path: Path
    lat_deg: float
    lon_deg: float
    alt_m: float | None
    stamp_ns: int | None
    time_source: str  # "gps", "datetime_original", "datetime", "mapillary", or "" when none
    heading_deg: float | None
    heading_magnetic: bool
    horizontal_std_m: float | None
    orientation: int
    width_px: int  # after applying the EXIF orientation
    height_px: int
    focal_35mm: float | None


def _ratio(value) -> float:
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{value!r} is not a finite number")
    return result


def _dms(value, ref: str, what: str) -> float:
    try:
        d, m, s = (_ratio(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"GPS {what} {value!r} is not degrees, minutes, seconds") from None
    result = d + m / 60.0 + s / 3600.0
    ref = (ref or "").strip().upper()
    if ref in ("S", "W"):
        result = -result
    return result


def _exif_datetime_ns(text: str, subsec: str | None, offset: str | None) -> int:
    moment = dt.datetime.strptime(text.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    tz = _UTC
    if offset:
        sign = -1 if offset.strip().startswith("-") else 1
        hours, minutes = offset.strip().lstrip("+-").split(":")
        tz = dt.timezone(sign * dt.timedelta(hours=int(hours), minutes=int(minutes)))
    stamp_s = int(moment.replace(tzinfo=tz).timestamp())
    fraction_ns = 0
    digits = (subsec or "").strip().rstrip("\x00")
    if digits.isdigit():
        fraction_ns = int(digits.ljust(9, "0")[:9])
    return stamp_s * 1_000_000_000 + fraction_ns


def read_photo_exif(path: str | Path) -> PhotoExif:
    """Position, time and heading from a photo's EXIF; ValueError naming the file when it has no GPS."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            size = image.size
    except OSError as exc:
        raise OSError(f"{path}: not a readable image ({exc})") from None
    gps = exif.get_ifd(_GPS_IFD)
    sub = exif.get_ifd(_EXIF_IFD)
    if _GPS_LAT not in gps or _GPS_LON not in gps:
        raise ValueError(f"{path}: no GPS position in EXIF (GPSLatitude/GPSLongitude missing)")
    try:
        lat = _dms(gps[_GPS_LAT], gps.get(_GPS_LAT_REF, "N"), "latitude")
        lon = _dms(gps[_GPS_LON], gps.get(_GPS_LON_REF, "E"), "longitude")
    except ValueError as exc:
        raise ValueError(f"{path}: EXIF {exc}") from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or (lat == 0.0 and lon == 0.0):
        # (0, 0) is what some cameras write before the first fix: no GPS, not the Gulf of Guinea
        raise ValueError(f"{path}: EXIF GPS position lat={lat!r}, lon={lon!r} is not a real fix")
    alt = None
    if _GPS_ALT in gps:
        try:
            alt = _ratio(gps[_GPS_ALT])
            ref = gps.get(_GPS_ALT_REF, 0)
            if (ref if isinstance(ref, int) else int.from_bytes(bytes(ref)[:1] or b"\0", "little")) == 1:
                alt = -alt  # below sea level
        except (ValueError, ZeroDivisionError, TypeError):
            alt = None

    stamp_ns, source = None, ""
    try:
        if _GPS_DATE in gps and _GPS_TIME in gps:
            day = dt.datetime.strptime(str(gps[_GPS_DATE]).strip().rstrip("\x00"), "%Y:%m:%d").replace(tzinfo=_UTC)
            h, m, s = (_ratio(v) for v in gps[_GPS_TIME])
            stamp_ns = int(day.timestamp()) * 1_000_000_000 + round((h * 3600 + m * 60 + s) * 1e9)
            source = "gps"
        elif _TAG_DATETIME_ORIGINAL in sub:
            stamp_ns = _exif_datetime_ns(str(sub[_TAG_DATETIME_ORIGINAL]), sub.get(_TAG_SUBSEC_ORIGINAL), sub.get(_TAG_OFFSET_TIME_ORIGINAL))
            source = "datetime_original" if sub.get(_TAG_OFFSET_TIME_ORIGINAL) else "datetime_original_as_utc"
        elif _TAG_DATETIME in exif:
            stamp_ns = _exif_datetime_ns(str(exif[_TAG_DATETIME]), None, None)
            source = "datetime_as_utc"
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise ValueError(f"{path}: EXIF time is malformed ({exc})") from None
    if stamp_ns is None:
        stamp_ns = _mapillary_time_ns(exif.get(_TAG_DESCRIPTION))
        source = "mapillary" if stamp_ns is not None else ""

    heading, magnetic = None, False
    if _GPS_DIRECTION in gps:
        try:
            heading = _ratio(gps[_GPS_DIRECTION]) % 360.0
            magnetic = str(gps.get(_GPS_DIRECTION_REF, "T")).strip().upper().startswith("M")
        except (ValueError, ZeroDivisionError, TypeError):
            heading = None
    std = None
    if _GPS_H_ERROR in gps:
        try:
            std = _ratio(gps[_GPS_H_ERROR])
        except (ValueError, ZeroDivisionError, TypeError):
            std = None
    if std is None:
        std = _mapillary_field(exif.get(_TAG_DESCRIPTION), "MAPGPSAccuracyMeters")
    orientation = int(exif.get(_TAG_ORIENTATION, 1) or 1)
    width, height = size if orientation < 5 else (size[1], size[0])  # 5-8 swap the axes
    focal = sub.get(_TAG_FOCAL_35MM)
    return PhotoExif(
        path, lat, lon, alt, stamp_ns, source, heading, magnetic, std if std and std > 0 else None,
        orientation, width, height, float(focal) if focal else None,
    )


def _mapillary_json(description) -> dict:
    # Mapillary's apps put their own JSON in ImageDescription
    if not description:
        return {}
    try:
        data = json.loads(str(description))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _mapillary_field(description, key: str) -> float | None:
    """A positive finite number of Mapillary's JSON (written as text or a number), else None."""
    try:
        value = float(_mapillary_json(description)[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _mapillary_time_ns(description) -> int | None:
    # MAPCaptureTime is UTC, "%Y_%m_%d_%H_%M_%S_%f"(ms).
    try:
        text = _mapillary_json(description)["MAPCaptureTime"]
        parts = [int(p) for p in text.split("_")]
        moment = dt.datetime(*parts[:6], tzinfo=_UTC)
        millis = parts[6] if len(parts) > 6 else 0
        return int(moment.timestamp()) * 1_000_000_000 + millis * 1_000_000
    except (ValueError, KeyError, TypeError):
        return None


def _photo_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())


def _slice_text(frames: slice) -> str:
    parts = ["" if v is None else str(v) for v in (frames.start, frames.stop, frames.step)]
    return ":".join(parts).rstrip(":") if frames.step is None else ":".join(parts)


def import_photos(
    folder: str | Path,
    out: str | Path,
    *,
    max_width_px: int | None = None,
    interval_s: float | None = None,
    jpeg_quality: int = 90,
    heading: str = "auto",
    frames: slice | None = None,
) -> ImportResult:
    """Write the geotagged JPEGs of ``folder`` as a drive at ``out``.

    Args:
        max_width_px: shrink wider photos (re-encoded); None keeps the original JPEG bytes when the EXIF
            orientation needs no rotation.
        interval_s: for photos without a capture time: order by file name, ``interval_s`` apart (starting
            at the first photo that has a time, else at the Unix epoch). None: a photo without time is an
            error.
        heading: ``"auto"`` (EXIF direction, else from the track), ``"exif"`` (EXIF only; none is an
            error), ``"track"`` (always from the track).
        frames: keep only these photos, a slice over the time order (``slice(11, 18)``: the 12th to the
            18th), as ``DRIVE@START:STOP`` selects a drive's frames: a held-out stretch as its own drive.
            Times and headings come from all the photos first, so a kept photo's heading is the same as
            in the whole import.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OSError(f"{folder}: not a folder of photos")
    if heading not in ("auto", "exif", "track"):
        raise ValueError(f"heading={heading!r} is not 'auto', 'exif' or 'track'")
    paths = _photo_paths(folder)
    if not paths:
        inside = sorted(d for d in folder.iterdir() if d.is_dir() and _photo_paths(d))
        hint = f" ({inside[0]} holds {len(_photo_paths(inside[0]))}: import that folder)" if inside else ""
        raise ValueError(f"{folder}: no .jpg/.jpeg photos{hint}")
    photos = [read_photo_exif(p) for p in paths]
    result = ImportResult(Path(out))

    untimed = [p for p in photos if p.stamp_ns is None]
    if untimed and interval_s is None:
        raise ValueError(
            f"{untimed[0].path}: no capture time in EXIF (GPS date/time, DateTimeOriginal, DateTime); "
            "pass --interval-s to order the photos by file name instead"
        )
    if interval_s is not None and untimed:
        first = next((p.stamp_ns for p in photos if p.stamp_ns is not None), 0)
        stamps = [first + round(i * interval_s * 1e9) for i in range(len(photos))]
        result.notes.append(f"{len(untimed)} photos without a time: ordered by file name, {interval_s} s apart")
    else:
        order = sorted(range(len(photos)), key=lambda i: (photos[i].stamp_ns, photos[i].path.name))
        photos = [photos[i] for i in order]
        stamps = [p.stamp_ns for p in photos]  # type: ignore[misc]
    sources = sorted({p.time_source for p in photos if p.time_source})
    if "mapillary" in sources:
        result.notes.append("capture times from Mapillary's MAPCaptureTime (UTC): EXIF has no time tags")
    if any(s.endswith("_as_utc") for s in sources):
        result.notes.append("EXIF times without a UTC offset were taken as UTC")
    if len(set(stamps)) != len(stamps):
        result.notes.append("some photos share a capture time")

    nan = float("nan")
    track = Track(
        stamps,
        [p.lat_deg for p in photos],
        [p.lon_deg for p in photos],
        [nan if p.alt_m is None else p.alt_m for p in photos],
        [nan if p.heading_deg is None else p.heading_deg for p in photos],
        None,
        [nan if p.horizontal_std_m is None else p.horizontal_std_m for p in photos],
    )
    exif_headings = int(np.isfinite(track.heading_deg).sum())
    if heading == "exif" and exif_headings < len(photos):
        missing = next(p for p in photos if p.heading_deg is None)
        raise ValueError(f"{missing.path}: no GPSImgDirection in EXIF (use --heading auto or track)")
    if heading == "track" or exif_headings < len(photos):
        stds = track.horizontal_std_m[np.isfinite(track.horizontal_std_m)]
        sigma_m = float(np.median(stds)) if len(stds) else DEFAULT_PHOTO_STD_M
        baseline_m = float(np.clip(HEADING_BASELINE_SIGMAS * sigma_m, 4.0, MAX_HEADING_BASELINE_M))
        track = track.with_motion_headings(overwrite=heading == "track", min_baseline_m=baseline_m)
        result.notes.append(
            "heading from the direction of travel"
            + ("" if heading == "track" or not exif_headings else f" for {len(photos) - exif_headings} photos")
            + f" (over {baseline_m:.0f} m: GPS error {sigma_m:.0f} m)"
        )
    if any(p.heading_magnetic for p in photos if p.heading_deg is not None) and heading != "track":
        result.notes.append("some EXIF headings are magnetic, stored uncorrected for declination")

    if frames is not None:
        keep = range(len(photos))[frames]
        if not len(keep):
            raise ValueError(f"{folder}: photos {_slice_text(frames)} select none of the {len(photos)} photos")
        result.notes.append(f"kept photos {_slice_text(frames)}: {len(keep)} of {len(photos)}, "
                            f"{photos[keep[0]].path.name} .. {photos[keep[-1]].path.name}")
        photos = [photos[i] for i in keep]
        track = track.take(np.asarray(keep))
    sizes = {(p.width_px, p.height_px) for p in photos}
    out_size = None
    camera = None
    if len(sizes) == 1:
        width, height = next(iter(sizes))
        if max_width_px is not None and width > max_width_px:
            out_size = (max_width_px, max(1, round(height * max_width_px / width)))
        focal = photos[0].focal_35mm
        if focal and all(p.focal_35mm == focal for p in photos):
            # 35 mm-equivalent focal length over the 36 mm width of a full-frame sensor
            fx = focal / 36.0 * width
            camera = CameraInfo(width, height, fx, fx, width / 2.0, height / 2.0)
            if out_size is not None:
                camera = camera.scaled(*out_size)
    else:
        result.notes.append(f"photos come in {len(sizes)} sizes: no camera intrinsics stored")

    origin = GeoOrigin(float(track.lat_deg[0]), float(track.lon_deg[0]), float(np.nan_to_num(track.alt_m[0])))
    metadata = DriveMetadata(
        source=f"import photos {folder}",
        geo_origin=origin,
        camera=camera,
        extra={"importer": "photos", "time_source": ",".join(sources) or "interval", "photos": len(photos)},
    )
    with DriveWriter(out, metadata, jpeg_quality=jpeg_quality) as writer:
        for i, photo in enumerate(photos):
            stamp = int(track.stamp_ns[i])
            needs_pixels = photo.orientation != 1 or (max_width_px is not None and photo.width_px > max_width_px)
            if needs_pixels:
                with Image.open(photo.path) as image:
                    upright = ImageOps.exif_transpose(image).convert("RGB")
                    bgr = cv2.cvtColor(np.asarray(upright), cv2.COLOR_RGB2BGR)
                writer.add_image(stamp, jpeg=encode_jpeg(resize_to_width(bgr, max_width_px), jpeg_quality))
            else:
                writer.add_image(stamp, jpeg=photo.path.read_bytes())
            std = track.horizontal_std_m[i]
            writer.add_gps(
                stamp,
                lat_deg=float(track.lat_deg[i]),
                lon_deg=float(track.lon_deg[i]),
                alt_m=float(np.nan_to_num(track.alt_m[i])),
                heading_deg=None if np.isnan(track.heading_deg[i]) else float(track.heading_deg[i]),
                horizontal_std_m=float(std) if np.isfinite(std) else DEFAULT_PHOTO_STD_M,
            )
            result.frames += 1
            result.gps_fixes += 1
            result.stamp(stamp)
    return result
