"""The one table of a drive's channels: topic, Foxglove schema, what the messages hold.

Topic names equal the bus topic names, so that replay publishes each channel on the topic of the same
name and a recording of the live bus is a drive. Every channel is protobuf-encoded with one of
Foxglove's own schemas (package ``foxglove_schemas_protobuf``): Foxglove shows the camera as video, GPS
and poses as tracks on its map, boxes on the image, and odometry in its plots, and any MCAP reader with
``mcap-protobuf-support`` decodes them.

| topic                   | schema                    | content                                                    |
|-------------------------|---------------------------|------------------------------------------------------------|
| `camera/image`          | foxglove.CompressedImage  | JPEG frames (or foxglove.RawImage bgr8 for raw drives)     |
| `camera/calibration`    | foxglove.CameraCalibration| pinhole intrinsics K, P; written with the first frame      |
| `gps/fix`               | foxglove.LocationFix      | GPS fixes: lat/lon/alt, heading (rad cw from north), ENU cov|
| `odometry`              | foxglove.Odometry         | forward speed (linear_velocity.x), yaw rate (angular_velocity.z, ccw+) |
| `localization/pose`     | foxglove.LocationFix      | fused poses (same layout as gps/fix)                       |
| `posenet/fix`           | foxglove.LocationFix      | PoseNet fixes (same layout as gps/fix)                     |
| `truth/boxes`           | foxglove.ImageAnnotations | ground-truth boxes: one LINE_LOOP per box + a label        |
| `perception/detections` | foxglove.ImageAnnotations | detector boxes, same layout plus scores                    |
| `truth/segmentation`    | foxglove.RawImage mono8   | ground-truth label mask; class table in channel metadata   |
| `perception/segmentation`| foxglove.RawImage mono8  | predicted label mask, same layout                          |

Every message's MCAP log time and publish time, and its Foxglove ``timestamp``, are the capture time
``stamp_ns`` (UTC, ns since the Unix epoch).

Drive-wide metadata lives in MCAP metadata records (see `perception.drives.metadata`):
``streetloc.drive`` (format version, source, creation time), ``streetloc.geo_origin``,
``streetloc.camera`` and ``streetloc.extra``.
"""

from __future__ import annotations

from dataclasses import dataclass

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

SCHEMA_COMPRESSED_IMAGE = "foxglove.CompressedImage"
SCHEMA_RAW_IMAGE = "foxglove.RawImage"
SCHEMA_CALIBRATION = "foxglove.CameraCalibration"
SCHEMA_LOCATION_FIX = "foxglove.LocationFix"
SCHEMA_ODOMETRY = "foxglove.Odometry"
SCHEMA_IMAGE_ANNOTATIONS = "foxglove.ImageAnnotations"

MESSAGE_ENCODING = "protobuf"

# Frame ids written into the messages (Foxglove matches images, calibration and annotations by them).
CAMERA_FRAME_ID = "camera"
GPS_FRAME_ID = "gps"
ODOM_FRAME_ID = "odom"
BODY_FRAME_ID = "base_link"


@dataclass(frozen=True)
class ChannelSpec:
    """What a standard channel holds."""

    topic: str
    schemas: tuple[str, ...]  # accepted schema names; the first is what the writer uses by default
    description: str


CHANNELS: dict[str, ChannelSpec] = {
    spec.topic: spec
    for spec in (
        ChannelSpec(CAMERA_TOPIC, (SCHEMA_COMPRESSED_IMAGE, SCHEMA_RAW_IMAGE), "camera frames, JPEG or raw bgr8"),
        ChannelSpec(CALIBRATION_TOPIC, (SCHEMA_CALIBRATION,), "pinhole camera intrinsics"),
        ChannelSpec(GPS_TOPIC, (SCHEMA_LOCATION_FIX,), "GPS receiver fixes"),
        ChannelSpec(ODOMETRY_TOPIC, (SCHEMA_ODOMETRY,), "forward speed and yaw rate (body frame)"),
        ChannelSpec(POSE_TOPIC, (SCHEMA_LOCATION_FIX,), "fused poses"),
        ChannelSpec(POSENET_TOPIC, (SCHEMA_LOCATION_FIX,), "PoseNet fixes"),
        ChannelSpec(TRUTH_BOXES_TOPIC, (SCHEMA_IMAGE_ANNOTATIONS,), "ground-truth boxes (synthetic drives)"),
        ChannelSpec(DETECTIONS_TOPIC, (SCHEMA_IMAGE_ANNOTATIONS,), "detected boxes with scores"),
        ChannelSpec(TRUTH_SEGMENTATION_TOPIC, (SCHEMA_RAW_IMAGE,), "ground-truth label masks (synthetic drives)"),
        ChannelSpec(SEGMENTATION_TOPIC, (SCHEMA_RAW_IMAGE,), "predicted label masks"),
    )
}

LOCATION_TOPICS = (GPS_TOPIC, POSE_TOPIC, POSENET_TOPIC)
