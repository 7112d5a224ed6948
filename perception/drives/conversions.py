"""The bus <-> drive conversion of every channel: one encode and one decode per conversion of the topic
table (`perception.drives.topics`, ``Topic.conversion``). The writer stores bus records with `encode`,
the reader (and so replay and training) gets them back with `decode`: a drive recorded from the bus
replays to the same records.

| conversion  | record       | Foxglove message                                                        |
|-------------|--------------|-------------------------------------------------------------------------|
| image       | Image        | CompressedImage (jpeg/png bytes as they came) or RawImage (bgr8, mono8) |
| calibration | CameraInfo   | CameraCalibration (K, P, D)                                             |
| fix         | GeoFix       | LocationFix + key-value metadata for what it has no slot for            |
| pose        | Pose         | LocationFix, the same layout + the filter's state in metadata           |
| odom        | Odometry     | Odometry: linear_velocity.x, angular_velocity.z (ccw+), velocity_covariance |
| boxes       | Detections   | ImageAnnotations: one LINE_LOOP per box (class_id, score in its metadata) + a label |
| mask        | Segmentation | RawImage mono8; class table and model id in the channel metadata        |

What a drive does not hold, once for every reader (these are the record's own defaults unless said):
- covariance of a fix or pose (position_covariance_type UNKNOWN or no 9 values): NaN variances, i.e.
  unknown. Never identity: a filter must not trust a made-up 1 m^2;
- odometry stds (no velocity_covariance, or a variance <= 0): None, unknown;
- heading: None for a GeoFix; a Pose keeps 0 deg with its default heading_std_deg of 180 (no heading);
- ``valid`` of a fix or pose: True (a stored measurement counts unless marked ``valid=false``, with the
  fix's ``reason`` beside it);
- ``hypotheses`` of a fix: the metadata value ``hypotheses``, a JSON list of `FixHypothesis` objects
  (field names as in the record; an unknown covariance entry null); absent when the fix has none;
- ``source`` of a GeoFix: ""; header ``frame_id``: the message's Foxglove frame id;
- scores of boxes on ground-truth channels (drive only, written without scores): 1.0;
- ``class_fractions`` of a mask: computed from the mask;
- ``Odometry.valid`` and ``Segmentation.valid`` have no slot: invalid ones are not stored (ValueError);
- raw images: rgb8 and 8UC3 come back as bgr8, 8UC1 as mono8; the header ``trace`` is not stored.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from . import _proto as pb
from .jpeg import encode_jpeg, jpeg_size, looks_like_jpeg
from .messages import (
    CameraInfo,
    Detections,
    FixHypothesis,
    GeoFix,
    Header,
    Image,
    Odometry,
    Pose,
    Segmentation,
)
from .topics import (
    BODY_FRAME_ID,
    CAMERA_FRAME_ID,
    ENU_FRAME_ID,
    GPS_FRAME_ID,
    ODOM_FRAME_ID,
    SCHEMA_CALIBRATION,
    SCHEMA_COMPRESSED_IMAGE,
    SCHEMA_IMAGE_ANNOTATIONS,
    SCHEMA_LOCATION_FIX,
    SCHEMA_ODOMETRY,
    SCHEMA_RAW_IMAGE,
    Topic,
)

UNKNOWN_COV = (math.nan, 0.0, 0.0, math.nan)

# Box outline colours by class id (RGB 0-1), Tableau-10 order: distinct on street imagery.
_PALETTE = (
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81),
)
_RAW_CHANNELS = {"bgr8": 3, "rgb8": 3, "8UC3": 3, "mono8": 1, "8UC1": 1}


class CorruptRecord(ValueError):
    """A drive record that cannot become its record (a broken JPEG, an undecodable protobuf)."""


def optional_float(text: str | None) -> float | None:
    """``float(text)``, or None when ``text`` is None or not a number (the one such helper)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def check_stamp(stamp_ns: int) -> int:
    stamp = int(stamp_ns)
    if stamp != stamp_ns or stamp < 0:
        raise ValueError(f"stamp_ns={stamp_ns!r} must be a non-negative integer (ns since the Unix epoch)")
    return stamp


