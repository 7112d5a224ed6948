"""The one topic table: every topic of the graph and every channel of a drive, listed once.

Each `Topic` says its name, the message record it carries (`perception.drives.messages`), its expected
rate, whether the recorder keeps it, its bus port offset (None: a drive-only channel, never on the bus),
the Foxglove schemas that hold it in a drive (empty: bus-only, never stored) and the conversion between
the bus record and the drive's protobuf message (`perception.drives.conversions`, by ``conversion``).
The bus (`nodes.bus.topics`: endpoints), the recorder, replay, the monitor and the drive reader and
writer all read this table; nothing else spells a topic name: use the constants below.

| topic                     | record       | drive schema                 | bus port |
|---------------------------|--------------|------------------------------|----------|
| `camera/image`            | Image        | CompressedImage (or RawImage)| 0        |
| `posenet/fix`             | GeoFix       | LocationFix                  | 1        |
| `perception/detections`   | Detections   | ImageAnnotations             | 2        |
| `perception/segmentation` | Segmentation | RawImage mono8               | 3        |
| `odometry`                | Odometry     | Odometry                     | 4        |
| `gps/fix`                 | GeoFix       | LocationFix                  | 5        |
| `localization/pose`       | Pose         | LocationFix                  | 6        |
| `diagnostics`             | Diagnostics  | (not stored)                 | 7 (+8 fan-in) |
| `camera/calibration`      | CameraInfo   | CameraCalibration            | drive only |
| `truth/boxes`             | Detections   | ImageAnnotations             | drive only |
| `truth/segmentation`      | Segmentation | RawImage mono8               | drive only |

Every drive message's MCAP log time and publish time, and its Foxglove ``timestamp``, are the capture
time ``stamp_ns`` (UTC, ns since the Unix epoch). Drive-wide metadata lives in MCAP metadata records
(`perception.drives.metadata`). How each record maps onto its Foxglove message, and the value a field
takes when a drive does not hold it, is documented in `perception.drives.conversions`.

Imports nothing heavy (no protobuf, no MCAP): bus clients import this table.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from .messages import CameraInfo, Detections, Diagnostics, GeoFix, Image, Odometry, Pose, Segmentation

CAMERA_TOPIC = "camera/image"
CALIBRATION_TOPIC = "camera/calibration"
GPS_TOPIC = "gps/fix"
ODOMETRY_TOPIC = "odometry"
POSE_TOPIC = "localization/pose"
POSENET_TOPIC = "posenet/fix"
TRUTH_BOXES_TOPIC = "truth/boxes"
DETECTIONS_TOPIC = "perception/detections"
TRUTH_SEGMENTATION_TOPIC = "truth/segmentation"
SEGMENTATION_TOPIC = "perception/segmentation"
DIAGNOSTICS_TOPIC = "diagnostics"

SCHEMA_COMPRESSED_IMAGE = "foxglove.CompressedImage"
SCHEMA_RAW_IMAGE = "foxglove.RawImage"
SCHEMA_CALIBRATION = "foxglove.CameraCalibration"
SCHEMA_LOCATION_FIX = "foxglove.LocationFix"
SCHEMA_ODOMETRY = "foxglove.Odometry"
SCHEMA_IMAGE_ANNOTATIONS = "foxglove.ImageAnnotations"

MESSAGE_ENCODING = "protobuf"

# Frame ids written into drive messages (Foxglove matches images, calibration and annotations by them).
CAMERA_FRAME_ID = "camera"
GPS_FRAME_ID = "gps"
ENU_FRAME_ID = "enu"
ODOM_FRAME_ID = "odom"
BODY_FRAME_ID = "base_link"


@dataclass(frozen=True)
class Topic:
    """One topic: on the bus (``port_offset`` set), in drives (``schemas`` set), or both."""

    name: str
    message_type: type[msgspec.Struct]
    rate_hz: float  # expected publish rate; rate checks warn outside [0.5, 1.5] x this
    recorded: bool  # kept by `streetloc record` unless told otherwise (needs schemas)
    port_offset: int | None  # tcp port = port_base + port_offset (subscriber side of fan-in); None: drive only
    description: str
    schemas: tuple[str, ...] = ()  # drive schemas accepted; the first is written by default; (): not stored
    conversion: str = ""  # key of the bus<->drive conversion in perception.drives.conversions
    replayed: bool = False  # published by `streetloc replay` unless told otherwise
    fan_in: bool = False  # many publishers, relayed by the forwarder
    fan_in_port_offset: int | None = None  # where publishers of a fan-in topic connect
    queue_depth: int = 10_000  # messages buffered per subscriber before the publisher drops for it

    @property
    def type_name(self) -> str:
        return self.message_type.__name__

    @property
    def on_bus(self) -> bool:
        return self.port_offset is not None

    @property
    def in_drive(self) -> bool:
        """Whether a drive can hold this topic (replay can publish it, the recorder can store it)."""
        return bool(self.schemas)


_LOCATION = (SCHEMA_LOCATION_FIX,)
_TOPIC_LIST = [
    Topic(CAMERA_TOPIC, Image, 30.0, True, 0, "camera frames (BGR or JPEG) with intrinsics",
          (SCHEMA_COMPRESSED_IMAGE, SCHEMA_RAW_IMAGE), "image", replayed=True, queue_depth=32),
    Topic(POSENET_TOPIC, GeoFix, 30.0, True, 1, "PoseNet lat/lon + heading with learned covariance",
          _LOCATION, "fix"),
    Topic(DETECTIONS_TOPIC, Detections, 30.0, True, 2, "YOLO boxes xyxy, classes, scores",
          (SCHEMA_IMAGE_ANNOTATIONS,), "boxes"),
    Topic(SEGMENTATION_TOPIC, Segmentation, 10.0, True, 3, "PSPNet label mask and class fractions",
          (SCHEMA_RAW_IMAGE,), "mask", queue_depth=64),
    Topic(ODOMETRY_TOPIC, Odometry, 50.0, True, 4, "forward speed and yaw rate from the robot or a drive",
          (SCHEMA_ODOMETRY,), "odom", replayed=True),
    Topic(GPS_TOPIC, GeoFix, 10.0, True, 5, "GPS receiver fix; ground truth in replay, never fused by default",
          _LOCATION, "fix", replayed=True),
    Topic(POSE_TOPIC, Pose, 20.0, True, 6, "fused pose with covariance and status", _LOCATION, "pose"),
    Topic(DIAGNOSTICS_TOPIC, Diagnostics, 1.0, False, 7, "per-node health at 1 Hz: rates, latency, errors",
          fan_in=True, fan_in_port_offset=8),
    Topic(CALIBRATION_TOPIC, CameraInfo, 0.0, False, None, "pinhole camera intrinsics, with the first frame",
          (SCHEMA_CALIBRATION,), "calibration"),
    Topic(TRUTH_BOXES_TOPIC, Detections, 10.0, False, None, "ground-truth boxes (synthetic drives)",
          (SCHEMA_IMAGE_ANNOTATIONS,), "boxes"),
    Topic(TRUTH_SEGMENTATION_TOPIC, Segmentation, 10.0, False, None, "ground-truth label masks (synthetic drives)",
          (SCHEMA_RAW_IMAGE,), "mask"),
]

TOPICS: dict[str, Topic] = {t.name: t for t in _TOPIC_LIST}
BUS_TOPICS: dict[str, Topic] = {t.name: t for t in _TOPIC_LIST if t.on_bus}
LOCATION_TOPICS = tuple(t.name for t in _TOPIC_LIST if t.schemas == _LOCATION)


def _check_table() -> None:
    ports: dict[int, str] = {}
    for t in _TOPIC_LIST:
        for offset in (t.port_offset, t.fan_in_port_offset):
            if offset is None:
                continue
            if offset in ports:
                raise RuntimeError(f"topic table: port offset {offset} used by {ports[offset]} and {t.name}")
            ports[offset] = t.name
        if t.fan_in != (t.fan_in_port_offset is not None):
            raise RuntimeError(f"topic table: {t.name}: fan_in needs fan_in_port_offset and vice versa")
        if bool(t.schemas) != bool(t.conversion):
            raise RuntimeError(f"topic table: {t.name}: a drive channel needs schemas and a conversion")
        if (t.recorded or t.replayed) and not (t.on_bus and t.in_drive):
            raise RuntimeError(f"topic table: {t.name}: recorded/replayed topics are on the bus and in drives")


_check_table()


def get_topic(name: str) -> Topic:
    """The table entry of ``name``; a ValueError naming the known topics otherwise."""
    try:
        return TOPICS[name]
    except KeyError:
        raise ValueError(f"unknown topic {name!r}; known topics: {', '.join(TOPICS)}") from None


def drive_topic(name: str) -> Topic:
    """The entry of a topic a drive can hold; ValueError naming the drive topics otherwise."""
    topic = get_topic(name)
    if not topic.in_drive:
        raise ValueError(f"topic {name!r} cannot be stored in a drive; drive topics: "
                         f"{', '.join(t.name for t in _TOPIC_LIST if t.in_drive)}")
    return topic


def recorded_topics() -> list[str]:
    """The topics `streetloc record` keeps unless told otherwise."""
    return [t.name for t in _TOPIC_LIST if t.recorded]


def replayed_topics() -> list[str]:
    """The drive channels `streetloc replay` publishes unless told otherwise."""
    return [t.name for t in _TOPIC_LIST if t.replayed]
