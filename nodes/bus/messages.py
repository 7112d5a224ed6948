"""Typed bus messages (msgspec Structs; MessagePack maps on the wire, see docs/wire_format.md).

Conventions, everywhere:
- times are integer nanoseconds, ``*_ns``; ``stamp_ns`` is the capture time (UTC, Unix epoch);
- positions are WGS84 ``lat_deg``/``lon_deg``; local offsets and covariances are in the ENU frame
  (east, north) in metres, ``*_enu_m`` / ``cov_enu_m2`` (row-major 2x2: [ee, en, ne, nn]);
- headings are degrees clockwise from true north in [0, 360), as a compass reads;
- every estimate carries its uncertainty and a ``valid`` flag.

Array fields (``np.ndarray``) are never serialised into the MessagePack body: the body holds a small
reference ``{"frame": k, "dtype": "<u1", "shape": [...]}`` and the raw bytes travel as ZeroMQ frame k.
"""

from __future__ import annotations

import msgspec
import numpy as np

SCHEMA_VERSION = 1  # bump on any incompatible change of a message below or of the frame layout


class Hop(msgspec.Struct, frozen=True):
    """One node's handling of a message: when it received the input and when it published."""

    node: str
    recv_ns: int  # wall clock (time.time_ns) when the input that caused this message arrived
    pub_ns: int  # wall clock when this message was handed to the socket


class Header(msgspec.Struct):
    """Common to every message. ``trace`` lists the hops from the source (camera) to this message, so the
    end-to-end latency is ``trace[-1].pub_ns - stamp_ns``."""

    stamp_ns: int  # capture time of the data this message describes (UTC, ns since the Unix epoch)
    seq: int = 0  # per-publisher sequence number, starting at 0; a gap means a dropped message
    frame_id: str = ""  # coordinate frame or sensor name ("camera", "enu", "gps")
    trace: list[Hop] = []


class CameraIntrinsics(msgspec.Struct, frozen=True):
    """Pinhole intrinsics in pixels of the image they travel with."""

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float


class Image(msgspec.Struct):
    """A camera frame. ``encoding`` is ``bgr8`` (data: uint8 [H, W, 3]), ``mono8`` (uint8 [H, W]) or
    ``jpeg`` (data: uint8 [N], the JPEG file bytes; width/height still give the decoded size)."""

    header: Header
    width_px: int
    height_px: int
    encoding: str
    data: np.ndarray
    intrinsics: CameraIntrinsics | None = None


class GeoFix(msgspec.Struct):
    """A position + heading fix: from PoseNet (``source`` = model id) or a GPS receiver (``gps``)."""

    header: Header
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    heading_deg: float | None = None
    cov_enu_m2: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 1.0)  # 2x2 row-major, east/north
    heading_std_deg: float | None = None
    speed_mps: float | None = None  # ground speed when the source knows it (GPS receivers do)
    source: str = ""  # model id for PoseNet, receiver name for GPS
    valid: bool = True


class Detections(msgspec.Struct):
    """Objects detected in one image. Boxes are pixel ``(x1, y1, x2, y2)`` in the image's frame."""

    header: Header
    boxes_xyxy_px: np.ndarray  # float32 [N, 4]
    class_ids: np.ndarray  # int32 [N], indices into class_names
    scores: np.ndarray  # float32 [N] in [0, 1]
    class_names: list[str] = []
    image_width_px: int = 0
    image_height_px: int = 0
    model_id: str = ""
    valid: bool = True


class Segmentation(msgspec.Struct):
    """Per-pixel classes of one image (possibly at a reduced resolution)."""

    header: Header
    label_mask: np.ndarray  # uint8 [H, W], indices into class_names
    class_names: list[str] = []
    class_fractions: list[float] = []  # share of pixels per class, same order as class_names
    model_id: str = ""
    valid: bool = True


class Odometry(msgspec.Struct):
    """Wheel/IMU odometry in the body frame: forward speed and yaw rate (counter-clockwise positive)."""

    header: Header
    speed_mps: float
    yaw_rate_radps: float
    speed_std_mps: float = 0.1
    yaw_rate_std_radps: float = 0.01
    valid: bool = True


class PoseStatus:
    """Values of ``Pose.status``."""

    INITIALIZING = "initializing"  # no fix accepted yet
    TRACKING = "tracking"  # fused, consistent measurements
    DEGRADED = "degraded"  # predicting on odometry/motion model only; uncertainty growing
    LOST = "lost"  # uncertainty beyond use, waiting to re-initialise


class Pose(msgspec.Struct):
    """The fused pose that other software subscribes to."""

    header: Header
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    heading_deg: float = 0.0
    speed_mps: float = 0.0
    velocity_enu_mps: tuple[float, float] = (0.0, 0.0)
    yaw_rate_radps: float = 0.0
    cov_enu_m2: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 1.0)  # 2x2 row-major, east/north
    heading_std_deg: float = 180.0
    speed_std_mps: float = 0.0
    status: str = PoseStatus.INITIALIZING
    inputs_used: list[str] = []  # topics whose measurements went into this pose since the last one
    valid: bool = False


class TopicStats(msgspec.Struct):
    """Traffic of one topic through one node over the last diagnostics period."""

    topic: str
    direction: str  # "in" or "out"
    count: int  # messages since the node started
    rate_hz: float  # over the last period
    dropped: int = 0  # inputs known lost (sequence gaps) or skipped (only-latest delivery)


class Diagnostics(msgspec.Struct):
    """One node's health, published at 1 Hz."""

    header: Header
    node: str
    pid: int
    uptime_s: float
    status: str  # "ok", "warn" (errors in the last period) or "error" (not processing)
    topics: list[TopicStats] = []
    latency_ms_p50: float = 0.0  # processing time of one input, median over the last period
    latency_ms_max: float = 0.0
    errors: dict[str, int] = {}  # error kind -> count since start (e.g. "decode:camera/image")
    last_error: str = ""
    restarts: int = 0  # filled by the launcher's view; a node itself reports 0
    ready: bool = True


# Every message type by its wire name (the class name): the one registry the codec and the tools read.
MESSAGE_TYPES: dict[str, type[msgspec.Struct]] = {
    cls.__name__: cls for cls in (Image, GeoFix, Detections, Segmentation, Odometry, Pose, Diagnostics)
}