def _kv(key: str, value: object) -> pb.KeyValuePair:
    return pb.KeyValuePair(key=key, value=str(value))


def _metadata(proto: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in proto.metadata}


def _class_names(proto_meta: Mapping[str, str], channel_meta: Mapping[str, str]) -> list[str]:
    text = proto_meta.get("class_names") or channel_meta.get("class_names")
    return list(json.loads(text)) if text else []


# ---------------------------------------------------------------------------------------------- encode


class EncodeOptions(msgspec.Struct, frozen=True):
    """How the writer stores what the record leaves open."""

    jpeg_quality: int = 90
    raw_images: bool = False  # store bgr8/mono8 frames as RawImage (lossless) instead of JPEG
    vertical_std_m: float | None = None  # of fixes; None: twice the horizontal std, marked APPROXIMATED
    truth: bool = False  # a drive-only ground-truth channel: boxes carry no scores


def _encode_image(msg: Image, opts: EncodeOptions) -> tuple[str, Any]:
    stamp = pb.timestamp(msg.header.stamp_ns)
    frame_id = msg.header.frame_id or CAMERA_FRAME_ID
    if msg.encoding in ("jpeg", "png"):
        if opts.raw_images:
            raise ValueError("this drive stores raw bgr8 frames (image_encoding='bgr8'); pass pixels, not "
                             f"{msg.encoding} bytes")
        data = np.asarray(msg.data, np.uint8).tobytes()
        return SCHEMA_COMPRESSED_IMAGE, pb.CompressedImage(timestamp=stamp, frame_id=frame_id, data=data,
                                                           format=msg.encoding)
    pixels = np.asarray(msg.data)
    channels = {"bgr8": 3, "mono8": 1}.get(msg.encoding)
    shape_ok = pixels.ndim == 3 and pixels.shape[2] == 3 if channels == 3 else pixels.ndim == 2
    if channels is None or pixels.dtype != np.uint8 or not shape_ok:
        raise ValueError(f"image at stamp_ns={msg.header.stamp_ns}: encoding {msg.encoding!r} with "
                         f"{pixels.dtype} {pixels.shape} is not uint8 bgr8 [H, W, 3] or mono8 [H, W]")
    if opts.raw_images:
        height, width = pixels.shape[:2]
        return SCHEMA_RAW_IMAGE, pb.RawImage(timestamp=stamp, frame_id=frame_id, width=width, height=height,
                                             encoding=msg.encoding, step=width * channels,
                                             data=np.ascontiguousarray(pixels).tobytes())
    data = encode_jpeg(pixels, opts.jpeg_quality)
    return SCHEMA_COMPRESSED_IMAGE, pb.CompressedImage(timestamp=stamp, frame_id=frame_id, data=data, format="jpeg")


