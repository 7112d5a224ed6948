"""Drive files: what the writer puts in, as standard MCAP tools see it and as DriveReader gives it back."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from perception.drives import (
    CAMERA_TOPIC,
    GPS_TOPIC,
    POSE_TOPIC,
    CameraInfo,
    DriveMetadata,
    DriveReader,
    DriveWriter,
)
from perception.drives.topics import TOPICS

EXPECTED_SCHEMAS = {
    "camera/image": "foxglove.CompressedImage",
    "camera/calibration": "foxglove.CameraCalibration",
    "gps/fix": "foxglove.LocationFix",
    "odometry": "foxglove.Odometry",
    "truth/boxes": "foxglove.ImageAnnotations",
    "truth/segmentation": "foxglove.RawImage",
}


def _first_decoded(path):
    """First decoded message of each topic, as a plain mcap reader with the protobuf decoder sees it."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        first = {}
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            first.setdefault(channel.topic, (schema, channel, message, decoded))
        metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
    return summary, first, metadata


def test_standard_mcap_reader_sees_foxglove_channels(make_drive, kit):
    path = make_drive(frames=20)
    summary, first, metadata = _first_decoded(path)

    topics = {c.topic: c for c in summary.channels.values()}
    assert {t: summary.schemas[c.schema_id].name for t, c in topics.items()} == EXPECTED_SCHEMAS
    assert all(c.message_encoding == "protobuf" for c in topics.values())
    assert all(s.encoding == "protobuf" for s in summary.schemas.values())
    counts = {summary.channels[i].topic: n for i, n in summary.statistics.channel_message_counts.items()}
    assert counts == {"camera/image": 20, "camera/calibration": 1, "gps/fix": 4, "odometry": 20, "truth/boxes": 4, "truth/segmentation": 4}
    assert all(TOPICS[topic].in_drive for topic in topics)  # every channel is in the one topic table

    _, _, message, image = first["camera/image"]
    assert image.format == "jpeg" and image.data[:2] == b"\xff\xd8"  # raw JPEG bytes, not base64
    assert message.log_time == kit.T0_NS == image.timestamp.seconds * 10**9 + image.timestamp.nanos

    fix = first["gps/fix"][3]
    assert fix.latitude == pytest.approx(kit.ORIGIN.lat_deg) and fix.longitude == pytest.approx(kit.ORIGIN.lon_deg)
    assert fix.altitude == 40.0 and fix.heading == 0.0
    assert list(fix.position_covariance)[0] == pytest.approx(9.0)

    odometry = first["odometry"][3]
    assert odometry.linear_velocity.x == 5.0 and odometry.angular_velocity.z == pytest.approx(0.1)

    boxes = first["truth/boxes"][3]
    assert len(boxes.points) == 2 and boxes.points[0].type == boxes.points[0].LINE_LOOP
    assert [(p.x, p.y) for p in boxes.points[0].points] == [(1, 2), (10, 2), (10, 20), (1, 20)]
    assert {kv.key: kv.value for kv in boxes.points[0].metadata}["class_name"] == "car"
    assert [t.text for t in boxes.texts] == ["car", "pedestrian"]

    _, channel, _, mask = first["truth/segmentation"]
    assert mask.encoding == "mono8" and (mask.width, mask.height, mask.step) == (64, 48, 64)
    assert np.array_equal(np.frombuffer(mask.data, np.uint8).reshape(48, 64), kit.label_mask())
    assert channel.metadata["class_names"].startswith('["sky", "building"')

    calibration = first["camera/calibration"][3]
    assert list(calibration.K) == [60.0, 0.0, 32.0, 0.0, 60.0, 24.0, 0.0, 0.0, 1.0]

    assert metadata["streetloc.drive"]["source"] == "test"
    assert metadata["streetloc.geo_origin"]["lat_deg"] == "55.7"
    assert metadata["streetloc.camera"]["width_px"] == "64"


