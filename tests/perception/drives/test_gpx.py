"""GPX through gpxpy: what real files carry (GPX 1.0 course/speed, Garmin extensions, hdop, time zones,
routes), what the writer emits as gpxpy reads it, and the errors gpxpy alone would let through."""

from __future__ import annotations

import datetime as dt

import gpxpy
import numpy as np
import pytest

from perception.drives.track import Track
from perception.drives.trackio import read_gpx, write_gpx

T0 = 1_402_136_645 * 10**9  # 2014-06-07T10:24:05Z

GPX_11 = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">
 <trk><trkseg>
  <trkpt lat="55.70000" lon="13.19000"><ele>40</ele><time>2014-06-07T12:24:06.25+02:00</time><hdop>1.5</hdop>
   <extensions><gpxtpx:TrackPointExtension><gpxtpx:speed>1.5</gpxtpx:speed><gpxtpx:course>90</gpxtpx:course>
   </gpxtpx:TrackPointExtension></extensions></trkpt>
  <trkpt lat="55.70010" lon="13.19000"><time>2014-06-07T10:24:05</time></trkpt>
 </trkseg></trk>
</gpx>
"""


def test_gpx_11_with_zones_hdop_and_garmin_extension(tmp_path):
    path = tmp_path / "t.gpx"
    path.write_text(GPX_11)
    result = read_gpx(path)
    track = result.track
    # sorted by time; a zone offset is applied, a time without zone is UTC
    assert track.stamp_ns.tolist() == [T0, T0 + 1_250_000_000]
    assert track.lat_deg.tolist() == [55.7001, 55.7]
    assert np.isnan(track.alt_m[0]) and track.alt_m[1] == 40.0
    assert track.speed_mps[1] == 1.5 and track.heading_deg[1] == 90.0 and np.isnan(track.speed_mps[0])
    assert track.horizontal_std_m[1] == 7.5 and np.isnan(track.horizontal_std_m[0])  # hdop x 5 m


def test_gpx_10_course_speed_and_route_points(tmp_path):
    path = tmp_path / "r.gpx"
    path.write_text("""<?xml version="1.0"?>
<gpx version="1.0" creator="x" xmlns="http://www.topografix.com/GPX/1/0">
 <trk><trkseg><trkpt lat="1.5" lon="-2.5"><time>2014-06-07T10:24:05Z</time><course>12.5</course><speed>3.5</speed>
 </trkpt></trkseg></trk>
</gpx>""")
    track = read_gpx(path).track
    assert (track.lat_deg[0], track.lon_deg[0], track.heading_deg[0], track.speed_mps[0]) == (1.5, -2.5, 12.5, 3.5)
    path.write_text("""<?xml version="1.0"?>
<gpx version="1.1" creator="x" xmlns="http://www.topografix.com/GPX/1/1">
 <wpt lat="9" lon="9"><time>2014-06-07T10:24:05Z</time></wpt>
 <rte><rtept lat="1.5" lon="-2.5"><time>2014-06-07T10:24:06Z</time></rtept></rte>
</gpx>""")
    track = read_gpx(path).track  # route points, not the waypoint, when there is no track
    assert (track.stamp_ns.tolist(), track.lat_deg.tolist()) == ([T0 + 10**9], [1.5])


def test_bad_values_gpxpy_would_pass_are_refused(tmp_path):
    path = tmp_path / "t.gpx"
    # gpxpy reads a time it cannot parse as no time, and does not check ranges
    path.write_text(GPX_11.replace("<time>2014-06-07T10:24:05</time>", "<time>yesterday</time>"))
    with pytest.raises(ValueError, match=r"t\.gpx: track point 2 of 2 \(lat 55\.7001, lon 13\.19\) has no valid <time>"):
        read_gpx(path)
    path.write_text(GPX_11.replace('lat="55.70010"', 'lat="95"'))
    with pytest.raises(ValueError, match=r"t\.gpx: track point 2 of 2: position lat=95\.0, lon=13\.19 is out of range"):
        read_gpx(path)
    path.write_text(GPX_11.replace("<gpxtpx:speed>1.5", "<gpxtpx:speed>fast"))
    with pytest.raises(ValueError, match=r"t\.gpx: track point 1 of 2: <speed> 'fast' is not a number"):
        read_gpx(path)


def test_written_gpx_reads_back_in_gpxpy_and_here(tmp_path):
    stamps = T0 + np.array([0, 1_500_000_000, 3_000_000_000])
    track = Track(stamps, [55.7, 55.70001, 55.70002], [13.19, 13.19001, 13.19002], [40.0, np.nan, 41.5],
                  [0.0, 45.25, np.nan], [1.5, np.nan, 2.0])
    path = tmp_path / "out.gpx"
    write_gpx(path, track, name="walk & talk")
    gpx = gpxpy.parse(path.read_text())
    assert gpx.tracks[0].name == "walk & talk"
    points = gpx.tracks[0].segments[0].points
    assert [p.time for p in points] == [dt.datetime(2014, 6, 7, 10, 24, 5, tzinfo=dt.UTC) + dt.timedelta(seconds=s)
                                        for s in (0, 1.5, 3.0)]
    assert [p.latitude for p in points] == [55.7, 55.70001, 55.70002] and points[1].elevation is None
    back = read_gpx(path).track
    np.testing.assert_array_equal(back.stamp_ns, stamps)
    np.testing.assert_allclose(back.lon_deg, track.lon_deg, atol=1e-8)
    np.testing.assert_allclose(back.heading_deg, track.heading_deg, atol=0.01)  # NaN where unknown
    np.testing.assert_allclose(back.speed_mps, track.speed_mps, atol=0.001)
    np.testing.assert_allclose(back.alt_m, track.alt_m, atol=0.01)