def encode_calibration(camera: CameraInfo, stamp_ns: int) -> pb.CameraCalibration:
    fx, fy, cx, cy = camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px
    return pb.CameraCalibration(
        timestamp=pb.timestamp(stamp_ns), frame_id=CAMERA_FRAME_ID, width=camera.width_px,
        height=camera.height_px, distortion_model=camera.distortion_model, D=list(camera.distortion),
        K=camera.K, R=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        P=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def _encode_location(msg: GeoFix | Pose, opts: EncodeOptions) -> tuple[str, Any]:
    stamp_ns = msg.header.stamp_ns
    lat, lon, alt = float(msg.lat_deg), float(msg.lon_deg), float(msg.alt_m)
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"fix at stamp_ns={stamp_ns}: lat_deg={lat!r} is outside [-90, 90]")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"fix at stamp_ns={stamp_ns}: lon_deg={lon!r} is outside [-180, 180]")
    if not math.isfinite(alt):
        raise ValueError(f"fix at stamp_ns={stamp_ns}: alt_m={alt!r} is not finite")
    cov = [float(c) for c in msg.cov_enu_m2]
    if len(cov) != 4:
        raise ValueError(f"fix at stamp_ns={stamp_ns}: cov_enu_m2={tuple(msg.cov_enu_m2)!r} is not 4 numbers")
    frame_id = msg.header.frame_id or (ENU_FRAME_ID if isinstance(msg, Pose) else GPS_FRAME_ID)
    proto = pb.LocationFix(timestamp=pb.timestamp(stamp_ns), frame_id=frame_id, latitude=lat, longitude=lon,
                           altitude=alt)
    if math.isnan(cov[0]) and math.isnan(cov[3]):
        proto.position_covariance.extend([0.0] * 9)
        proto.position_covariance_type = pb.LocationFix.UNKNOWN
    else:
        if not all(math.isfinite(c) for c in cov) or cov[0] < 0 or cov[3] < 0:
            raise ValueError(f"fix at stamp_ns={stamp_ns}: cov_enu_m2={tuple(cov)!r} must be 4 finite numbers "
                             "(2x2 row-major, m^2) with non-negative variances, or NaN variances for unknown")
        known = opts.vertical_std_m is not None
        var_v = opts.vertical_std_m**2 if known else 4.0 * (cov[0] + cov[3]) / 2.0  # type: ignore[operator]
        proto.position_covariance.extend([cov[0], cov[1], 0.0, cov[2], cov[3], 0.0, 0.0, 0.0, var_v])
        diagonal = cov[1] == 0.0 and cov[2] == 0.0
        proto.position_covariance_type = (
            (pb.LocationFix.DIAGONAL_KNOWN if diagonal else pb.LocationFix.KNOWN) if known
            else pb.LocationFix.APPROXIMATED
        )
    heading = msg.heading_deg
    if heading is not None:
        if not math.isfinite(heading):
            raise ValueError(f"fix at stamp_ns={stamp_ns}: heading_deg={heading!r} is not finite (None: unknown)")
        proto.heading = math.radians(float(heading) % 360.0)
    meta: list[tuple[str, str]] = []
    if msg.heading_std_deg is not None:
        meta.append(("heading_std_deg", repr(float(msg.heading_std_deg))))
    if msg.speed_mps is not None:
        meta.append(("speed_mps", repr(float(msg.speed_mps))))
    if isinstance(msg, Pose):
        proto.velocity.x, proto.velocity.y = (float(v) for v in msg.velocity_enu_mps)  # east, north
        proto.velocity.z = 0.0
        meta += [("status", msg.status), ("yaw_rate_radps", repr(float(msg.yaw_rate_radps))),
                 ("speed_std_mps", repr(float(msg.speed_std_mps))), ("inputs_used", json.dumps(msg.inputs_used))]
        if msg.reason:
            meta.append(("reason", msg.reason))
        if msg.inputs_gated:
            meta.append(("inputs_gated", json.dumps(msg.inputs_gated)))
        if msg.landmarks_used:
            meta += [("landmarks_used", str(int(msg.landmarks_used))), ("landmark_ids", json.dumps(msg.landmark_ids))]
        if msg.fix_trust_reason:  # a fusion with a context model (docs/context.md)
            meta += [("fix_trust", repr(float(msg.fix_trust))), ("fix_trust_reason", msg.fix_trust_reason)]
    else:
        if heading is not None and msg.speed_mps is not None:
            # ENU velocity from compass heading: east = v sin(h), north = v cos(h)
            proto.velocity.x = msg.speed_mps * math.sin(proto.heading)
            proto.velocity.y = msg.speed_mps * math.cos(proto.heading)
            proto.velocity.z = 0.0
        if msg.source:
            meta.append(("source", msg.source))
        if msg.hypotheses:
            meta.append(("hypotheses", _encode_hypotheses(msg.hypotheses, stamp_ns)))
    if not msg.valid:
        meta.append(("valid", "false"))
        if getattr(msg, "reason", ""):  # a Pose has none
            meta.append(("reason", msg.reason))
    proto.metadata.extend(_kv(k, v) for k, v in meta)
    return SCHEMA_LOCATION_FIX, proto


