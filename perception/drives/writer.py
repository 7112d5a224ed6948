"""DriveWriter: writes a drive (MCAP with Foxglove protobuf channels) from images, fixes, odometry, truth.

Durability: every completed chunk goes straight to the operating system (no Python-side buffer), and a
chunk is closed at least every ``flush_interval_s`` seconds of wall time, so a recorder killed with
SIGKILL leaves a file whose complete chunks `DriveReader` still reads (and reports as truncated).
Drive metadata is written first, outside any chunk, so it survives truncation too.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import mcap
import numpy as np
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter

from . import _proto as pb
from .channels import (
    BODY_FRAME_ID,
    CALIBRATION_TOPIC,
    CAMERA_FRAME_ID,
    CAMERA_TOPIC,
    GPS_FRAME_ID,
    GPS_TOPIC,
    MESSAGE_ENCODING,
    ODOM_FRAME_ID,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    SCHEMA_CALIBRATION,
    SCHEMA_COMPRESSED_IMAGE,
    SCHEMA_IMAGE_ANNOTATIONS,
    SCHEMA_LOCATION_FIX,
    SCHEMA_ODOMETRY,
    SCHEMA_RAW_IMAGE,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
)
from .jpeg import encode_jpeg, jpeg_size
from .metadata import CameraInfo, DriveMetadata

_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}

# Box outline colours by class id (RGB 0-1), Tableau-10 order: distinct on street imagery.
_PALETTE = (
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81),
)


class _WriteThrough:
    """A file whose ``write`` reaches the OS at once: mcap writes a whole chunk per call, so after each
    call the chunk is safe from a SIGKILL of this process (not from a power cut: no fsync)."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            view = view[written:]
        return len(data)

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        pass

    def fsync(self) -> None:
        os.fsync(self._raw.fileno())

    def close(self) -> None:
        self._raw.close()


def _check_stamp(stamp_ns: int) -> int:
    stamp = int(stamp_ns)
    if stamp != stamp_ns or stamp < 0:
        raise ValueError(f"stamp_ns={stamp_ns!r} must be a non-negative integer (ns since the Unix epoch)")
    return stamp


def _check_position(lat_deg: float, lon_deg: float, alt_m: float) -> None:
    if not (math.isfinite(lat_deg) and -90.0 <= lat_deg <= 90.0):
        raise ValueError(f"lat_deg={lat_deg!r} is outside [-90, 90]")
    if not (math.isfinite(lon_deg) and -180.0 <= lon_deg <= 180.0):
        raise ValueError(f"lon_deg={lon_deg!r} is outside [-180, 180]")
    if not math.isfinite(alt_m):
        raise ValueError(f"alt_m={alt_m!r} is not finite")


def _kv(key: str, value: object) -> pb.KeyValuePair:
    return pb.KeyValuePair(key=key, value=str(value))


