"""Importers: geotagged photos, video + track, KITTI raw; and their rejections of bad input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np
import pytest

from localization.nmea import format_gga, format_rmc
from perception.drives import CAMERA_TOPIC, GPS_TOPIC, DriveReader
from perception.drives.importers import import_kitti, import_photos, import_video
from perception.drives.trackio import write_gpx

UTC = dt.UTC
START = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
START_NS = int(START.timestamp()) * 10**9
LUND = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "lund" / "images"
M_PER_DEG_LAT = 111_320.0


# ------------------------------------------------------------------------------------------------ photos


def _photo_walk(kit, folder: Path, n: int = 5, *, heading: float | None = None) -> list[tuple[float, float]]:
    """n photos 5 m apart walking north-east, named in reverse time order."""
    folder.mkdir()
    positions = []
    for i in range(n):
        lat = 55.7 + i * 3.5 / M_PER_DEG_LAT
        lon = 13.19 + i * 3.5 / (M_PER_DEG_LAT * np.cos(np.radians(55.7)))
        positions.append((lat, lon))
        kit.write_geotagged_jpeg(folder / f"{n - i:02d}.jpg", lat_deg=lat, lon_deg=lon,
                                 when=START + dt.timedelta(seconds=2 * i), heading_deg=heading, seed=i)
    return positions


def test_photos_sorted_by_exif_time_with_heading_from_track(kit, tmp_path):
    positions = _photo_walk(kit, tmp_path / "photos")
    result = import_photos(tmp_path / "photos", tmp_path / "walk.mcap")
    assert (result.frames, result.gps_fixes) == (5, 5)
    assert any("heading from the direction of travel" in n for n in result.notes)
    with DriveReader(tmp_path / "walk.mcap") as drive:
        frames = list(drive.frames(decode=True))
        assert [f.stamp_ns for f in frames] == [START_NS + i * 2 * 10**9 for i in range(5)]
        for frame, (lat, lon) in zip(frames, positions, strict=True):
            assert frame.gps.lat_deg == pytest.approx(lat, abs=1e-6) and frame.gps.lon_deg == pytest.approx(lon, abs=1e-6)
            assert frame.gps.heading_deg == pytest.approx(45.0, abs=1.0)  # north-east
            assert frame.image.data.shape == (48, 64, 3)
        camera = drive.metadata.camera
        assert camera is not None and camera.fx_px == pytest.approx(28 / 36 * 64)
        assert drive.metadata.geo_origin.lat_deg == pytest.approx(positions[0][0])
        assert drive.metadata.extra["time_source"] == "gps"


def test_photos_exif_heading_wins(kit, tmp_path):
    _photo_walk(kit, tmp_path / "photos", heading=200.0)
    import_photos(tmp_path / "photos", tmp_path / "walk.mcap")
    with DriveReader(tmp_path / "walk.mcap") as drive:
        assert all(f.heading_deg == pytest.approx(200.0) for f in drive.fixes())


def test_photos_resized(kit, tmp_path):
    _photo_walk(kit, tmp_path / "photos", n=2)
    import_photos(tmp_path / "photos", tmp_path / "walk.mcap", max_width_px=32)
    with DriveReader(tmp_path / "walk.mcap") as drive:
        assert drive.frame_size() == (32, 24) and drive.metadata.camera.width_px == 32


def test_photo_without_gps_is_rejected_by_name(kit, tmp_path):
    _photo_walk(kit, tmp_path / "photos", n=3)
    kit.write_geotagged_jpeg(tmp_path / "photos" / "nogps.jpg", lat_deg=None, lon_deg=None, when=START)
    with pytest.raises(ValueError, match=r"nogps\.jpg: no GPS position in EXIF"):
        import_photos(tmp_path / "photos", tmp_path / "walk.mcap")


def test_photo_without_time_needs_interval(kit, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        kit.write_geotagged_jpeg(folder / f"{i}.jpg", lat_deg=55.7 + i * 1e-4, lon_deg=13.19, when=None)
    with pytest.raises(ValueError, match=r"0\.jpg: no capture time in EXIF .* --interval-s"):
        import_photos(folder, tmp_path / "walk.mcap")
    result = import_photos(folder, tmp_path / "walk.mcap", interval_s=1.5)
    with DriveReader(result.path) as drive:
        assert [s - drive.start_ns for s in drive.image_stamps()] == [0, 1_500_000_000, 3_000_000_000]


def test_lund_photos(tmp_path):
    # CI and every checkout keep the shared data next to the repository: absent data is a failure
    assert LUND.is_dir(), f"{LUND} is missing: the shared data belongs at ../shared/data next to the repository"
    result = import_photos(LUND, tmp_path / "lund.mcap")
    assert result.frames == 29
    with DriveReader(tmp_path / "lund.mcap") as drive:
        track = drive.track()
        assert len(track) == 29 and np.all(np.isfinite(track.heading_deg))
        assert 150.0 < track.distance_m() < 250.0  # a ~180 m walk, with GPS jitter
        assert drive.frame_size() == (1024, 768)
        assert drive.duration_s == pytest.approx(196.8, abs=0.1)  # Mapillary capture times
        # the walk goes north along the street
        assert track.lat_deg[-1] > track.lat_deg[0]


# ------------------------------------------------------------------------------------------------ video


def _video_track(frames_s: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 1 Hz track from START - 1 s to START + frames_s + 1 s, north at 10 m/s."""
    t = np.arange(-1, frames_s + 2)
    stamps = START_NS + (t * 1e9).astype(np.int64)
    lat = 55.7 + t * 10.0 / M_PER_DEG_LAT
    lon = np.full(len(t), 13.19)
    return stamps, lat, lon


