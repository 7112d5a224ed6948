"""Tracks: interpolation, headings from motion, distances; GPX/CSV/NMEA files in and GPX/GeoJSON out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from localization.nmea import format_gga, format_rmc
from perception.drives import Track
from perception.drives.trackio import (
    format_time_iso,
    parse_time_ns,
    read_csv_track,
    read_gpx,
    read_track_file,
    track_geojson,
    write_gpx,
)

T0 = 1_402_136_645_000_000_000  # 2014-06-07T10:24:05Z
M_PER_DEG_LAT = 111_320.0  # near enough at 55 deg for metre-level checks


def _east_then_north() -> Track:
    # 10 m east, then 10 m north, one fix per second, 5 s per leg
    lat0, lon0 = 55.7, 13.19
    m_per_deg_lon = M_PER_DEG_LAT * np.cos(np.radians(lat0))
    east = [0, 2, 4, 6, 8, 10, 10, 10, 10, 10, 10]
    north = [0, 0, 0, 0, 0, 0, 2, 4, 6, 8, 10]
    return Track(
        [T0 + i * 10**9 for i in range(11)],
        [lat0 + n / M_PER_DEG_LAT for n in north],
        [lon0 + e / m_per_deg_lon for e in east],
    )


def test_distance_and_bounds():
    track = _east_then_north()
    assert track.distance_m() == pytest.approx(20.0, rel=5e-3)
    lat_min, lon_min, lat_max, lon_max = track.bounds()
    assert lat_min == 55.7 and lon_min == 13.19 and lat_max > lat_min and lon_max > lon_min


def test_headings_from_motion_follow_the_turn():
    headings = _east_then_north().headings_from_motion(min_baseline_m=2.0)
    assert headings[1] == pytest.approx(90.0, abs=1.0)
    assert headings[8] == pytest.approx(0.0, abs=1.0)


def test_standing_still_keeps_the_last_heading():
    track = _east_then_north()
    still = Track(np.append(track.stamp_ns, track.stamp_ns[-1] + np.arange(1, 4) * 10**9),
                  np.append(track.lat_deg, [track.lat_deg[-1]] * 3), np.append(track.lon_deg, [track.lon_deg[-1]] * 3))
    headings = still.headings_from_motion()
    assert np.all(np.isfinite(headings))
    assert headings[-1] == pytest.approx(0.0, abs=1.0)


def test_interpolation_positions_and_heading_wrap():
    track = Track([T0, T0 + 2 * 10**9], [55.0, 55.0002], [13.0, 13.0], heading_deg=[350.0, 10.0])
    at, inside = track.interpolate(np.array([T0 + 10**9, T0 - 10**9, T0 + 3 * 10**9]))
    assert at.lat_deg[0] == pytest.approx(55.0001)
    assert at.heading_deg[0] == pytest.approx(0.0, abs=1e-9) or at.heading_deg[0] == pytest.approx(360.0)
    assert inside.tolist() == [True, False, False]
    _, inside = track.interpolate(np.array([T0 + 10**9, T0]), max_gap_s=1.0)
    assert inside.tolist() == [False, True]  # across a 2 s gap no; on a fix yes


def test_time_parsing():
    assert parse_time_ns("2014-06-07T10:24:05Z") == T0
    assert parse_time_ns("2014-06-07T12:24:05.5+02:00") == T0 + 500_000_000
    assert parse_time_ns("2011-09-26 13:02:25.964389445") == parse_time_ns("2011-09-26T13:02:25Z") + 964_389_445
    assert parse_time_ns("1402136645.25") == T0 + 250_000_000
    assert format_time_iso(T0 + 656_000_000) == "2014-06-07T10:24:05.656Z"
    with pytest.raises(ValueError, match="neither ISO 8601"):
        parse_time_ns("yesterday")


GPX = """<?xml version="1.0"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
 <trk><trkseg>
  <trkpt lat="55.70000" lon="13.19000"><ele>40</ele><time>2014-06-07T10:24:06Z</time></trkpt>
  <trkpt lat="55.70010" lon="13.19000"><ele>41</ele><time>2014-06-07T10:24:05Z</time></trkpt>
 </trkseg></trk>