class DriveWriter:
    """Write a drive file.

    >>> with DriveWriter("drive.mcap", DriveMetadata(source="demo")) as w:
    ...     w.add_image(stamp_ns, image_bgr)          # uint8 [H, W, 3] BGR, JPEG-encoded here
    ...     w.add_gps(stamp_ns, lat_deg=55.7, lon_deg=13.19, alt_m=40.0)

    Args:
        path: output ``.mcap`` file (overwritten).
        metadata: drive-wide metadata, written at the start of the file.
        jpeg_quality: quality of the JPEGs the writer encodes (images given as arrays).
        image_encoding: ``"jpeg"`` (foxglove.CompressedImage) or ``"bgr8"`` (foxglove.RawImage, lossless
            but ~10x larger).
        chunk_size_bytes: MCAP chunk size; a reader seeks by chunk, and a crash loses at most one.
        compression: ``"zstd"`` (default: label masks shrink ~30x, JPEGs pass through), ``"lz4"``, ``"none"``.
        flush_interval_s: close the open chunk after this much wall time, bounding what a crash loses
            while recording live; None to close chunks by size only.

    Messages should come in roughly increasing ``stamp_ns`` per topic; topics may interleave freely.
    The reader returns every topic in time order either way, but reads fastest when chunks don't overlap.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        metadata: DriveMetadata | None = None,
        *,
        jpeg_quality: int = 90,
        image_encoding: str = "jpeg",
        chunk_size_bytes: int = 1 << 20,
        compression: str = "zstd",
        flush_interval_s: float | None = 1.0,
    ) -> None:
        if image_encoding not in ("jpeg", "bgr8"):
            raise ValueError(f"image_encoding={image_encoding!r} is not 'jpeg' or 'bgr8'")
        if compression not in _COMPRESSION:
            raise ValueError(f"compression={compression!r} is not one of {sorted(_COMPRESSION)}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={jpeg_quality!r} is outside [1, 100]")
        self.path = Path(path)
        self.metadata = metadata or DriveMetadata()
        self.jpeg_quality = int(jpeg_quality)
        self.image_encoding = image_encoding
        self._flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()
        self._stream = _WriteThrough(self.path)
        self._mcap = McapWriter(
            self._stream,  # type: ignore[arg-type]  # duck-typed file: write/tell/flush
            chunk_size=int(chunk_size_bytes),
            compression=_COMPRESSION[compression],
        )
        from importlib.metadata import PackageNotFoundError, version

        try:
            library = f"streetloc {version('streetloc')}; mcap {mcap.__version__}"
        except PackageNotFoundError:
            library = f"streetloc; mcap {mcap.__version__}"
        self._mcap.start(profile="", library=library)
        for name, record in self.metadata.to_records().items():
            self._mcap.add_metadata(name, record)
        self._schema_ids: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}  # topic -> (channel id, schema name)
        self._channel_class_names: dict[str, tuple[str, ...]] = {}
        self._sequence: Counter[str] = Counter()
        self._calibration_written = False
        self._closed = False

    # ------------------------------------------------------------------------------------------ plumbing

    def __enter__(self) -> DriveWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Finish the file even when the producer failed: what was written stays readable and indexed.
        self.close()

    @property
    def message_counts(self) -> dict[str, int]:
        """Messages written so far, by topic."""
        return dict(self._sequence)

    def _channel(self, topic: str, schema_name: str, metadata: Mapping[str, str] | None = None) -> int:
        known = self._channels.get(topic)
        if known is not None:
            if known[1] != schema_name:
                raise ValueError(f"topic {topic!r} already holds {known[1]} messages, not {schema_name}")
            return known[0]
        schema_id = self._schema_ids.get(schema_name)
        if schema_id is None:
            schema_id = self._mcap.register_schema(schema_name, MESSAGE_ENCODING, pb.schema_data(schema_name))
            self._schema_ids[schema_name] = schema_id
        channel_id = self._mcap.register_channel(topic, MESSAGE_ENCODING, schema_id, dict(metadata or {}))
        self._channels[topic] = (channel_id, schema_name)
        return channel_id

    def _write(self, topic: str, schema_name: str, stamp_ns: int, message, channel_metadata=None) -> None:
        if self._closed:
            raise ValueError(f"drive {self.path} is closed")
        channel_id = self._channel(topic, schema_name, channel_metadata)
        self._mcap.add_message(
            channel_id,
            log_time=stamp_ns,
            data=message.SerializeToString(),
            publish_time=stamp_ns,
            sequence=self._sequence[topic],
        )
        self._sequence[topic] += 1
        if self._flush_interval_s is not None:
            now = time.monotonic()
            if now - self._last_flush >= self._flush_interval_s:
                self._mcap.flush()
                self._last_flush = now

    def add_metadata(self, name: str, record: Mapping[str, str]) -> None:
        """Write one more MCAP metadata record (string -> string)."""
        self._mcap.add_metadata(name, {str(k): str(v) for k, v in record.items()})

    def flush(self) -> None:
        """Close the open chunk so that everything written so far survives a crash."""
        self._mcap.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Write the summary (index, statistics) and close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._mcap.finish()
        finally:
            self._stream.close()

    # ------------------------------------------------------------------------------------------ camera

    def add_image(
        self,
        stamp_ns: int,
        image_bgr: np.ndarray | None = None,
        *,
        jpeg: bytes | None = None,
        topic: str = CAMERA_TOPIC,
    ) -> None:
        """A camera frame: ``image_bgr`` uint8 [H, W, 3] (encoded per ``image_encoding``) or ``jpeg`` bytes
        stored as they are (not validated: a recorder stores what the camera gave)."""
        stamp_ns = _check_stamp(stamp_ns)
        if (image_bgr is None) == (jpeg is None):
            raise ValueError("add_image takes exactly one of image_bgr or jpeg=")
        if image_bgr is not None:
            image_bgr = np.asarray(image_bgr)
            if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
                raise ValueError(f"image_bgr must be uint8 [H, W, 3]; got {image_bgr.dtype} {image_bgr.shape}")
            height, width = image_bgr.shape[:2]
        else:
            size = jpeg_size(jpeg)  # type: ignore[arg-type]
            width, height = size if size is not None else (0, 0)
        camera = self.metadata.camera
        if camera is not None and width and (width, height) != (camera.width_px, camera.height_px):
            raise ValueError(
                f"image at stamp_ns={stamp_ns} is {width}x{height} px but the drive's camera is "
                f"{camera.width_px}x{camera.height_px} px"
            )
        if camera is not None and not self._calibration_written:
            self.add_calibration(stamp_ns, camera)
        if self.image_encoding == "bgr8" and image_bgr is not None:
            data = np.ascontiguousarray(image_bgr).tobytes()
            message = pb.RawImage(
                timestamp=pb.timestamp(stamp_ns), frame_id=CAMERA_FRAME_ID, width=width, height=height,
                encoding="bgr8", step=width * 3, data=data,
            )
            self._write(topic, SCHEMA_RAW_IMAGE, stamp_ns, message)
            return
        if self.image_encoding == "bgr8":
            raise ValueError("this drive stores raw bgr8 frames (image_encoding='bgr8'); pass image_bgr, not jpeg=")
        data = jpeg if jpeg is not None else encode_jpeg(image_bgr, self.jpeg_quality)  # type: ignore[arg-type]
        message = pb.CompressedImage(
            timestamp=pb.timestamp(stamp_ns), frame_id=CAMERA_FRAME_ID, data=bytes(data), format="jpeg"
        )
        self._write(topic, SCHEMA_COMPRESSED_IMAGE, stamp_ns, message)

    def add_calibration(self, stamp_ns: int, camera: CameraInfo, *, topic: str = CALIBRATION_TOPIC) -> None:
        """Camera intrinsics as foxglove.CameraCalibration (written automatically with the first frame
        when the metadata has a camera)."""
        stamp_ns = _check_stamp(stamp_ns)
        fx, fy, cx, cy = camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px
        message = pb.CameraCalibration(
            timestamp=pb.timestamp(stamp_ns),
            frame_id=CAMERA_FRAME_ID,
            width=camera.width_px,
            height=camera.height_px,
            distortion_model=camera.distortion_model,
            D=list(camera.distortion),
            K=camera.K,
            R=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            P=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
        )
        self._write(topic, SCHEMA_CALIBRATION, stamp_ns, message)
        self._calibration_written = True

    # ------------------------------------------------------------------------------------------ position

    def add_gps(
        self,
        stamp_ns: int,
        *,
        lat_deg: float,
        lon_deg: float,
        alt_m: float = 0.0,
        heading_deg: float | None = None,
        horizontal_std_m: float = 5.0,
        vertical_std_m: float | None = None,
        heading_std_deg: float | None = None,
        speed_mps: float | None = None,
        topic: str = GPS_TOPIC,
    ) -> None:
        """A GPS fix (foxglove.LocationFix): WGS84 degrees, ellipsoidal altitude in m, heading in degrees
        clockwise from north (None: unknown), 1-sigma horizontal error in m (per axis, east and north).

        Without ``vertical_std_m`` the vertical error is taken as twice the horizontal one (typical of
        GNSS) and the covariance is marked APPROXIMATED.
        """
        if not (math.isfinite(horizontal_std_m) and horizontal_std_m > 0):
            raise ValueError(f"horizontal_std_m={horizontal_std_m!r} must be positive")
        var_h = horizontal_std_m**2
        known = vertical_std_m is not None
        var_v = (vertical_std_m if known else 2.0 * horizontal_std_m) ** 2  # type: ignore[operator]
        covariance = [var_h, 0.0, 0.0, 0.0, var_h, 0.0, 0.0, 0.0, var_v]
        kind = pb.LocationFix.DIAGONAL_KNOWN if known else pb.LocationFix.APPROXIMATED
        self._add_location(
            topic, stamp_ns, lat_deg, lon_deg, alt_m, heading_deg, covariance, kind,
            heading_std_deg, speed_mps, None, GPS_FRAME_ID,
        )

    def add_pose(
        self,
        stamp_ns: int,
        *,
        lat_deg: float,
        lon_deg: float,
        alt_m: float = 0.0,
        heading_deg: float | None = None,
        cov_enu_m2: Sequence[float] = (1.0, 0.0, 0.0, 1.0),
        heading_std_deg: float | None = None,
        speed_mps: float | None = None,
        status: str | None = None,
        topic: str = POSE_TOPIC,
    ) -> None:
        """A pose estimate (foxglove.LocationFix on ``localization/pose`` or ``posenet/fix``) with its
        2x2 east/north covariance ``cov_enu_m2`` (row-major, m^2) and optional filter ``status``."""
        cov = [float(c) for c in cov_enu_m2]
        if len(cov) != 4 or not all(math.isfinite(c) for c in cov) or cov[0] < 0 or cov[3] < 0:
            raise ValueError(f"cov_enu_m2={tuple(cov_enu_m2)!r} must be 4 finite numbers (2x2 row-major, m^2)")
        covariance = [cov[0], cov[1], 0.0, cov[2], cov[3], 0.0, 0.0, 0.0, 0.0]
        self._add_location(
            topic, stamp_ns, lat_deg, lon_deg, alt_m, heading_deg, covariance, pb.LocationFix.KNOWN,
            heading_std_deg, speed_mps, status, "enu",
        )

    def _add_location(
        self, topic, stamp_ns, lat_deg, lon_deg, alt_m, heading_deg, covariance, covariance_type,
        heading_std_deg, speed_mps, status, frame_id,
    ) -> None:
        stamp_ns = _check_stamp(stamp_ns)
        lat_deg, lon_deg, alt_m = float(lat_deg), float(lon_deg), float(alt_m)
        _check_position(lat_deg, lon_deg, alt_m)
        message = pb.LocationFix(
            timestamp=pb.timestamp(stamp_ns),
            frame_id=frame_id,
            latitude=lat_deg,
            longitude=lon_deg,
            altitude=alt_m,
            position_covariance=covariance,
            position_covariance_type=covariance_type,
        )
        if heading_deg is not None:
            if not math.isfinite(heading_deg):
                raise ValueError(f"heading_deg={heading_deg!r} is not finite (use None for unknown)")
            message.heading = math.radians(float(heading_deg) % 360.0)
            if speed_mps is not None:
                # ENU velocity from compass heading: east = v sin(h), north = v cos(h)
                message.velocity.x = speed_mps * math.sin(message.heading)
                message.velocity.y = speed_mps * math.cos(message.heading)
                message.velocity.z = 0.0
        # Fields LocationFix has no slot for travel as key-value metadata (Foxglove shows them).
        if heading_std_deg is not None:
            message.metadata.append(_kv("heading_std_deg", repr(float(heading_std_deg))))
        if speed_mps is not None:
            message.metadata.append(_kv("speed_mps", repr(float(speed_mps))))
        if status is not None:
            message.metadata.append(_kv("status", status))
        self._write(topic, SCHEMA_LOCATION_FIX, stamp_ns, message)

    def add_odometry(
        self,
        stamp_ns: int,
        *,
        speed_mps: float,
        yaw_rate_radps: float,
        speed_std_mps: float | None = None,
        yaw_rate_std_radps: float | None = None,
        topic: str = ODOMETRY_TOPIC,
    ) -> None:
        """Body-frame odometry (foxglove.Odometry): forward speed in m/s (``linear_velocity.x``) and yaw
        rate in rad/s, counter-clockwise positive seen from above (``angular_velocity.z``, REP-103)."""
        stamp_ns = _check_stamp(stamp_ns)
        if not (math.isfinite(speed_mps) and math.isfinite(yaw_rate_radps)):
            raise ValueError(f"odometry speed_mps={speed_mps!r}, yaw_rate_radps={yaw_rate_radps!r} must be finite")
        message = pb.Odometry(timestamp=pb.timestamp(stamp_ns), frame_id=ODOM_FRAME_ID, body_frame_id=BODY_FRAME_ID)
        message.pose.orientation.w = 1.0  # pose unknown: identity, so viewers get a valid quaternion
        message.linear_velocity.x = float(speed_mps)
        message.angular_velocity.z = float(yaw_rate_radps)
        if speed_std_mps is not None or yaw_rate_std_radps is not None:
            cov = [0.0] * 36
            cov[0] = (speed_std_mps or 0.0) ** 2  # vx, vx
            cov[35] = (yaw_rate_std_radps or 0.0) ** 2  # wz, wz
            message.velocity_covariance.extend(cov)
        self._write(topic, SCHEMA_ODOMETRY, stamp_ns, message)

    # ------------------------------------------------------------------------------------------ truth

    def _class_table(self, topic: str, class_names: Sequence[str]) -> dict[str, str]:
        names = tuple(str(n) for n in class_names)
        known = self._channel_class_names.setdefault(topic, names)
        if known != names:
            raise ValueError(f"topic {topic!r} was started with class table {list(known)}, now given {list(names)}")
        return {"class_names": json.dumps(list(names))}

    def add_boxes(
        self,
        stamp_ns: int,
        boxes_xyxy_px: np.ndarray,
        class_ids: np.ndarray,
        class_names: Sequence[str],
        *,
        scores: np.ndarray | None = None,
        topic: str = TRUTH_BOXES_TOPIC,
    ) -> None:
        """Boxes on the image at ``stamp_ns`` (foxglove.ImageAnnotations).

        Args:
            boxes_xyxy_px: float [N, 4] pixel boxes (x1, y1, x2, y2), x1 <= x2, y1 <= y2.
            class_ids: int [N], indices into ``class_names``.
            class_names: the class table (the same on every call for one topic).
            scores: float [N] in [0, 1] for detections; None for ground truth.
        """
        stamp_ns = _check_stamp(stamp_ns)
        boxes = np.asarray(boxes_xyxy_px, dtype=np.float64).reshape(-1, 4) if len(boxes_xyxy_px) else np.zeros((0, 4))
        ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(boxes):
            raise ValueError(f"boxes at stamp_ns={stamp_ns}: {len(boxes)} boxes but {len(ids)} class ids")
        if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise ValueError(f"boxes at stamp_ns={stamp_ns} must be finite (x1, y1, x2, y2) with x1<=x2, y1<=y2")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(class_names)):
            raise ValueError(f"boxes at stamp_ns={stamp_ns}: class id {int(ids.max())} outside the {len(class_names)}-class table")
        score_list = None
        if scores is not None:
            score_list = np.asarray(scores, dtype=np.float64).reshape(-1)
            if len(score_list) != len(ids):
                raise ValueError(f"boxes at stamp_ns={stamp_ns}: {len(ids)} boxes but {len(score_list)} scores")
        table = self._class_table(topic, class_names)
        ts = pb.timestamp(stamp_ns)
        message = pb.ImageAnnotations(timestamp=ts)
        message.metadata.append(_kv("class_names", table["class_names"]))
        for i, ((x1, y1, x2, y2), cid) in enumerate(zip(boxes.tolist(), ids.tolist(), strict=True)):
            r, g, b = _PALETTE[cid % len(_PALETTE)]
            color = pb.Color(r=r, g=g, b=b, a=1.0)
            name = str(class_names[cid])
            points = pb.PointsAnnotation(
                timestamp=ts, type=pb.PointsAnnotation.LINE_LOOP, outline_color=color, thickness=2.0,
                points=[pb.Point2(x=x1, y=y1), pb.Point2(x=x2, y=y1), pb.Point2(x=x2, y=y2), pb.Point2(x=x1, y=y2)],
            )
            points.metadata.append(_kv("class_id", cid))
            points.metadata.append(_kv("class_name", name))
            label = name
            if score_list is not None:
                points.metadata.append(_kv("score", repr(float(score_list[i]))))
                label = f"{name} {score_list[i]:.2f}"
            message.points.append(points)
            message.texts.append(
                pb.TextAnnotation(
                    timestamp=ts, position=pb.Point2(x=x1, y=max(y1 - 2.0, 0.0)), text=label, font_size=12.0,
                    text_color=pb.Color(r=1.0, g=1.0, b=1.0, a=1.0), background_color=color,
                )
            )
        self._write(topic, SCHEMA_IMAGE_ANNOTATIONS, stamp_ns, message, table)

    def add_label_mask(
        self,
        stamp_ns: int,
        mask: np.ndarray,
        class_names: Sequence[str],
        *,
        topic: str = TRUTH_SEGMENTATION_TOPIC,
    ) -> None:
        """A per-pixel class mask, uint8 [H, W] of indices into ``class_names`` (foxglove.RawImage mono8;
        the class table goes in the channel metadata as ``class_names``, a JSON list)."""
        stamp_ns = _check_stamp(stamp_ns)
        mask = np.asarray(mask)
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise ValueError(f"label mask at stamp_ns={stamp_ns} must be uint8 [H, W]; got {mask.dtype} {mask.shape}")
        if mask.size and int(mask.max()) >= len(class_names):
            raise ValueError(
                f"label mask at stamp_ns={stamp_ns} holds class {int(mask.max())} outside the {len(class_names)}-class table"
            )
        table = self._class_table(topic, class_names)
        height, width = mask.shape
        message = pb.RawImage(
            timestamp=pb.timestamp(stamp_ns), frame_id=CAMERA_FRAME_ID, width=width, height=height,
            encoding="mono8", step=width, data=np.ascontiguousarray(mask).tobytes(),
        )
        self._write(topic, SCHEMA_RAW_IMAGE, stamp_ns, message, table)
