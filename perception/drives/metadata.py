"""Drive-wide metadata: where the drive is (geo origin), what camera took it, where it came from.

Stored as MCAP metadata records (string -> string maps), one per concern, so that ``mcap info`` and
Foxglove's metadata panel show them readably:

| record                  | keys                                                                    |
|-------------------------|-------------------------------------------------------------------------|
| ``streetloc.drive``     | ``format`` (= "streetloc-drive"), ``format_version``, ``source``, ``created_utc`` |
| ``streetloc.geo_origin``| ``lat_deg``, ``lon_deg``, ``alt_m``                                      |
| ``streetloc.camera``    | ``width_px``, ``height_px``, ``fx_px``, ``fy_px``, ``cx_px``, ``cy_px``, ``distortion_model``, ``distortion`` (JSON list) |
| ``streetloc.extra``     | free keys; every value JSON-encoded, so numbers and lists round-trip   |
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localization.geodesy import GeoOrigin

_UTC = dt.timezone.utc  # noqa: UP017 - datetime.UTC needs Python 3.11; 3.10 is supported
FORMAT_NAME = "streetloc-drive"
FORMAT_VERSION = 1

RECORD_DRIVE = "streetloc.drive"
RECORD_GEO_ORIGIN = "streetloc.geo_origin"
RECORD_CAMERA = "streetloc.camera"
RECORD_EXTRA = "streetloc.extra"


@dataclass(frozen=True)
class CameraInfo:
    """Pinhole intrinsics of the images in a drive, in pixels of the stored image.

    ``distortion`` follows OpenCV's order for ``distortion_model`` (``plumb_bob``: k1, k2, p1, p2, k3);
    empty means an undistorted (or unknown-distortion) image.
    """

    width_px: int
    height_px: int
    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"camera size {self.width_px}x{self.height_px} px must be positive")
        for name in ("fx_px", "fy_px", "cx_px", "cy_px"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"camera {name}={value!r} is not finite")
        if self.fx_px <= 0 or self.fy_px <= 0:
            raise ValueError(f"camera focal lengths fx_px={self.fx_px!r}, fy_px={self.fy_px!r} must be positive")

    @classmethod
    def from_hfov(cls, width_px: int, height_px: int, hfov_deg: float) -> CameraInfo:
        """Square pixels, principal point at the centre, focal length from the horizontal field of view."""
        if not 1.0 < hfov_deg < 179.0:
            raise ValueError(f"horizontal field of view {hfov_deg!r} deg is outside (1, 179)")
        fx = (width_px / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width_px, height_px, fx, fx, width_px / 2.0, height_px / 2.0)

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan2(self.width_px / 2.0, self.fx_px))

    @property
    def K(self) -> list[float]:  # noqa: N802 - the textbook name
        """Intrinsic matrix, 3x3 row-major."""
        return [self.fx_px, 0.0, self.cx_px, 0.0, self.fy_px, self.cy_px, 0.0, 0.0, 1.0]

    def scaled(self, width_px: int, height_px: int) -> CameraInfo:
        """The same camera for an image resized to ``width_px`` x ``height_px``."""
        sx, sy = width_px / self.width_px, height_px / self.height_px
        return CameraInfo(
            width_px, height_px, self.fx_px * sx, self.fy_px * sy, self.cx_px * sx, self.cy_px * sy,
            self.distortion_model, self.distortion,
        )

    def to_record(self) -> dict[str, str]:
        return {
            "width_px": str(self.width_px),
            "height_px": str(self.height_px),
            "fx_px": repr(float(self.fx_px)),
            "fy_px": repr(float(self.fy_px)),
            "cx_px": repr(float(self.cx_px)),
            "cy_px": repr(float(self.cy_px)),
            "distortion_model": self.distortion_model,
            "distortion": json.dumps([float(d) for d in self.distortion]),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> CameraInfo:
        try:
            return cls(
                int(record["width_px"]),
                int(record["height_px"]),
                float(record["fx_px"]),
                float(record["fy_px"]),
                float(record["cx_px"]),
                float(record["cy_px"]),
                record.get("distortion_model", "plumb_bob"),
                tuple(float(d) for d in json.loads(record.get("distortion", "[]"))),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"metadata record {RECORD_CAMERA!r} is malformed ({exc!r}): {dict(record)}") from None


@dataclass(frozen=True)
class DriveMetadata:
    """What a drive is: ``source`` says where it came from ("sim_data seed=3", "import photos lund/")."""

    source: str = ""
    geo_origin: GeoOrigin | None = None
    camera: CameraInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    created_utc: str = ""  # ISO 8601; the writer fills it when empty
    format_version: int = FORMAT_VERSION

    def to_records(self) -> dict[str, dict[str, str]]:
        """The MCAP metadata records (name -> string map) that store this metadata."""
        created = self.created_utc or dt.datetime.now(_UTC).isoformat(timespec="seconds")
        records = {
            RECORD_DRIVE: {
                "format": FORMAT_NAME,
                "format_version": str(self.format_version),
                "source": self.source,
                "created_utc": created,
            }
        }
        if self.geo_origin is not None:
            records[RECORD_GEO_ORIGIN] = {k: repr(float(v)) for k, v in self.geo_origin.to_dict().items()}
        if self.camera is not None:
            records[RECORD_CAMERA] = self.camera.to_record()
        if self.extra:
            try:
                records[RECORD_EXTRA] = {str(k): json.dumps(v) for k, v in self.extra.items()}
            except TypeError as exc:
                raise ValueError(f"DriveMetadata.extra must be JSON-serialisable: {exc}") from None
        return records

    @classmethod
    def from_records(cls, records: Mapping[str, Mapping[str, str]]) -> DriveMetadata:
        drive = records.get(RECORD_DRIVE, {})
        geo = records.get(RECORD_GEO_ORIGIN)
        camera = records.get(RECORD_CAMERA)
        extra: dict[str, Any] = {}
        for key, text in records.get(RECORD_EXTRA, {}).items():
            try:
                extra[key] = json.loads(text)
            except ValueError:
                extra[key] = text  # written by another tool as a plain string
        try:
            version = int(drive.get("format_version", FORMAT_VERSION))
        except ValueError:
            raise ValueError(f"metadata {RECORD_DRIVE}.format_version={drive.get('format_version')!r} is not an integer") from None
        if version > FORMAT_VERSION:
            raise ValueError(
                f"drive format version {version} is newer than this streetloc reads ({FORMAT_VERSION}); upgrade streetloc"
            )
        try:
            origin = None if geo is None else GeoOrigin.from_dict(dict(geo))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"metadata record {RECORD_GEO_ORIGIN!r} is malformed ({exc}): {dict(geo or {})}") from None
        return cls(
            source=drive.get("source", ""),
            geo_origin=origin,
            camera=None if camera is None else CameraInfo.from_record(camera),
            extra=extra,
            created_utc=drive.get("created_utc", ""),
            format_version=version,
        )
