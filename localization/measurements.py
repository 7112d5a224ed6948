"""What the pose filter (`localization.filter`) consumes: PoseNet/GPS fixes as hypothesis mixtures, and
wheel odometry. Plain records in the filter's local ENU frame (metres, `localization.geodesy`), numpy only.

Angles: a fix's heading is a compass heading (degrees clockwise from north, as ``GeoFix.heading_deg``);
the filter keeps an ENU yaw (radians counter-clockwise from east, REP-103) and converts with
`yaw_from_heading_rad` / `heading_from_yaw_deg`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

# Measurement kinds `PoseFilter.handle` understands.
POSENET = "posenet"
GPS = "gps"
ODOMETRY = "odom"  # a measurement kind, not the bus topic of the same concept
KINDS = (POSENET, GPS, ODOMETRY)


class Hypothesis(NamedTuple):
    """One place the image (or receiver) may have been taken at.

    east_m, north_m: position in the filter's ENU frame. heading_deg: compass heading or None (unknown).
    cov_enu_m2: [2, 2] east/north covariance of this position *if this hypothesis is the right one*.
    heading_std_deg: 1-sigma of the heading (ignored when heading_deg is None). weight: the source's
    probability that this hypothesis is the right one (weights of a fix need not sum to 1).
    """

    east_m: float
    north_m: float
    heading_deg: float | None
    cov_enu_m2: np.ndarray
    heading_std_deg: float
    weight: float = 1.0


class FixMeasurement(NamedTuple):
    """A position (+ heading) fix as a mixture of hypotheses; one hypothesis is an ordinary fix.

    noise_scale: every hypothesis's position covariance times this (> 0): how much less (> 1) the fix is
    trusted than its source says, e.g. from the scene it was taken in (`localization.context`)."""

    hypotheses: Sequence[Hypothesis]
    noise_scale: float = 1.0


class OdometryMeasurement(NamedTuple):
    """Body-frame wheel/gyro odometry: forward speed (m/s) and yaw rate (rad/s, counter-clockwise +)."""

    speed_mps: float
    yaw_rate_radps: float


def single_fix(east_m: float, north_m: float, cov_enu_m2, heading_deg: float | None = None,
               heading_std_deg: float = 180.0) -> FixMeasurement:
    """A one-hypothesis fix (today's GeoFix: the best hypothesis with its covariance)."""
    return FixMeasurement([Hypothesis(east_m, north_m, heading_deg, np.asarray(cov_enu_m2, float).reshape(2, 2),
                                      heading_std_deg, 1.0)])


def yaw_from_heading_rad(heading_deg: float) -> float:
    """Compass heading (deg, clockwise from north) -> ENU yaw (rad, counter-clockwise from east), in [-pi, pi)."""
    return wrap_angle_rad(math.radians(90.0 - heading_deg))


def heading_from_yaw_deg(yaw_rad: float) -> float:
    """ENU yaw (rad) -> compass heading in [0, 360) deg."""
    return (90.0 - math.degrees(yaw_rad)) % 360.0


def wrap_angle_rad(a_rad):
    """Any angle -> [-pi, pi)."""
    return (a_rad + math.pi) % (2.0 * math.pi) - math.pi


def check_measurement(kind: str, measurement) -> str | None:
    """Why ``measurement`` cannot be used as a ``kind`` measurement (NaN, inf, bad covariance, wrong
    type), or None when it can."""
    if kind not in KINDS:
        return f"unknown kind {kind!r} (one of {', '.join(KINDS)})"
    if kind == ODOMETRY:
        if not isinstance(measurement, OdometryMeasurement):
            return f"{kind}: expected OdometryMeasurement, got {type(measurement).__name__}"
        if not (math.isfinite(measurement.speed_mps) and math.isfinite(measurement.yaw_rate_radps)):
            return f"{kind}: non-finite speed_mps={measurement.speed_mps!r} or yaw_rate_radps={measurement.yaw_rate_radps!r}"
        return None
    if not isinstance(measurement, FixMeasurement):
        return f"{kind}: expected FixMeasurement, got {type(measurement).__name__}"
    if not measurement.hypotheses:
        return f"{kind}: a fix without hypotheses"
    if not (math.isfinite(measurement.noise_scale) and measurement.noise_scale > 0):
        return f"{kind}: noise_scale {measurement.noise_scale!r} must be finite and > 0"
    for k, h in enumerate(measurement.hypotheses):
        cov = np.asarray(h.cov_enu_m2, float)
        if not (math.isfinite(h.east_m) and math.isfinite(h.north_m)):
            return f"{kind}: hypothesis {k} has non-finite position ({h.east_m!r}, {h.north_m!r})"
        if cov.shape != (2, 2) or not np.all(np.isfinite(cov)):
            return f"{kind}: hypothesis {k} cov_enu_m2 must be a finite 2x2 matrix, got {cov.tolist()!r}"
        if cov[0, 0] <= 0 or cov[0, 0] * cov[1, 1] - cov[0, 1] * cov[1, 0] <= 0:
            return f"{kind}: hypothesis {k} cov_enu_m2 {cov.tolist()!r} is not positive definite"
        if h.heading_deg is not None and not (math.isfinite(h.heading_deg) and math.isfinite(h.heading_std_deg)
                                              and h.heading_std_deg > 0):
            return f"{kind}: hypothesis {k} heading {h.heading_deg!r} +- {h.heading_std_deg!r} deg is not usable"
        if not (math.isfinite(h.weight) and h.weight >= 0):
            return f"{kind}: hypothesis {k} weight {h.weight!r} must be finite and >= 0"
    return None
