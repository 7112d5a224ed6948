"""Every drive channel round-trips: a record written with `DriveWriter.write` reads back field for field
with `DriveReader.read`, and a record that crossed the bus (wire codec), went into a drive and came back
out onto the bus is the record that was published. Fields a drive has no slot for come back as the one
documented default (perception/drives/conversions.py)."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from perception.drives import DriveMetadata, DriveReader, DriveWriter
from perception.drives.messages import (
    CameraInfo,
    Detections,
    GeoFix,
    Header,
    Image,
    Odometry,
    Pose,
    Segmentation,
)
from perception.drives.topics import (
    CALIBRATION_TOPIC,
    CAMERA_TOPIC,
    DETECTIONS_TOPIC,
    GPS_TOPIC,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
    TOPICS,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
)

T0 = 1_700_000_000_000_000_000
CAMERA = CameraInfo(64, 48, 60.0, 61.0, 32.5, 24.5, "plumb_bob", (0.1, -0.01, 0.0, 0.0, 0.001))
CLASSES = ["road", "car", "person"]


def _header(i: int, frame_id: str) -> Header:
    return Header(stamp_ns=T0 + i * 1000, seq=0, frame_id=frame_id)  # seq: the drive numbers its own


def _mask() -> np.ndarray:
    return (np.arange(48 * 64).reshape(48, 64) % 3).astype(np.uint8)


def records(jpeg: bytes) -> dict[str, list[msgspec.Struct]]:
    """Records with a non-default value in every field a drive stores, per topic."""
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    mask = _mask()
    fractions = (np.bincount(mask.reshape(-1), minlength=3) / mask.size).tolist()
    boxes = np.array([[1.5, 2.0, 10.0, 20.25], [30.0, 5.0, 40.0, 15.0]], np.float32)
    return {
        CAMERA_TOPIC: [Image(_header(0, "camera"), 64, 48, "jpeg", np.frombuffer(jpeg, np.uint8), CAMERA)],
        GPS_TOPIC: [
            GeoFix(_header(1, "gps"), 55.7, 13.19, 40.5, 271.5, (4.0, 0.0, 0.0, 4.0), 2.5, 3.25, "ublox", True),
            GeoFix(_header(2, "gps"), -33.9, 151.2),  # nothing known beyond the position
        ],
        POSENET_TOPIC: [GeoFix(_header(3, "enu"), 55.71, 13.2, 0.0, 10.0, (9.0, 1.5, 1.5, 16.0), 7.5, None,
                               "posenet-v3", False)],
        POSE_TOPIC: [Pose(_header(4, "enu"), 55.72, 13.21, 41.0, 90.0, 4.5, (4.5, 0.25), 0.125,
                          (2.0, 0.1, 0.1, 3.0), 12.0, 0.5, "degraded", [POSENET_TOPIC, ODOMETRY_TOPIC], True,
                          "no fix accepted for 2.5 s", [f"{POSENET_TOPIC}:heading"])],
        ODOMETRY_TOPIC: [
            Odometry(_header(5, "base_link"), 5.5, -0.25, 0.2, 0.02),
            Odometry(_header(6, "base_link"), 1.0, 0.0),  # stds unknown
        ],
        DETECTIONS_TOPIC: [Detections(_header(7, ""), boxes, np.array([1, 2], np.int32),
                                      np.array([0.75, 0.5], np.float32), CLASSES, 64, 48, "yolo-n", True)],
        SEGMENTATION_TOPIC: [Segmentation(_header(8, "camera"), mask, CLASSES, fractions, "pspnet-s", True)],
        TRUTH_BOXES_TOPIC: [Detections(_header(9, ""), boxes, np.array([0, 1], np.int32),
                                       np.ones(2, np.float32), CLASSES)],
        TRUTH_SEGMENTATION_TOPIC: [Segmentation(_header(10, "camera"), mask, CLASSES, fractions)],
        "raw": [Image(_header(11, "camera"), 64, 48, "bgr8", pixels, CAMERA),
                Image(_header(12, "camera"), 64, 48, "mono8", pixels[..., 0].copy(), CAMERA)],
    }


def plain(value):
    """Comparable form of a record: arrays by dtype, shape and bytes; NaN as a string (NaN != NaN)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, msgspec.Struct):
        return {k: plain(v) for k, v in msgspec.structs.asdict(value).items() if k != "trace"}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _expected(msg: msgspec.Struct, seq: int) -> msgspec.Struct:
    header = msgspec.structs.replace(msg.header, seq=seq)  # type: ignore[attr-defined]
    return msgspec.structs.replace(msg, header=header)