def _gpx(path: Path) -> Path:
    from perception.drives import Track

    stamps, lat, lon = _video_track()
    write_gpx(path, Track(stamps, lat, lon, np.full(len(stamps), 40.0)))
    return path


def test_video_with_gpx_aligned_by_creation_time(kit, tmp_path):
    video = tmp_path / "clip.mp4"
    kit.write_video(video, frames=30, fps=10.0)
    kit.set_mp4_creation_time(video, START)
    result = import_video(video, _gpx(tmp_path / "track.gpx"), tmp_path / "clip.mcap", hfov_deg=90.0)
    assert (result.frames, result.gps_fixes, result.frames_without_gps) == (30, 30, 0)
    with DriveReader(tmp_path / "clip.mcap") as drive:
        frames = list(drive.frames())
        assert frames[0].stamp_ns == START_NS and frames[10].stamp_ns == START_NS + 10**9
        # GPS interpolated to frame time: 0.5 s after START is 5 m north of the START fix
        assert (frames[5].gps.lat_deg - 55.7) * M_PER_DEG_LAT == pytest.approx(5.0, abs=0.01)
        assert frames[5].gps.heading_deg == pytest.approx(0.0, abs=0.5)
        assert frames[5].gps.speed_mps == pytest.approx(10.0, rel=0.01)
        assert drive.metadata.camera.fx_px == pytest.approx(40.0)  # 80 px wide at 90 deg
        assert drive.metadata.extra["time_source"] == "creation_time"


def test_video_with_nmea_start_time_offset_and_fps(kit, tmp_path):
    video = tmp_path / "clip.mp4"
    kit.write_video(video, frames=30, fps=10.0)
    stamps, lat, lon = _video_track()
    nmea = tmp_path / "track.nmea"
    nmea.write_text("".join(format_rmc(int(s), a, b, speed_mps=10.0, course_deg=0.0) + format_gga(int(s), a, b, alt_m=40.0)
                            for s, a, b in zip(stamps, lat, lon, strict=True)))
    result = import_video(video, nmea, tmp_path / "clip.mcap", start_time_ns=START_NS - 10**9, offset_s=1.0, fps=5.0)
    assert result.frames == 15
    with DriveReader(tmp_path / "clip.mcap") as drive:
        stamps_out = drive.image_stamps()
        assert stamps_out[0] == START_NS and stamps_out[1] == START_NS + 200_000_000


def test_video_with_relative_csv(kit, tmp_path):
    video = tmp_path / "clip.avi"
    kit.write_video(video, frames=10, fps=10.0)
    csv = tmp_path / "track.csv"
    csv.write_text("t_s,lat_deg,lon_deg\n0,55.7,13.19\n0.5,55.70005,13.19\n")
    result = import_video(video, csv, tmp_path / "clip.mcap")
    assert result.frames == 10 and result.gps_fixes == 6 and result.frames_without_gps == 4


