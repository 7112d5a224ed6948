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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localization.geodesy import GeoOrigin

from .messages import CameraInfo

_UTC = dt.UTC
FORMAT_NAME = "streetloc-drive"
FORMAT_VERSION = 1

RECORD_DRIVE = "streetloc.drive"
RECORD_GEO_ORIGIN = "streetloc.geo_origin"
RECORD_CAMERA = "streetloc.camera"
RECORD_EXTRA = "streetloc.extra"


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
            camera=None if camera is None else CameraInfo.from_record(camera, RECORD_CAMERA),
            extra=extra,
            created_utc=drive.get("created_utc", ""),
            format_version=version,
        )
