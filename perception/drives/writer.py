"""DriveWriter: writes a drive (MCAP with Foxglove protobuf channels) from images, fixes, odometry, truth.

Durability: every completed chunk goes straight to the operating system (no Python-side buffer), and a
chunk is closed at least every ``flush_interval_s`` seconds of wall time, so a recorder killed with
SIGKILL leaves a file whose complete chunks `DriveReader` still reads (and reports as truncated).
Drive metadata is written first, outside any chunk, so it survives truncation too.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import mcap
import msgspec
import numpy as np
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter

from . import _proto as pb
from .conversions import EncodeOptions, channel_metadata, check_stamp, encode, encode_calibration
from .jpeg import jpeg_size
from .messages import CameraInfo, Detections, GeoFix, Header, Image, Odometry, Pose, Segmentation
from .metadata import DriveMetadata
from .topics import (
    CALIBRATION_TOPIC,
    CAMERA_TOPIC,
    GPS_TOPIC,
    MESSAGE_ENCODING,
    ODOMETRY_TOPIC,
    POSE_TOPIC,
    SCHEMA_CALIBRATION,
    TRUTH_BOXES_TOPIC,
    TRUTH_SEGMENTATION_TOPIC,
    drive_topic,
)

_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


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
        self._options = EncodeOptions(jpeg_quality=self.jpeg_quality, raw_images=image_encoding == "bgr8")
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
        self._channel_class_names: dict[str, str] = {}  # topic -> JSON class table
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

    # ------------------------------------------------------------------------------------------ records

    def write(self, topic: str, msg: msgspec.Struct, *, vertical_std_m: float | None = None) -> None:
        """Store one record on ``topic``'s channel, converted by the topic table's conversion (the same
        one the reader decodes with). ValueError naming the stamp and field for what a drive cannot hold.

        Images: ``jpeg``/``png`` bytes are stored as they are (not validated: a recorder stores what the
        camera gave); ``bgr8``/``mono8`` pixels are JPEG-encoded, or stored raw when the drive was opened
        with ``image_encoding="bgr8"``. The first frame of a drive whose metadata has a camera, or of an
        Image carrying intrinsics, also writes ``camera/calibration``.
        """
        entry = drive_topic(topic)
        if isinstance(msg, Image):
            self._check_frame(topic, msg)
        opts = self._options if vertical_std_m is None else msgspec.structs.replace(
            self._options, vertical_std_m=vertical_std_m)
        schema_name, proto = encode(entry, msg, opts)
        meta = channel_metadata(entry, msg)
        if meta.get("class_names") is not None:
            self._class_table(topic, meta["class_names"])
        self._write(topic, schema_name, msg.header.stamp_ns, proto, meta)  # type: ignore[attr-defined]

    def _check_frame(self, topic: str, msg: Image) -> None:
        stamp_ns = msg.header.stamp_ns
        camera = self.metadata.camera
        if camera is not None:  # the frame must be the size of the drive's camera
            if msg.encoding == "jpeg":
                width, height = jpeg_size(np.asarray(msg.data, np.uint8).tobytes()) or (0, 0)
            elif msg.encoding == "png":
                width = height = 0
            else:
                width, height = np.asarray(msg.data).shape[1::-1][:2] if np.ndim(msg.data) >= 2 else (0, 0)
        if camera is not None and width and (width, height) != (camera.width_px, camera.height_px):
            raise ValueError(
                f"image at stamp_ns={stamp_ns} is {width}x{height} px but the drive's camera is "
                f"{camera.width_px}x{camera.height_px} px"
            )
        if not self._calibration_written and (camera or msg.intrinsics) is not None:
            self.add_calibration(stamp_ns, camera or msg.intrinsics)  # type: ignore[arg-type]

    def _class_table(self, topic: str, table_json: str) -> None:
        known = self._channel_class_names.setdefault(topic, table_json)
        if known != table_json:
            raise ValueError(f"topic {topic!r} was started with class table {known}, now given {table_json}")

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
        stamp_ns = check_stamp(stamp_ns)
        if (image_bgr is None) == (jpeg is None):
            raise ValueError("add_image takes exactly one of image_bgr or jpeg=")
        if image_bgr is not None:
            image_bgr = np.asarray(image_bgr)
            if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
                raise ValueError(f"image_bgr must be uint8 [H, W, 3]; got {image_bgr.dtype} {image_bgr.shape}")
            height, width = image_bgr.shape[:2]
            msg = Image(Header(stamp_ns), width, height, "bgr8", image_bgr)
        else:
            width, height = jpeg_size(jpeg) or (0, 0)  # type: ignore[arg-type]
            msg = Image(Header(stamp_ns), width, height, "jpeg", np.frombuffer(bytes(jpeg), np.uint8))  # type: ignore[arg-type]
        self.write(topic, msg)

    def add_calibration(self, stamp_ns: int, camera: CameraInfo, *, topic: str = CALIBRATION_TOPIC) -> None:
        """Camera intrinsics as foxglove.CameraCalibration (written automatically with the first frame
        when the metadata has a camera or the frame carries intrinsics)."""
        stamp_ns = check_stamp(stamp_ns)
        self._write(topic, SCHEMA_CALIBRATION, stamp_ns, encode_calibration(camera, stamp_ns))
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
        var_h = float(horizontal_std_m) ** 2
        fix = GeoFix(Header(check_stamp(stamp_ns)), lat_deg=float(lat_deg), lon_deg=float(lon_deg),
                     alt_m=float(alt_m), heading_deg=heading_deg, cov_enu_m2=(var_h, 0.0, 0.0, var_h),
                     heading_std_deg=heading_std_deg, speed_mps=speed_mps)
        self.write(topic, fix, vertical_std_m=vertical_std_m)

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
        """A pose estimate with its 2x2 east/north covariance ``cov_enu_m2`` (row-major, m^2): a `Pose` on
        ``localization/pose`` (``status`` its filter status), a `GeoFix` on other location topics."""
        cov = tuple(float(c) for c in cov_enu_m2)
        if len(cov) != 4:
            raise ValueError(f"cov_enu_m2={tuple(cov_enu_m2)!r} must be 4 finite numbers (2x2 row-major, m^2)")
        header = Header(check_stamp(stamp_ns))
        entry = drive_topic(topic)
        msg: msgspec.Struct
        if entry.message_type is Pose:
            kwargs = {"status": status} if status is not None else {}
            msg = Pose(header, lat_deg=float(lat_deg), lon_deg=float(lon_deg), alt_m=float(alt_m),
                       heading_deg=0.0 if heading_deg is None else float(heading_deg), cov_enu_m2=cov,  # type: ignore[arg-type]
                       speed_mps=speed_mps or 0.0, valid=True, **kwargs,
                       **({"heading_std_deg": heading_std_deg} if heading_std_deg is not None else {}))
        else:
            msg = GeoFix(header, lat_deg=float(lat_deg), lon_deg=float(lon_deg), alt_m=float(alt_m),
                         heading_deg=heading_deg, cov_enu_m2=cov, heading_std_deg=heading_std_deg,  # type: ignore[arg-type]
                         speed_mps=speed_mps)
        self.write(topic, msg)

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
        self.write(topic, Odometry(Header(check_stamp(stamp_ns)), speed_mps=float(speed_mps),
                                   yaw_rate_radps=float(yaw_rate_radps), speed_std_mps=speed_std_mps,
                                   yaw_rate_std_radps=yaw_rate_std_radps))

    # ------------------------------------------------------------------------------------------ truth

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
            scores: float [N] in [0, 1] for detections; None for ground truth (stored as 1.0).
        """
        boxes = np.asarray(boxes_xyxy_px, dtype=np.float32)
        boxes = boxes.reshape(-1, 4) if boxes.size else np.zeros((0, 4), np.float32)
        ids = np.asarray(class_ids).reshape(-1)
        score_array = np.ones(len(ids), np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
        self.write(topic, Detections(Header(check_stamp(stamp_ns)), boxes, ids.astype(np.int32), score_array,
                                     class_names=[str(n) for n in class_names]))

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
        self.write(topic, Segmentation(Header(check_stamp(stamp_ns)), np.asarray(mask),
                                       class_names=[str(n) for n in class_names]))
