"""Conversions between bus messages and drive (MCAP) records: replay reads drives into bus messages,
the recorder writes bus messages into drives. One place for the mapping, so that a drive recorded from
the bus replays to the same messages (stamps, positions, covariances, image bytes).

Bus topic -> drive channel (Foxglove schema, see ``perception.drives.channels``):
  camera/image          Image jpeg|bgr8|mono8     CompressedImage (JPEG bytes as they came) or RawImage
  gps/fix, posenet/fix  GeoFix                    LocationFix with the full 2x2 ENU covariance
  localization/pose     Pose                      LocationFix + status/speed metadata
  odometry              Odometry                  foxglove.Odometry
  perception/detections Detections                ImageAnnotations with scores
  perception/segmentation Segmentation            RawImage mono8 + class table
"""

from __future__ import annotations

import math

import cv2
import msgspec
import numpy as np

from nodes.bus.messages import (
    CameraIntrinsics,
    Detections,
    GeoFix,
    Header,
    Image,
    Odometry,
    Pose,
    Segmentation,
)
from perception.drives import CameraInfo, DriveReader, DriveWriter, RawMessage
from perception.drives.channels import (
    SCHEMA_COMPRESSED_IMAGE,
    SCHEMA_LOCATION_FIX,
    SCHEMA_ODOMETRY,
    SCHEMA_RAW_IMAGE,
)
from perception.drives.jpeg import jpeg_size, looks_like_jpeg

# topics replay can publish from a drive, and the ones it publishes unless told otherwise
REPLAYABLE_TOPICS = ("camera/image", "gps/fix", "odometry", "posenet/fix", "localization/pose")
DEFAULT_REPLAY_TOPICS = ("camera/image", "gps/fix", "odometry")
# topics the recorder knows how to store
RECORDABLE_TOPICS = ("camera/image", "gps/fix", "posenet/fix", "localization/pose", "odometry",
                     "perception/detections", "perception/segmentation")


class CorruptRecord(ValueError):
    """A drive record that cannot become a bus message (a broken JPEG, an undecodable protobuf)."""


def intrinsics_of(camera: CameraInfo | None) -> CameraIntrinsics | None:
    """The intrinsics an Image of this camera carries on the bus."""
    if camera is None:
        return None
    return CameraIntrinsics(camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px)


def camera_of(image: Image) -> CameraInfo | None:
    """The camera (size and intrinsics) of a bus Image; None when it travels without intrinsics."""
    k = image.intrinsics
    if k is None:
        return None
    return CameraInfo(image.width_px, image.height_px, k.fx_px, k.fy_px, k.cx_px, k.cy_px)


def _metadata(proto) -> dict[str, str]:
    return {kv.key: kv.value for kv in proto.metadata}