def test_track_that_misses_the_video_is_rejected(kit, tmp_path):
    video = tmp_path / "clip.mp4"
    kit.write_video(video, frames=10)
    kit.set_mp4_creation_time(video, START + dt.timedelta(hours=2))
    with pytest.raises(ValueError, match=r"track\.gpx: track .* does not overlap the video clip\.mp4 .*--offset"):
        import_video(video, _gpx(tmp_path / "track.gpx"), tmp_path / "clip.mcap")


def test_video_without_creation_time_needs_start_time(kit, tmp_path):
    video = tmp_path / "clip.mp4"
    kit.write_video(video, frames=5)
    with pytest.raises(ValueError, match=r"clip\.mp4: no creation time .*--start-time"):
        import_video(video, _gpx(tmp_path / "track.gpx"), tmp_path / "clip.mcap")


# ------------------------------------------------------------------------------------------------ KITTI


def _kitti(root: Path, frames: int = 4, *, oxts_rows: int | None = None, bad_row: int | None = None) -> Path:
    date = root / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "oxts" / "data").mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\nS_rect_02: 8.000000e+01 6.000000e+01\n"
        "P_rect_02: 7.2e+02 0 4.0e+01 4.5e+01 0 7.1e+02 3.0e+01 -0.3 0 0 1 4.9e-03\n"
    )
    stamps = [f"2011-09-26 13:02:{25 + i * 0.1:012.9f}" for i in range(frames)]
    (drive / "image_02" / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    (drive / "oxts" / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    for i in range(frames):
        cv2.imwrite(str(drive / "image_02" / "data" / f"{i:010d}.png"), np.full((60, 80, 3), 40 * i, np.uint8))
    for i in range(frames if oxts_rows is None else oxts_rows):
        row = np.zeros(30)
        row[:3] = (49.011 + i * 1e-5, 8.42, 112.0)
        row[5] = 0.0  # yaw 0 = facing east
        row[6], row[7], row[8] = 0.0, 10.0, 10.0  # vn, ve, vf
        row[22] = 0.05  # wu, turning left
        row[23] = 0.3  # pos_accuracy
        values = row.tolist() if i != bad_row else row.tolist()[:29]
        (drive / "oxts" / "data" / f"{i:010d}.txt").write_text(" ".join(f"{v:.9f}" for v in values) + "\n")
    return drive


def test_kitti_raw(tmp_path):
    drive_dir = _kitti(tmp_path)
    result = import_kitti(drive_dir, tmp_path / "kitti.mcap")
    assert (result.frames, result.gps_fixes, result.odometry) == (4, 4, 4)
    with DriveReader(tmp_path / "kitti.mcap") as drive:
        assert {CAMERA_TOPIC, GPS_TOPIC, "odometry"} <= set(drive.topics)
        fix = next(drive.fixes())
        assert fix.heading_deg == pytest.approx(90.0)  # yaw 0 (east) is compass 90
        assert fix.speed_mps == pytest.approx(10.0) and fix.horizontal_std_m == pytest.approx(0.3)
        odometry = next(drive.odometry())
        assert odometry.speed_mps == 10.0 and odometry.yaw_rate_radps == pytest.approx(0.05)
        camera = drive.metadata.camera
        assert (camera.width_px, camera.fx_px, camera.cx_px, camera.cy_px) == (80, 720.0, 40.0, 30.0)
        frames = list(drive.frames())
        assert frames[1].stamp_ns - frames[0].stamp_ns == 100_000_000
        assert all(f.gps is not None for f in frames)


def test_kitti_missing_oxts_row_names_file_and_line(tmp_path):
    drive_dir = _kitti(tmp_path, oxts_rows=3)
    with pytest.raises(ValueError, match=r"oxts/data/0000000003\.txt: missing oxts row for .*oxts/timestamps\.txt:4"):
        import_kitti(drive_dir, tmp_path / "kitti.mcap")


def test_kitti_short_oxts_row_names_file_and_line(tmp_path):
    drive_dir = _kitti(tmp_path, bad_row=2)
    with pytest.raises(ValueError, match=r"0000000002\.txt:1: expected 30 oxts values, got 29"):
        import_kitti(drive_dir, tmp_path / "kitti.mcap")


def test_kitti_missing_folder(tmp_path):
    drive_dir = _kitti(tmp_path)
    (drive_dir / "oxts" / "timestamps.txt").unlink()
    with pytest.raises(OSError, match=r"oxts/timestamps\.txt: KITTI timestamps file not found"):
        import_kitti(drive_dir, tmp_path / "kitti.mcap")
