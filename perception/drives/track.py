"""A position track as arrays: interpolation to other times, headings from motion, distance, bounds.

Used for a drive's GPS and pose channels, for the tracks importers read (GPX, NMEA, CSV, EXIF, oxts),
and for export. Distances and bearings are geodesic on WGS84 (pyproj.Geod), so they hold for long
drives as well as short walks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyproj

_GEOD = pyproj.Geod(ellps="WGS84")


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


@dataclass
class Track:
    """Fixes in time order. Arrays are all shaped [N]; NaN marks an unknown value.

    ``heading_deg`` is the compass heading (clockwise from true north, [0, 360)), ``alt_m`` the
    ellipsoidal altitude, ``horizontal_std_m`` the 1-sigma error per horizontal axis.
    """

    stamp_ns: np.ndarray  # int64
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray = field(default=None)  # type: ignore[assignment]
    heading_deg: np.ndarray = field(default=None)  # type: ignore[assignment]
    speed_mps: np.ndarray = field(default=None)  # type: ignore[assignment]
    horizontal_std_m: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.stamp_ns = np.asarray(self.stamp_ns, dtype=np.int64).reshape(-1)
        n = len(self.stamp_ns)
        for name in ("lat_deg", "lon_deg", "alt_m", "heading_deg", "speed_mps", "horizontal_std_m"):
            value = getattr(self, name)
            array = _nan(n) if value is None else np.asarray(value, dtype=np.float64).reshape(-1)
            if len(array) != n:
                raise ValueError(f"track {name} has {len(array)} values for {n} stamps")
            setattr(self, name, array)

    def __len__(self) -> int:
        return len(self.stamp_ns)

    @classmethod
    def empty(cls) -> Track:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    def take(self, index: np.ndarray | slice) -> Track:
        """The fixes at ``index`` (a boolean mask, integer indices or a slice)."""
        return Track(
            self.stamp_ns[index], self.lat_deg[index], self.lon_deg[index], self.alt_m[index],
            self.heading_deg[index], self.speed_mps[index], self.horizontal_std_m[index],
        )

    def sorted(self) -> Track:
        """Sorted by time (stable), duplicates of the same stamp kept."""
        order = np.argsort(self.stamp_ns, kind="stable")
        return self.take(order)

    @property
    def start_ns(self) -> int:
        return int(self.stamp_ns[0])

    @property
    def end_ns(self) -> int:
        return int(self.stamp_ns[-1])

    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lat_deg, min_lon_deg, max_lat_deg, max_lon_deg); ValueError when empty."""
        if not len(self):
            raise ValueError("an empty track has no bounds")
        return (
            float(self.lat_deg.min()), float(self.lon_deg.min()),
            float(self.lat_deg.max()), float(self.lon_deg.max()),
        )

    def segment_lengths_m(self) -> np.ndarray:
        """Geodesic length of each step, [N-1] metres."""
        if len(self) < 2:
            return np.zeros(0)
        _, _, dist = _GEOD.inv(self.lon_deg[:-1], self.lat_deg[:-1], self.lon_deg[1:], self.lat_deg[1:])
        return np.asarray(dist, dtype=np.float64)

    def distance_m(self) -> float:
        """Distance travelled along the track, metres."""
        return float(self.segment_lengths_m().sum())

    def headings_from_motion(self, min_baseline_m: float = 4.0) -> np.ndarray:
        """Compass heading of travel at each fix, [N] degrees (NaN when the track never moves).

        Central difference over a baseline of at least ``min_baseline_m`` along the track, so that GPS
        jitter while standing still does not spin the heading; fixes where the baseline cannot be
        reached on one side use a one-sided difference, and still-standing stretches take the heading
        of the nearest motion.
        """
        n = len(self)
        headings = _nan(n)
        if n < 2:
            return headings
        s = np.concatenate([[0.0], np.cumsum(self.segment_lengths_m())])  # distance along track, m
        half = min_baseline_m / 2.0
        forward = np.minimum(np.searchsorted(s, s + half, side="left"), n - 1)
        backward = np.maximum(np.searchsorted(s, s - half, side="right") - 1, 0)
        az, _, dist = _GEOD.inv(self.lon_deg[backward], self.lat_deg[backward], self.lon_deg[forward], self.lat_deg[forward])
        az = np.asarray(az, dtype=np.float64) % 360.0
        moving = (np.asarray(dist) >= half) & (forward != backward)
        headings[moving] = az[moving]
        if not moving.any():
            return headings
        # Fill still-standing fixes from the nearest fix that moved.
        known = np.flatnonzero(moving)
        idx = np.searchsorted(known, np.arange(n))
        left = known[np.clip(idx - 1, 0, len(known) - 1)]
        right = known[np.clip(idx, 0, len(known) - 1)]
        nearest = np.where(np.abs(np.arange(n) - left) <= np.abs(right - np.arange(n)), left, right)
        return np.where(moving, headings, headings[nearest])

    def with_motion_headings(self, *, overwrite: bool = False, min_baseline_m: float = 4.0) -> Track:
        """A copy whose unknown headings (all, with ``overwrite``) come from `headings_from_motion`."""
        motion = self.headings_from_motion(min_baseline_m)
        heading = motion if overwrite else np.where(np.isfinite(self.heading_deg), self.heading_deg, motion)
        return replace(self, heading_deg=heading)

    def speeds_from_motion(self) -> np.ndarray:
        """Ground speed of each fix from its neighbours' positions and times, [N] m/s (NaN if N < 2)."""
        n = len(self)
        if n < 2:
            return _nan(n)
        seg = self.segment_lengths_m()
        dt_s = np.diff(self.stamp_ns).astype(np.float64) / 1e9
        with np.errstate(divide="ignore", invalid="ignore"):
            step_speed = np.where(dt_s > 0, seg / dt_s, np.nan)
        speed = _nan(n)
        speed[0], speed[-1] = step_speed[0], step_speed[-1]
        speed[1:-1] = np.nanmean(np.stack([step_speed[:-1], step_speed[1:]]), axis=0) if n > 2 else speed[1:-1]
        return speed

    def interpolate(self, stamps_ns: np.ndarray, *, max_gap_s: float | None = None) -> tuple[Track, np.ndarray]:
        """The track at other times: positions linear in time between the two bracketing fixes, heading
        along the shorter arc; times outside the track get the nearest end fix.

        Returns ``(track, inside)`` where ``inside`` [M] is True for times within the track's span whose
        bracketing fixes are at most ``max_gap_s`` apart (when given).
        """
        stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        if not len(self):
            raise ValueError("cannot interpolate an empty track")
        # Times relative to the first fix, in seconds, so float64 keeps ns-level resolution.
        t0 = self.stamp_ns[0]
        t = (self.stamp_ns - t0).astype(np.float64) / 1e9
        q = (stamps - t0).astype(np.float64) / 1e9

        def lerp(values: np.ndarray) -> np.ndarray:
            finite = np.isfinite(values)
            if not finite.any():
                return _nan(len(q))
            return np.interp(q, t[finite], values[finite])

        heading = _nan(len(q))
        finite_h = np.isfinite(self.heading_deg)
        if finite_h.any():
            unwrapped = np.degrees(np.unwrap(np.radians(self.heading_deg[finite_h])))
            heading = np.interp(q, t[finite_h], unwrapped) % 360.0
        out = Track(
            stamps, lerp(self.lat_deg), lerp(self.lon_deg), lerp(self.alt_m), heading,
            lerp(self.speed_mps), lerp(self.horizontal_std_m),
        )
        inside = (stamps >= self.stamp_ns[0]) & (stamps <= self.stamp_ns[-1])
        if max_gap_s is not None and len(self) > 1:
            at = np.searchsorted(self.stamp_ns, stamps, side="left")
            exact = self.stamp_ns[np.minimum(at, len(self) - 1)] == stamps  # on a fix: no gap to bridge
            right = np.clip(at, 1, len(self) - 1)
            gap_s = (self.stamp_ns[right] - self.stamp_ns[right - 1]) / 1e9
            inside &= (gap_s <= max_gap_s) | exact
        return out, inside
