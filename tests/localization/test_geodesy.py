"""Geodetic <-> local ENU against known coordinates (not only round trips, which an east/north swap
made consistently in both directions would pass)."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import pytest

from localization.geodesy import GeoOrigin, LocalFrame, heading_difference_deg

WGS84_A_M = 6_378_137.0  # semi-major axis
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)
GEOD = pyproj.Geod(ellps="WGS84")
ORIGIN = GeoOrigin()  # downtown Los Angeles, 90 m


def test_equator_by_hand():
    # At (0, 0, 0) a degree of longitude is a * pi / 180 m of east, and a degree of latitude is the
    # meridian radius of curvature a (1 - e^2) * pi / 180 m of north.
    frame = LocalFrame(GeoOrigin(0.0, 0.0, 0.0))
    east_m, north_m, up_m = frame.to_enu(0.0, 0.001)
    assert float(east_m) == pytest.approx(WGS84_A_M * math.radians(0.001), abs=1e-3)  # 111.319 m
    assert abs(float(north_m)) < 1e-6 and float(up_m) < 0  # the tangent plane leaves the ellipsoid
    east_m, north_m, _ = frame.to_enu(0.001, 0.0)
    assert float(north_m) == pytest.approx(WGS84_A_M * (1 - WGS84_E2) * math.radians(0.001), abs=1e-3)  # 110.574 m
    assert abs(float(east_m)) < 1e-6
    lat_deg, lon_deg, _ = frame.to_geodetic(0.0, 1000.0)
    assert float(lat_deg) == pytest.approx(math.degrees(1000.0 / (WGS84_A_M * (1 - WGS84_E2))), abs=1e-9)
    assert float(lon_deg) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("azimuth_deg, east, north", [(0, 0, 1), (90, 1, 0), (180, 0, -1), (270, -1, 0)])
def test_100_m_along_each_axis_matches_pyproj_geod(azimuth_deg, east, north):
    # pyproj's geodesic 100 m from the origin along a compass azimuth lands 100 m along that ENU axis
    # (at the origin's 90 m height the arc is 90/6.4e6 longer: 1.4 mm, far inside the tolerance)
    lon_deg, lat_deg, _ = GEOD.fwd(ORIGIN.lon_deg, ORIGIN.lat_deg, azimuth_deg, 100.0)
    east_m, north_m, up_m = LocalFrame(ORIGIN).to_enu(lat_deg, lon_deg)
    assert float(east_m) == pytest.approx(100.0 * east, abs=0.01)
    assert float(north_m) == pytest.approx(100.0 * north, abs=0.01)
    assert abs(float(up_m)) < 0.01


def test_to_geodetic_matches_pyproj_geod_inverse():
    frame = LocalFrame(ORIGIN)
    lat_deg, lon_deg, alt_m = frame.to_geodetic(np.array([100.0, 0.0, 30.0]), np.array([0.0, 100.0, -40.0]))
    assert lat_deg.shape == lon_deg.shape == alt_m.shape == (3,)
    azimuth_deg, _, distance_m = GEOD.inv([ORIGIN.lon_deg] * 3, [ORIGIN.lat_deg] * 3, lon_deg, lat_deg)
    np.testing.assert_allclose(np.mod(azimuth_deg, 360.0), [90.0, 0.0, math.degrees(math.atan2(30.0, -40.0))],
                               atol=1e-3)
    np.testing.assert_allclose(distance_m, [100.0, 100.0, 50.0], atol=0.01)
    # east moves longitude only (to first order), north latitude only: at 34 deg N, 100 m east is
    # 100 / ((N + h) cos(lat)) rad of longitude, N the prime vertical radius, h the origin's height
    n_m = WGS84_A_M / math.sqrt(1 - WGS84_E2 * math.sin(math.radians(ORIGIN.lat_deg)) ** 2)
    assert lon_deg[0] - ORIGIN.lon_deg == pytest.approx(
        math.degrees(100.0 / ((n_m + ORIGIN.alt_m) * math.cos(math.radians(ORIGIN.lat_deg)))), rel=1e-6)
    assert lat_deg[0] == pytest.approx(ORIGIN.lat_deg, abs=1e-8)
    assert lon_deg[1] == pytest.approx(ORIGIN.lon_deg, abs=1e-12) and lat_deg[1] > ORIGIN.lat_deg


def test_round_trip_keeps_shape_and_height():
    frame = LocalFrame(ORIGIN)
    east_m = np.linspace(-500.0, 500.0, 6).reshape(2, 3)
    north_m = np.linspace(300.0, -300.0, 6).reshape(2, 3)
    lat_deg, lon_deg, alt_m = frame.to_geodetic(east_m, north_m, np.full((2, 3), 2.0))
    assert lat_deg.shape == (2, 3)
    e, n, u = frame.to_enu(lat_deg, lon_deg, alt_m)
    np.testing.assert_allclose(e, east_m, atol=1e-6)
    np.testing.assert_allclose(n, north_m, atol=1e-6)
    np.testing.assert_allclose(u, 2.0, atol=1e-6)
    # the default height is the origin's on the way in and 0 m up on the way out
    assert float(frame.to_enu(ORIGIN.lat_deg, ORIGIN.lon_deg)[2]) == pytest.approx(0.0, abs=1e-6)
    assert float(frame.to_geodetic(0.0, 0.0)[2]) == pytest.approx(ORIGIN.alt_m, abs=1e-6)


def test_geo_origin_checks_and_dict():
    with pytest.raises(ValueError, match="lat_deg=91"):
        GeoOrigin(91.0, 0.0)
    with pytest.raises(ValueError, match="lon_deg=nan"):
        GeoOrigin(0.0, float("nan"))
    assert GeoOrigin.from_dict(ORIGIN.to_dict()) == ORIGIN
    assert GeoOrigin.from_dict({"lat_deg": 1, "lon_deg": 2}).alt_m == 0.0


def test_heading_difference_is_signed_and_wraps():
    np.testing.assert_allclose(heading_difference_deg([10.0, 350.0, 90.0, 180.0], [350.0, 10.0, 270.0, 0.0]),
                               [20.0, -20.0, -180.0, -180.0])