def test_reader_roundtrip(make_drive, kit):
    path = make_drive(frames=20)
    with DriveReader(path) as drive:
        assert not drive.truncated and drive.has_summary
        meta = drive.metadata
        assert meta.source == "test" and meta.geo_origin == kit.ORIGIN and meta.extra == {"seed": 7, "city": "test"}
        assert meta.camera == CameraInfo(64, 48, 60.0, 60.0, 32.0, 24.0)
        assert drive.duration_s == pytest.approx(1.9)

        channels = drive.channels
        assert channels[CAMERA_TOPIC].message_count == 20
        assert channels[CAMERA_TOPIC].rate_hz == pytest.approx(10.0)
        assert channels[GPS_TOPIC].rate_hz == pytest.approx(2.0)
        assert channels["truth/segmentation"].class_names == kit.CLASSES

        frames = list(drive.images())
        assert [f.header.stamp_ns for f in frames] == [kit.T0_NS + i * 100_000_000 for i in range(20)]
        assert (frames[0].width_px, frames[0].height_px, frames[0].encoding) == (64, 48, "jpeg")  # not decoded
        assert frames[0].intrinsics == meta.camera
        decoded = frames[3].to_bgr()
        assert decoded.shape == (48, 64, 3)
        assert np.abs(decoded.astype(int) - kit.frame_image(3).astype(int)).mean() < 6  # JPEG q90

        fixes = list(drive.fixes())
        assert len(fixes) == 4 and fixes[0].heading_deg == 0.0 and fixes[0].speed_mps == 5.0
        assert fixes[0].horizontal_std_m == pytest.approx(3.0)

        odometry = list(drive.odometry())
        assert len(odometry) == 20 and odometry[0].yaw_rate_radps == pytest.approx(0.1)

        boxes = next(drive.boxes())
        assert boxes.boxes_xyxy_px.dtype == np.float32
        assert np.array_equal(boxes.boxes_xyxy_px, [[1, 2, 10, 20], [30, 5, 40, 15]])
        assert boxes.class_ids.tolist() == [8, 9] and boxes.class_names == kit.CLASSES
        assert boxes.scores.tolist() == [1.0, 1.0]  # ground truth is certain

        masks = list(drive.label_masks())
        assert len(masks) == 4 and np.array_equal(masks[0].label_mask, kit.label_mask()) and masks[0].class_names == kit.CLASSES


def test_time_range_and_topic_filter(make_drive, kit):
    path = make_drive(frames=20)
    with DriveReader(path) as drive:
        start, end = kit.T0_NS + 500_000_000, kit.T0_NS + 1_000_000_000
        images = list(drive.images(start_ns=start, end_ns=end))
        assert [f.header.stamp_ns for f in images] == [kit.T0_NS + i * 100_000_000 for i in range(5, 10)]
        messages = list(drive.messages([GPS_TOPIC, "odometry"], start_ns=start, end_ns=end))
        assert {m.topic for m in messages} == {GPS_TOPIC, "odometry"}
        assert all(start <= m.stamp_ns < end for m in messages)
        stamps = [m.stamp_ns for m in drive.messages()]
        assert stamps == sorted(stamps)
        assert list(drive.messages("no/such/topic")) == []


def test_frames_carry_interpolated_gps(make_drive, kit):
    path = make_drive(frames=20)
    with DriveReader(path) as drive:
        frames = list(drive.frames())
        assert len(frames) == 20
        # GPS every 5th frame heading north at 5 m/s: frame 2 lies 1.0 m north of frame 0's fix
        frame = frames[2]
        assert frame.gps is not None and frame.gps_interpolated
        assert frame.gps.header.stamp_ns == frame.stamp_ns
        assert (frame.gps.lat_deg - kit.ORIGIN.lat_deg) * 111_320.0 == pytest.approx(1.0, abs=1e-3)
        assert frames[0].gps is not None and not frames[0].gps_interpolated
        # after the last fix (frame 15) there is nothing to interpolate towards
        assert frames[17].gps is None
        nearest = list(drive.frames(gps="nearest", max_gap_s=0.25))
        assert nearest[17].gps is not None and nearest[17].gps.header.stamp_ns == kit.T0_NS + 15 * 100_000_000
        assert nearest[19].gps is None  # 0.4 s from the last fix
        assert all(f.gps is None for f in drive.frames(gps="none"))


def test_raw_bgr8_frames_roundtrip_losslessly(tmp_path, kit):
    path = tmp_path / "raw.mcap"
    with DriveWriter(path, DriveMetadata(source="raw"), image_encoding="bgr8") as w:
        for i in range(3):
            w.add_image(kit.T0_NS + i, kit.frame_image(i))
    with DriveReader(path) as drive:
        assert drive.channels[CAMERA_TOPIC].schema_name == "foxglove.RawImage"
        frames = list(drive.images(decode=True))
        assert all(f.encoding == "bgr8" and np.array_equal(f.data, kit.frame_image(i)) for i, f in enumerate(frames))


