"""``streetloc import / info / export`` as a user runs them: outputs, files, and one-line errors."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from nodes.cli import main
from perception.drives.trackio import read_gpx

START = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def photo_drive(kit, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        kit.write_geotagged_jpeg(folder / f"p{i}.jpg", lat_deg=55.7 + i * 1e-4, lon_deg=13.19,
                                 when=START + dt.timedelta(seconds=i), seed=i)
    out = tmp_path / "walk.mcap"
    assert main(["import", "photos", str(folder), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out}: 4 frames, 4 GPS fixes, 3.0 s" in stdout
    return out


def test_info_reports_what_a_user_asks(photo_drive, capsys):
    assert main(["info", str(photo_drive), "--check"]) == 0
    out = capsys.readouterr().out
    assert "status:    complete" in out
    assert "duration:  3.00 s" in out
    assert "frame:     64x48 px" in out
    assert "frames:    0 corrupt frame(s)" in out
    assert "bbox:      lat 55.7000000 .. 55.7003000, lon 13.1900000 .. 13.1900000 (gps/fix)" in out
    assert "distance:  33.4 m (gps/fix)" in out  # 3 x 0.0001 deg of latitude at 55.7 N
    camera_line = next(line for line in out.splitlines() if line.strip().startswith("camera/image"))
    assert "foxglove.CompressedImage" in camera_line and "4 msgs" in camera_line and "1.00 Hz" in camera_line


def test_info_json(photo_drive, capsys):
    assert main(["info", str(photo_drive), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["truncated"] is False and info["frame_size_px"] == [64, 48]
    assert {c["topic"]: c["count"] for c in info["channels"]}["gps/fix"] == 4


def test_export_gpx_and_geojson(photo_drive, tmp_path, capsys):
    gpx = tmp_path / "walk.gpx"
    assert main(["export", str(photo_drive), "-o", str(gpx)]) == 0
    assert "4 fixes from gps/fix" in capsys.readouterr().out
    track = read_gpx(gpx).track
    assert len(track) == 4 and track.lat_deg[3] == pytest.approx(55.7003)

    geojson = tmp_path / "walk.geojson"
    assert main(["export", str(photo_drive), "-o", str(geojson), "--points"]) == 0
    doc = json.loads(geojson.read_text())
    assert doc["features"][0]["geometry"]["type"] == "LineString" and len(doc["features"]) == 5


def test_errors_are_one_line_naming_the_input(photo_drive, tmp_path, capsys):
    assert main(["export", str(photo_drive), "-o", str(tmp_path / "x.gpx"), "--topic", "odometry"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streetloc export: error:") and "no topic 'odometry'" in err and "gps/fix" in err
    assert len(err.splitlines()) == 1

    assert main(["export", str(photo_drive), "-o", str(tmp_path / "x.kml")]) == 2
    assert "use .gpx or .geojson" in capsys.readouterr().err

    not_a_drive = tmp_path / "notes.txt"
    not_a_drive.write_text("hello")
    assert main(["info", str(not_a_drive)]) == 2
    assert "notes.txt: not an MCAP drive" in capsys.readouterr().err

    assert main(["info", str(tmp_path / "missing.mcap")]) == 2
    assert "missing.mcap" in capsys.readouterr().err

    nmea = tmp_path / "bad.nmea"
    nmea.write_text("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6B\n")
    video = tmp_path / "clip.avi"
    video.write_bytes(b"")
    assert main(["import", "video", str(video), "--track", str(nmea)]) == 2
    assert "bad.nmea:1: NMEA checksum mismatch" in capsys.readouterr().err