</gpx>
"""


def test_read_gpx_sorts_by_time(tmp_path):
    path = tmp_path / "t.gpx"
    path.write_text(GPX)
    track = read_gpx(path).track
    assert track.stamp_ns.tolist() == [T0, T0 + 10**9]
    assert track.lat_deg.tolist() == [55.7001, 55.7] and track.alt_m.tolist() == [41.0, 40.0]


@pytest.mark.parametrize(
    "bad, message",
    [
        # gpxpy reads GPX and keeps no line numbers: the file and the value or field are named
        ('<trkpt lat="x" lon="13.19">', r"t\.gpx: not a valid GPX file: .*'x'"),
        ('<trkpt lon="13.19">', r"t\.gpx: not a valid GPX file: latitude is mandatory"),
    ],
)
def test_gpx_errors_name_file_and_value(tmp_path, bad, message):
    path = tmp_path / "t.gpx"
    path.write_text(GPX.replace('<trkpt lat="55.70000" lon="13.19000">', bad))
    with pytest.raises(ValueError, match=message):
        read_gpx(path)


def test_gpx_without_times_or_broken_xml(tmp_path):
    path = tmp_path / "t.gpx"
    path.write_text(GPX.replace("<time>2014-06-07T10:24:06Z</time>", ""))
    with pytest.raises(ValueError, match=r"t\.gpx: track point 1 of 2 \(lat 55\.7, lon 13\.19\) has no valid <time>"):
        read_gpx(path)
    path.write_text(GPX.replace("</trkseg>", ""))
    with pytest.raises(ValueError, match=r"t\.gpx: not valid GPX XML \(.*line 6"):
        read_gpx(path)


def test_csv_track_with_aliases_and_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Time;Latitude;Longitude;speed\n2014-06-07T10:24:05Z;55.7;13.19;1.5\n2014-06-07T10:24:06Z;55.7001;13.19;\n")
    result = read_csv_track(path)
    assert not result.relative_time
    assert result.track.stamp_ns.tolist() == [T0, T0 + 10**9]
    assert result.track.speed_mps[0] == 1.5 and np.isnan(result.track.speed_mps[1])

    path.write_text("t_s,lat_deg,lon_deg\n0.0,55.7,13.19\n1.5,55.7001,13.19\n")
    result = read_csv_track(path)
    assert result.relative_time and result.track.stamp_ns.tolist() == [0, 1_500_000_000]

    path.write_text("t_s,lat_deg,lon_deg\n0.0,55.7,13.19\n1.0,north,13.19\n")
    with pytest.raises(ValueError, match=r"t\.csv:3: 'lat_deg'='north' is not a number"):
        read_csv_track(path)
    path.write_text("t_s,lat_deg\n0.0,55.7\n")
    with pytest.raises(ValueError, match=r"t\.csv:1: CSV header has no lon_deg column"):
        read_csv_track(path)
    path.write_text("t_s,time,lat,lon\n0,0,55.7,13.19\n")
    with pytest.raises(ValueError, match="exactly one time column"):
        read_csv_track(path)


def test_nmea_track_file(tmp_path):
    path = tmp_path / "t.nmea"
    lines = []
    for i in range(3):
        stamp = T0 + i * 10**9
        lines += [format_rmc(stamp, 55.7 + i * 1e-5, 13.19, speed_mps=1.1, course_deg=0.0), format_gga(stamp, 55.7 + i * 1e-5, 13.19, alt_m=40.0, hdop=0.8)]
    path.write_text("".join(lines))
    track = read_track_file(path).track
    assert track.stamp_ns.tolist() == [T0, T0 + 10**9, T0 + 2 * 10**9]
    assert track.speed_mps[0] == pytest.approx(1.1, abs=0.01) and track.horizontal_std_m[0] == pytest.approx(4.0)


def test_gpx_export_reads_back(tmp_path):
    track = _east_then_north().with_motion_headings()
    track.alt_m = np.full(len(track), 40.0)
    track.speed_mps = np.full(len(track), 2.0)
    path = tmp_path / "out.gpx"
    write_gpx(path, track, name="x")
    back = read_gpx(path).track
    assert back.stamp_ns.tolist() == track.stamp_ns.tolist()
    assert np.allclose(back.lat_deg, track.lat_deg, atol=1e-8) and np.allclose(back.lon_deg, track.lon_deg, atol=1e-8)
    assert np.allclose(back.heading_deg, track.heading_deg, atol=0.01) and np.allclose(back.speed_mps, 2.0)


def test_geojson_is_lon_lat_with_times():
    track = _east_then_north()
    doc = json.loads(json.dumps(track_geojson(track, properties={"name": "x"}, points=True)))
    line, *points = doc["features"]
    assert line["geometry"]["type"] == "LineString"
    assert line["geometry"]["coordinates"][0] == [13.19, 55.7]  # RFC 7946: longitude first
    assert line["properties"]["coordTimes"][0] == "2014-06-07T10:24:05.000Z"
    assert line["properties"]["name"] == "x" and line["properties"]["distance_m"] == pytest.approx(20.0, rel=5e-3)
    assert len(points) == len(track) and points[3]["properties"]["stamp_ns"] == T0 + 3 * 10**9