def test_poses_and_detections_with_scores(tmp_path, kit):
    path = tmp_path / "poses.mcap"
    with DriveWriter(path, DriveMetadata()) as w:
        w.add_pose(kit.T0_NS, lat_deg=10.0, lon_deg=20.0, heading_deg=370.0, cov_enu_m2=(4.0, 1.0, 1.0, 9.0),
                   heading_std_deg=5.0, speed_mps=1.5, status="tracking")
        w.add_boxes(kit.T0_NS, np.array([[0, 0, 5, 5]]), np.array([1]), ["a", "b"], scores=np.array([0.75]),
                    topic="perception/detections")
    with DriveReader(path) as drive:
        (pose,) = drive.fixes(POSE_TOPIC)
        assert pose.heading_deg == pytest.approx(10.0) and pose.cov_enu_m2 == (4.0, 1.0, 1.0, 9.0)
        assert (pose.heading_std_deg, pose.speed_mps, pose.status) == (5.0, 1.5, "tracking")
        assert pose.horizontal_std_m == pytest.approx(math.sqrt(6.5))
        (detections,) = drive.boxes("perception/detections")
        assert detections.scores.tolist() == [0.75] and detections.class_names == ["a", "b"]


def test_writer_rejects_bad_input_with_the_value(tmp_path):
    camera = CameraInfo(64, 48, 60.0, 60.0, 32.0, 24.0)
    with DriveWriter(tmp_path / "bad.mcap", DriveMetadata(camera=camera)) as w:
        with pytest.raises(ValueError, match="image at stamp_ns=5 is 32x48 px but the drive's camera is 64x48"):
            w.add_image(5, np.zeros((48, 32, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            w.add_image(5, np.zeros((48, 64), np.float32))
        with pytest.raises(ValueError, match="lat_deg=91"):
            w.add_gps(5, lat_deg=91.0, lon_deg=0.0)
        with pytest.raises(ValueError, match="stamp_ns=-1"):
            w.add_odometry(-1, speed_mps=0.0, yaw_rate_radps=0.0)
        with pytest.raises(ValueError, match="class id 3 outside the 2-class table"):
            w.add_boxes(5, np.zeros((1, 4)), np.array([3]), ["a", "b"])
        w.add_label_mask(5, np.zeros((4, 4), np.uint8), ["a", "b"])
        with pytest.raises(ValueError, match="class table"):
            w.add_label_mask(6, np.zeros((4, 4), np.uint8), ["a", "c"])


def test_writer_finishes_the_file_when_the_producer_fails(tmp_path, kit):
    path = tmp_path / "crashed.mcap"
    with pytest.raises(RuntimeError), DriveWriter(path, DriveMetadata(source="x")) as w:
        w.add_gps(kit.T0_NS, lat_deg=1.0, lon_deg=2.0)
        raise RuntimeError("producer failed")
    with DriveReader(path) as drive:
        assert drive.has_summary and len(drive.track()) == 1


def test_drive_reading_does_not_import_torch_or_zmq(make_drive):
    path = make_drive(frames=2)
    import subprocess

    code = (
        "import sys; from perception.drives import DriveReader; "
        f"d = DriveReader({str(path)!r}); list(d.frames()); "
        "assert 'torch' not in sys.modules and 'zmq' not in sys.modules, sorted(m for m in sys.modules if m in ('torch', 'zmq'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_streams_written_one_after_another_still_read_in_time_order(tmp_path, kit):
    """An importer that writes all frames, then all fixes, makes chunks that overlap in time."""
    path = tmp_path / "overlap.mcap"
    with DriveWriter(path, DriveMetadata(), chunk_size_bytes=2048) as w:
        for i in range(30):
            w.add_image(kit.T0_NS + i * 10, kit.frame_image(i))
        for i in range(30):
            w.add_gps(kit.T0_NS + i * 10 + 5, lat_deg=1.0, lon_deg=2.0)
    with DriveReader(path) as drive:
        messages = list(drive.messages())
        assert [m.stamp_ns for m in messages] == sorted(m.stamp_ns for m in messages)
        assert [m.topic for m in messages[:4]] == ["camera/image", "gps/fix", "camera/image", "gps/fix"]
        assert all(f.gps is not None for f in list(drive.frames())[1:-1])
