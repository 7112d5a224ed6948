"""Geodetic <-> local East-North-Up conversions through pyproj.

Conventions: WGS84 latitude/longitude in degrees, ellipsoidal altitude in metres; the local frame is a
topocentric ENU tangent plane at a geo origin (x east, y north, z up, metres). Headings are degrees
clockwise from true north in [0, 360), as a compass reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyproj

# Default geo origin of the synthetic city: downtown Los Angeles, where the original PoseNet street demo ran.
DEFAULT_ORIGIN_LAT_DEG = 34.0522
DEFAULT_ORIGIN_LON_DEG = -118.2437
DEFAULT_ORIGIN_ALT_M = 90.0


@dataclass(frozen=True)
class GeoOrigin:
    """The point where the local ENU frame touches the WGS84 ellipsoid."""

    lat_deg: float = DEFAULT_ORIGIN_LAT_DEG
    lon_deg: float = DEFAULT_ORIGIN_LON_DEG
    alt_m: float = DEFAULT_ORIGIN_ALT_M

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat_deg <= 90.0) or not np.isfinite(self.lat_deg):
            raise ValueError(f"geo origin lat_deg={self.lat_deg!r} is outside [-90, 90]")
        if not (-180.0 <= self.lon_deg <= 180.0) or not np.isfinite(self.lon_deg):
            raise ValueError(f"geo origin lon_deg={self.lon_deg!r} is outside [-180, 180]")

    def to_dict(self) -> dict[str, float]:
        return {"lat_deg": self.lat_deg, "lon_deg": self.lon_deg, "alt_m": self.alt_m}

    @classmethod
    def from_dict(cls, d: dict) -> GeoOrigin:
        return cls(float(d["lat_deg"]), float(d["lon_deg"]), float(d.get("alt_m", 0.0)))


class LocalFrame:
    """A local ENU frame at ``origin``; vectorised over numpy arrays of any shape."""

    def __init__(self, origin: GeoOrigin | None = None) -> None:
        self.origin = origin or GeoOrigin()

    @cached_property
    def _pipeline(self) -> pyproj.Transformer:
        o = self.origin
        return pyproj.Transformer.from_pipeline(
            "+proj=pipeline +step +proj=cart +ellps=WGS84 "
            f"+step +proj=topocentric +ellps=WGS84 +lat_0={o.lat_deg!r} +lon_0={o.lon_deg!r} +h_0={o.alt_m!r}"
        )

    def to_enu(self, lat_deg, lon_deg, alt_m=None):
        """Geodetic -> (east_m, north_m, up_m), each shaped like the inputs."""
        lat = np.asarray(lat_deg, dtype=np.float64)
        lon = np.asarray(lon_deg, dtype=np.float64)
        alt = np.full_like(lat, self.origin.alt_m) if alt_m is None else np.asarray(alt_m, dtype=np.float64)
        # proj's geodetic input order is lon, lat, h (degrees in, since +proj=cart takes degrees via pyproj)
        e, n, u = self._pipeline.transform(lon, lat, alt, radians=False)
        return np.asarray(e), np.asarray(n), np.asarray(u)

    def to_geodetic(self, east_m, north_m, up_m=None):
        """(east_m, north_m, up_m) -> (lat_deg, lon_deg, alt_m), each shaped like the inputs."""
        e = np.asarray(east_m, dtype=np.float64)
        n = np.asarray(north_m, dtype=np.float64)
        u = np.zeros_like(e) if up_m is None else np.asarray(up_m, dtype=np.float64)
        lon, lat, alt = self._pipeline.transform(e, n, u, direction=pyproj.enums.TransformDirection.INVERSE)
        return np.asarray(lat), np.asarray(lon), np.asarray(alt)


def heading_difference_deg(a_deg, b_deg):
    """Signed smallest difference a - b in degrees, in [-180, 180)."""
    return (np.asarray(a_deg) - np.asarray(b_deg) + 180.0) % 360.0 - 180.0