def _opt_float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def record_to_message(reader: DriveReader, raw: RawMessage, intrinsics: CameraIntrinsics | None) -> msgspec.Struct:
    """The bus message of one drive record. Raises CorruptRecord for damaged data."""
    header = Header(stamp_ns=raw.stamp_ns, seq=0)
    try:
        proto = reader.decode(raw)
    except Exception as exc:  # protobuf DecodeError
        raise CorruptRecord(f"{raw.topic} at stamp_ns={raw.stamp_ns}: undecodable {raw.schema_name}: {exc}") from None
    if raw.topic == "camera/image":
        header.frame_id = "camera"
        if raw.schema_name == SCHEMA_COMPRESSED_IMAGE:
            data = proto.data
            size = jpeg_size(data)
            if size is None or not looks_like_jpeg(data):
                raise CorruptRecord(f"camera/image at stamp_ns={raw.stamp_ns}: not a complete JPEG")
            return Image(header, width_px=size[0], height_px=size[1], encoding="jpeg",
                         data=np.frombuffer(data, np.uint8), intrinsics=intrinsics)
        if raw.schema_name == SCHEMA_RAW_IMAGE:
            channels = {"bgr8": 3, "rgb8": 3, "mono8": 1}.get(proto.encoding)
            if channels is None or len(proto.data) < proto.height * proto.width * channels:
                raise CorruptRecord(f"camera/image at stamp_ns={raw.stamp_ns}: raw {proto.encoding!r} "
                                    f"{proto.width}x{proto.height} with {len(proto.data)} bytes")
            step = proto.step or proto.width * channels
            pixels = np.frombuffer(proto.data, np.uint8)[: step * proto.height].reshape(proto.height, step)
            pixels = pixels[:, : proto.width * channels]
            if channels == 3:
                pixels = pixels.reshape(proto.height, proto.width, 3)
                if proto.encoding == "rgb8":
                    pixels = pixels[..., ::-1]
            encoding = "mono8" if channels == 1 else "bgr8"
            return Image(header, width_px=proto.width, height_px=proto.height, encoding=encoding,
                         data=np.ascontiguousarray(pixels), intrinsics=intrinsics)
    if raw.schema_name == SCHEMA_LOCATION_FIX:
        cov = list(proto.position_covariance)
        cov_enu = (cov[0], cov[1], cov[3], cov[4]) if len(cov) == 9 else (1.0, 0.0, 0.0, 1.0)
        extra = _metadata(proto)
        heading = math.degrees(proto.heading) % 360.0 if proto.HasField("heading") else None
        speed = _opt_float(extra.get("speed_mps"))
        heading_std = _opt_float(extra.get("heading_std_deg"))
        header.frame_id = proto.frame_id or "gps"
        if raw.topic == "localization/pose":
            h = heading or 0.0
            spd = speed or 0.0
            return Pose(header, lat_deg=proto.latitude, lon_deg=proto.longitude, alt_m=proto.altitude,
                        heading_deg=h, speed_mps=spd,
                        velocity_enu_mps=(spd * math.sin(math.radians(h)), spd * math.cos(math.radians(h))),
                        cov_enu_m2=cov_enu, heading_std_deg=heading_std if heading_std is not None else 180.0,
                        status=extra.get("status", "tracking"), valid=True)
        return GeoFix(header, lat_deg=proto.latitude, lon_deg=proto.longitude, alt_m=proto.altitude,
                      heading_deg=heading, cov_enu_m2=cov_enu, heading_std_deg=heading_std, speed_mps=speed,
                      source=extra.get("source", "gps" if raw.topic == "gps/fix" else raw.topic), valid=True)
    if raw.schema_name == SCHEMA_ODOMETRY:
        cov = list(proto.velocity_covariance)
        header.frame_id = "base_link"
        return Odometry(header, speed_mps=proto.linear_velocity.x, yaw_rate_radps=proto.angular_velocity.z,
                        speed_std_mps=math.sqrt(cov[0]) if len(cov) == 36 and cov[0] > 0 else 0.1,
                        yaw_rate_std_radps=math.sqrt(cov[35]) if len(cov) == 36 and cov[35] > 0 else 0.01)
    raise CorruptRecord(f"{raw.topic}: schema {raw.schema_name} cannot be replayed on the bus")


def write_message(writer: DriveWriter, topic: str, msg: msgspec.Struct) -> None:
    """Store one bus message in a drive. ValueError for a message the drive cannot hold."""
    stamp_ns = msg.header.stamp_ns  # type: ignore[attr-defined]
    if isinstance(msg, Image):
        if msg.encoding == "jpeg":
            writer.add_image(stamp_ns, jpeg=bytes(msg.data), topic=topic)
        elif msg.encoding == "bgr8":
            writer.add_image(stamp_ns, np.asarray(msg.data), topic=topic)
        elif msg.encoding == "mono8":
            writer.add_image(stamp_ns, cv2.cvtColor(np.asarray(msg.data), cv2.COLOR_GRAY2BGR), topic=topic)
        else:
            raise ValueError(f"{topic}: image encoding {msg.encoding!r} cannot be recorded")
    elif isinstance(msg, GeoFix):
        writer.add_pose(stamp_ns, lat_deg=msg.lat_deg, lon_deg=msg.lon_deg, alt_m=msg.alt_m,
                        heading_deg=msg.heading_deg, cov_enu_m2=msg.cov_enu_m2,
                        heading_std_deg=msg.heading_std_deg, speed_mps=msg.speed_mps, topic=topic)
    elif isinstance(msg, Pose):
        writer.add_pose(stamp_ns, lat_deg=msg.lat_deg, lon_deg=msg.lon_deg, alt_m=msg.alt_m,
                        heading_deg=msg.heading_deg, cov_enu_m2=msg.cov_enu_m2,
                        heading_std_deg=msg.heading_std_deg, speed_mps=msg.speed_mps, status=msg.status,
                        topic=topic)
    elif isinstance(msg, Odometry):
        writer.add_odometry(stamp_ns, speed_mps=msg.speed_mps, yaw_rate_radps=msg.yaw_rate_radps,
                            speed_std_mps=msg.speed_std_mps, yaw_rate_std_radps=msg.yaw_rate_std_radps, topic=topic)
    elif isinstance(msg, Detections):
        writer.add_boxes(stamp_ns, np.asarray(msg.boxes_xyxy_px, np.float32), np.asarray(msg.class_ids),
                         msg.class_names, scores=np.asarray(msg.scores, np.float32), topic=topic)
    elif isinstance(msg, Segmentation):
        writer.add_label_mask(stamp_ns, np.asarray(msg.label_mask, np.uint8), msg.class_names, topic=topic)
    else:
        raise ValueError(f"{topic}: {type(msg).__name__} messages cannot be recorded")