def _encode_odometry(msg: Odometry, opts: EncodeOptions) -> tuple[str, Any]:
    stamp_ns = msg.header.stamp_ns
    if not (math.isfinite(msg.speed_mps) and math.isfinite(msg.yaw_rate_radps)):
        raise ValueError(f"odometry at stamp_ns={stamp_ns}: speed_mps={msg.speed_mps!r}, "
                         f"yaw_rate_radps={msg.yaw_rate_radps!r} must be finite")
    if not msg.valid:
        raise ValueError(f"odometry at stamp_ns={stamp_ns} is marked invalid; a drive has no slot for that")
    proto = pb.Odometry(timestamp=pb.timestamp(stamp_ns), frame_id=ODOM_FRAME_ID,
                        body_frame_id=msg.header.frame_id or BODY_FRAME_ID)
    proto.pose.orientation.w = 1.0  # pose unknown: identity, so viewers get a valid quaternion
    proto.linear_velocity.x = float(msg.speed_mps)
    proto.angular_velocity.z = float(msg.yaw_rate_radps)
    if msg.speed_std_mps is not None or msg.yaw_rate_std_radps is not None:
        cov = [0.0] * 36  # a zero variance reads back as unknown
        cov[0] = (msg.speed_std_mps or 0.0) ** 2  # vx, vx
        cov[35] = (msg.yaw_rate_std_radps or 0.0) ** 2  # wz, wz
        proto.velocity_covariance.extend(cov)
    return SCHEMA_ODOMETRY, proto