def _write(path, recs, *, raw=False) -> None:
    meta = DriveMetadata(source="roundtrip", camera=CAMERA)
    with DriveWriter(path, meta, image_encoding="bgr8" if raw else "jpeg") as w:
        for topic, msgs in recs.items():
            for msg in msgs:
                w.write(CAMERA_TOPIC if topic == "raw" else topic, msg)


@pytest.fixture
def jpeg(kit) -> bytes:
    from perception.drives.jpeg import encode_jpeg

    return encode_jpeg(kit.frame_image(0))


def test_every_channel_reads_back_what_was_written(tmp_path, jpeg):
    recs = records(jpeg)
    raw = recs.pop("raw")
    path = tmp_path / "all.mcap"
    _write(path, recs)
    assert {t for t, topic in TOPICS.items() if topic.in_drive} == set(recs) | {CALIBRATION_TOPIC}
    with DriveReader(path) as drive:
        for topic, msgs in recs.items():
            back = list(drive.read(topic))
            assert [plain(m) for m in back] == [plain(_expected(m, i)) for i, m in enumerate(msgs)], topic
        assert list(drive.read(CALIBRATION_TOPIC)) == [CAMERA]
        assert drive.errors.total == 0
    path = tmp_path / "raw.mcap"
    _write(path, {"raw": raw}, raw=True)
    with DriveReader(path) as drive:
        back = list(drive.read(CAMERA_TOPIC))
        assert [plain(m) for m in back] == [plain(_expected(m, i)) for i, m in enumerate(raw)]


def test_missing_fields_read_as_unknown_not_as_made_up_values(tmp_path, jpeg):
    path = tmp_path / "sparse.mcap"
    with DriveWriter(path, DriveMetadata()) as w:
        w.write(GPS_TOPIC, GeoFix(Header(T0), 55.7, 13.19))
        w.add_odometry(T0, speed_mps=1.0, yaw_rate_radps=0.0)
    with DriveReader(path) as drive:
        (fix,) = drive.fixes()
        assert math.isnan(fix.cov_enu_m2[0]) and math.isnan(fix.cov_enu_m2[3])  # not identity
        assert math.isnan(fix.horizontal_std_m)
        assert fix.heading_deg is None and fix.speed_mps is None and fix.valid
        (odometry,) = drive.odometry()
        assert odometry.speed_std_mps is None and odometry.yaw_rate_std_radps is None


def test_bus_to_drive_to_bus_gives_the_published_records(tmp_path, jpeg):
    from nodes.bus.topics import TOPICS as BUS_TOPICS
    from nodes.bus.wire import Codec

    def over_the_wire(topic: str, msg):
        codec = Codec(BUS_TOPICS[topic])
        return codec.decode([bytes(memoryview(f)) for f in codec.encode(msg)])

    recs = {t: m for t, m in records(jpeg).items() if t in BUS_TOPICS}
    received = {t: [over_the_wire(t, m) for m in msgs] for t, msgs in recs.items()}  # what a recorder gets
    path = tmp_path / "recorded.mcap"
    _write(path, received)
    with DriveReader(path) as drive:
        for topic, msgs in recs.items():
            replayed = [over_the_wire(topic, m) for m in drive.read(topic)]  # what replay publishes
            assert [plain(m) for m in replayed] == [plain(_expected(m, i)) for i, m in enumerate(msgs)], topic