def _encode_boxes(msg: Detections, opts: EncodeOptions) -> tuple[str, Any]:
    stamp_ns = msg.header.stamp_ns
    raw_boxes = np.asarray(msg.boxes_xyxy_px, dtype=np.float64)
    boxes = raw_boxes.reshape(-1, 4) if raw_boxes.size else np.zeros((0, 4))
    ids = np.asarray(msg.class_ids, dtype=np.int64).reshape(-1)
    names = msg.class_names
    if len(ids) != len(boxes):
        raise ValueError(f"boxes at stamp_ns={stamp_ns}: {len(boxes)} boxes but {len(ids)} class ids")
    if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError(f"boxes at stamp_ns={stamp_ns} must be finite (x1, y1, x2, y2) with x1<=x2, y1<=y2")
    if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
        raise ValueError(f"boxes at stamp_ns={stamp_ns}: class id {int(ids.max())} outside the "
                         f"{len(names)}-class table")
    scores = np.asarray(msg.scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(ids):
        raise ValueError(f"boxes at stamp_ns={stamp_ns}: {len(ids)} boxes but {len(scores)} scores")
    ts = pb.timestamp(stamp_ns)
    proto = pb.ImageAnnotations(timestamp=ts)
    meta = [("class_names", json.dumps(list(names)))]
    if msg.model_id:
        meta.append(("model_id", msg.model_id))
    if msg.image_width_px or msg.image_height_px:
        meta += [("image_width_px", str(msg.image_width_px)), ("image_height_px", str(msg.image_height_px))]
    if not msg.valid:
        meta.append(("valid", "false"))
    proto.metadata.extend(_kv(k, v) for k, v in meta)
    for (x1, y1, x2, y2), cid, score in zip(boxes.tolist(), ids.tolist(), scores.tolist(), strict=True):
        r, g, b = _PALETTE[cid % len(_PALETTE)]
        color = pb.Color(r=r, g=g, b=b, a=1.0)
        name = str(names[cid])
        points = pb.PointsAnnotation(
            timestamp=ts, type=pb.PointsAnnotation.LINE_LOOP, outline_color=color, thickness=2.0,
            points=[pb.Point2(x=x1, y=y1), pb.Point2(x=x2, y=y1), pb.Point2(x=x2, y=y2), pb.Point2(x=x1, y=y2)],
        )
        points.metadata.extend([_kv("class_id", cid), _kv("class_name", name)])
        if not opts.truth:
            points.metadata.append(_kv("score", repr(score)))
        proto.points.append(points)
        proto.texts.append(pb.TextAnnotation(
            timestamp=ts, position=pb.Point2(x=x1, y=max(y1 - 2.0, 0.0)),
            text=name if opts.truth else f"{name} {score:.2f}",
            font_size=12.0, text_color=pb.Color(r=1.0, g=1.0, b=1.0, a=1.0), background_color=color,
        ))
    return SCHEMA_IMAGE_ANNOTATIONS, proto


def _encode_mask(msg: Segmentation, opts: EncodeOptions) -> tuple[str, Any]:
    stamp_ns = msg.header.stamp_ns
    mask = np.asarray(msg.label_mask)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"label mask at stamp_ns={stamp_ns} must be uint8 [H, W]; got {mask.dtype} {mask.shape}")
    if mask.size and int(mask.max()) >= len(msg.class_names):
        raise ValueError(f"label mask at stamp_ns={stamp_ns} holds class {int(mask.max())} outside the "
                         f"{len(msg.class_names)}-class table")
    if not msg.valid:
        raise ValueError(f"label mask at stamp_ns={stamp_ns} is marked invalid; a drive has no slot for that")
    height, width = mask.shape
    return SCHEMA_RAW_IMAGE, pb.RawImage(
        timestamp=pb.timestamp(stamp_ns), frame_id=msg.header.frame_id or CAMERA_FRAME_ID, width=width,
        height=height, encoding="mono8", step=width, data=np.ascontiguousarray(mask).tobytes(),
    )


def channel_metadata(topic: Topic, msg: msgspec.Struct) -> dict[str, str]:
    """What a channel holds for all its messages (the class table of masks and boxes, a mask's model)."""
    if topic.conversion == "mask":
        meta = {"class_names": json.dumps(list(msg.class_names))}  # type: ignore[attr-defined]
        if msg.model_id:  # type: ignore[attr-defined]
            meta["model_id"] = msg.model_id  # type: ignore[attr-defined]
        return meta
    if topic.conversion == "boxes":
        return {"class_names": json.dumps(list(msg.class_names))}  # type: ignore[attr-defined]
    return {}


_ENCODERS = {"image": _encode_image, "fix": _encode_location, "pose": _encode_location,
             "odom": _encode_odometry, "boxes": _encode_boxes, "mask": _encode_mask}


def encode(topic: Topic, msg: msgspec.Struct, opts: EncodeOptions | None = None) -> tuple[str, Any]:
    """(schema name, protobuf message) that stores ``msg`` on ``topic``'s drive channel. ValueError naming
    the stamp and the field for a record the drive cannot hold."""
    if not isinstance(msg, topic.message_type):
        raise ValueError(f"{topic.name}: carries {topic.type_name}, not {type(msg).__name__}")
    encoder = _ENCODERS.get(topic.conversion)
    if encoder is None:
        raise ValueError(f"{topic.name}: {topic.type_name} records cannot be stored in a drive this way")
    check_stamp(msg.header.stamp_ns)  # type: ignore[attr-defined]
    opts = opts or EncodeOptions()
    if not topic.on_bus:
        opts = msgspec.structs.replace(opts, truth=True)
    return encoder(msg, opts)


# ---------------------------------------------------------------------------------------------- decode


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _decode_image(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> Image:
    stamp_ns = header.stamp_ns
    if schema == SCHEMA_COMPRESSED_IMAGE:
        proto = pb.CompressedImage.FromString(data)
        encoding = (proto.format.lower() or "jpeg").replace("jpg", "jpeg")
        payload = proto.data
        if encoding == "jpeg":
            size = jpeg_size(payload)
            if size is None or not looks_like_jpeg(payload):
                raise CorruptRecord(f"image at stamp_ns={stamp_ns}: not a complete JPEG (missing SOI/SOF/EOI markers)")
        elif encoding == "png":
            size = _png_size(payload)
            if size is None:
                raise CorruptRecord(f"image at stamp_ns={stamp_ns}: not a PNG")
        else:
            raise CorruptRecord(f"image at stamp_ns={stamp_ns}: compressed format {proto.format!r} is not jpeg or png")
        header.frame_id = proto.frame_id or CAMERA_FRAME_ID
        width, height = size
        pixels = np.frombuffer(payload, np.uint8)
    elif schema == SCHEMA_RAW_IMAGE:
        proto = pb.RawImage.FromString(data)
        channels = _RAW_CHANNELS.get(proto.encoding)
        width, height = proto.width, proto.height
        step = proto.step or width * (channels or 0)
        if channels is None or width <= 0 or height <= 0 or step < width * channels or len(proto.data) < step * height:
            raise CorruptRecord(f"image at stamp_ns={stamp_ns}: raw {proto.encoding!r} {width}x{height} "
                                f"(step {proto.step}) with {len(proto.data)} bytes cannot be read")
        rows = np.frombuffer(proto.data, np.uint8)[: step * height].reshape(height, step)[:, : width * channels]
        if channels == 3:
            rows = rows.reshape(height, width, 3)
            if proto.encoding == "rgb8":
                rows = rows[..., ::-1]
        pixels = np.ascontiguousarray(rows)
        encoding = "bgr8" if channels == 3 else "mono8"
        header.frame_id = proto.frame_id or CAMERA_FRAME_ID
    else:
        raise CorruptRecord(f"image at stamp_ns={stamp_ns}: schema {schema!r} is not an image")
    camera = ctx.camera
    if camera is not None and (camera.width_px, camera.height_px) != (width, height):
        camera = camera.scaled(width, height)
    return Image(header, width_px=width, height_px=height, encoding=encoding, data=pixels, intrinsics=camera)


def _decode_calibration(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> CameraInfo:
    proto = pb.CameraCalibration.FromString(data)
    k = list(proto.K)
    if len(k) != 9 or k[0] <= 0:
        raise CorruptRecord(f"calibration at stamp_ns={header.stamp_ns}: K={k} is not a pinhole matrix")
    return CameraInfo(proto.width, proto.height, k[0], k[4], k[2], k[5], proto.distortion_model or "plumb_bob",
                      tuple(proto.D))


def _location_common(header: Header, proto: Any) -> dict[str, Any]:
    cov = list(proto.position_covariance)
    known = len(cov) == 9 and proto.position_covariance_type != pb.LocationFix.UNKNOWN
    meta = _metadata(proto)
    fields: dict[str, Any] = {
        "lat_deg": proto.latitude, "lon_deg": proto.longitude, "alt_m": proto.altitude,
        "cov_enu_m2": (cov[0], cov[1], cov[3], cov[4]) if known else UNKNOWN_COV,
        "valid": meta.get("valid", "true") != "false",
    }
    if proto.HasField("heading"):
        fields["heading_deg"] = math.degrees(proto.heading) % 360.0
    heading_std = optional_float(meta.get("heading_std_deg"))
    if heading_std is not None:
        fields["heading_std_deg"] = heading_std
    speed = optional_float(meta.get("speed_mps"))
    if speed is None and proto.HasField("velocity"):
        speed = math.hypot(proto.velocity.x, proto.velocity.y)
    if speed is not None:
        fields["speed_mps"] = speed
    return fields


def _encode_hypotheses(hypotheses: list[FixHypothesis], stamp_ns: int) -> str:
    """A fix's hypotheses as the JSON list of `FixHypothesis` objects (the metadata value ``hypotheses``);
    an unknown (NaN) covariance entry is written as null, JSON having no NaN."""
    out = []
    for h in hypotheses:
        if not all(math.isfinite(float(v)) for v in (h.lat_deg, h.lon_deg, h.weight)):
            # a hypothesis that cannot be written must not be silently altered
            raise ValueError(f"fix at stamp_ns={stamp_ns}: hypothesis {h!r} has a non-finite position or weight")
        d = msgspec.to_builtins(h)
        d["cov_enu_m2"] = [float(c) if math.isfinite(float(c)) else None for c in h.cov_enu_m2]
        out.append(d)
    return json.dumps(out, separators=(",", ":"), allow_nan=False)


def _decode_hypotheses(text: str, stamp_ns: int) -> list[FixHypothesis]:
    try:
        items = json.loads(text)
        for d in items:
            d["cov_enu_m2"] = [math.nan if c is None else c for c in d.get("cov_enu_m2", UNKNOWN_COV)]
        return msgspec.convert(items, type=list[FixHypothesis])
    except (ValueError, TypeError, AttributeError, msgspec.ValidationError) as exc:
        raise ValueError(f"fix at stamp_ns={stamp_ns}: metadata 'hypotheses' is not a list of hypotheses "
                         f"({exc})") from None


def _decode_fix(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> GeoFix:
    proto = pb.LocationFix.FromString(data)
    header.frame_id = proto.frame_id or GPS_FRAME_ID
    meta = _metadata(proto)
    hypotheses = _decode_hypotheses(meta["hypotheses"], header.stamp_ns) if "hypotheses" in meta else []
    return GeoFix(header, source=meta.get("source", ""), reason=meta.get("reason", ""), hypotheses=hypotheses,
                  **_location_common(header, proto))


def _decode_pose(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> Pose:
    proto = pb.LocationFix.FromString(data)
    header.frame_id = proto.frame_id or ENU_FRAME_ID
    fields = _location_common(header, proto)
    meta = _metadata(proto)
    if proto.HasField("velocity"):
        fields["velocity_enu_mps"] = (proto.velocity.x, proto.velocity.y)
    for key in ("yaw_rate_radps", "speed_std_mps"):
        value = optional_float(meta.get(key))
        if value is not None:
            fields[key] = value
    if "status" in meta:
        fields["status"] = meta["status"]
    for key in ("inputs_used", "inputs_gated", "landmark_ids"):
        if key in meta:
            fields[key] = list(json.loads(meta[key]))
    if "landmarks_used" in meta:
        fields["landmarks_used"] = int(meta["landmarks_used"])
    if "reason" in meta:
        fields["reason"] = meta["reason"]
    trust = optional_float(meta.get("fix_trust"))
    if trust is not None:
        fields["fix_trust"] = trust
    if "fix_trust_reason" in meta:
        fields["fix_trust_reason"] = meta["fix_trust_reason"]
    return Pose(header, **fields)


def _decode_odometry(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> Odometry:
    proto = pb.Odometry.FromString(data)
    header.frame_id = proto.body_frame_id or BODY_FRAME_ID
    cov = list(proto.velocity_covariance)
    speed_var, yaw_var = (cov[0], cov[35]) if len(cov) == 36 else (0.0, 0.0)
    return Odometry(header, speed_mps=proto.linear_velocity.x, yaw_rate_radps=proto.angular_velocity.z,
                    speed_std_mps=math.sqrt(speed_var) if speed_var > 0 else None,
                    yaw_rate_std_radps=math.sqrt(yaw_var) if yaw_var > 0 else None)


def _decode_boxes(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> Detections:
    """Annotations without a ``class_id`` (drawn by other tools) are ignored."""
    proto = pb.ImageAnnotations.FromString(data)
    meta = _metadata(proto)
    boxes, ids, scores = [], [], []
    for points in proto.points:
        point_meta = _metadata(points)
        if "class_id" not in point_meta or not points.points:
            continue
        xs = [p.x for p in points.points]
        ys = [p.y for p in points.points]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
        ids.append(int(point_meta["class_id"]))
        score = optional_float(point_meta.get("score"))
        scores.append(1.0 if score is None else score)
    return Detections(
        header, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(ids, dtype=np.int32),
        np.asarray(scores, dtype=np.float32), class_names=_class_names(meta, ctx.channel_metadata),
        image_width_px=int(meta.get("image_width_px", 0)), image_height_px=int(meta.get("image_height_px", 0)),
        model_id=meta.get("model_id", ""), valid=meta.get("valid", "true") != "false",
    )


def _decode_mask(header: Header, schema: str, data: bytes, ctx: DecodeContext) -> Segmentation:
    proto = pb.RawImage.FromString(data)
    if proto.encoding not in ("mono8", "8UC1"):
        raise CorruptRecord(f"label mask at stamp_ns={header.stamp_ns} is {proto.encoding!r}, not mono8")
    step = proto.step or proto.width
    if len(proto.data) < step * proto.height:
        raise CorruptRecord(f"label mask at stamp_ns={header.stamp_ns}: {proto.width}x{proto.height} with "
                            f"{len(proto.data)} bytes")
    header.frame_id = proto.frame_id or CAMERA_FRAME_ID
    mask = np.frombuffer(proto.data, np.uint8)[: step * proto.height].reshape(proto.height, step)[:, : proto.width]
    names = _class_names({}, ctx.channel_metadata)
    counts = np.bincount(mask.reshape(-1), minlength=len(names))[: len(names)] if names else np.zeros(0)
    fractions = (counts / max(mask.size, 1)).tolist()
    return Segmentation(header, np.ascontiguousarray(mask), class_names=names, class_fractions=fractions,
                        model_id=ctx.channel_metadata.get("model_id", ""))


class DecodeContext(msgspec.Struct):
    """What the reader knows beyond one message: the drive's camera, the channel's metadata."""

    camera: CameraInfo | None = None
    channel_metadata: dict[str, str] = {}


_DECODERS = {"image": _decode_image, "calibration": _decode_calibration, "fix": _decode_fix,
             "pose": _decode_pose, "odom": _decode_odometry, "boxes": _decode_boxes, "mask": _decode_mask}
_SCHEMAS_OF = {"image": (SCHEMA_COMPRESSED_IMAGE, SCHEMA_RAW_IMAGE), "calibration": (SCHEMA_CALIBRATION,),
               "fix": (SCHEMA_LOCATION_FIX,), "pose": (SCHEMA_LOCATION_FIX,), "odom": (SCHEMA_ODOMETRY,),
               "boxes": (SCHEMA_IMAGE_ANNOTATIONS,), "mask": (SCHEMA_RAW_IMAGE,)}


def decode(topic: Topic, schema: str, stamp_ns: int, sequence: int, data: bytes,
           ctx: DecodeContext | None = None) -> msgspec.Struct:
    """The record of one drive message of ``topic``. ValueError when the channel's schema is not the
    table's; CorruptRecord when the bytes do not decode."""
    if schema not in _SCHEMAS_OF.get(topic.conversion, ()):
        raise ValueError(f"topic {topic.name!r} holds {schema}, not {' or '.join(topic.schemas) or 'a drive schema'}")
    header = Header(stamp_ns=stamp_ns, seq=sequence)
    try:
        return _DECODERS[topic.conversion](header, schema, data, ctx or DecodeContext())
    except CorruptRecord:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends: one error type for readers
        raise CorruptRecord(f"{topic.name} at stamp_ns={stamp_ns}: undecodable {schema}: {exc}") from None
