"""The message records: what the bus carries and what the drive reader yields (msgspec Structs;
MessagePack maps on the wire, see docs/wire_format.md).

One record per concept: replay, training and evaluation read the same types the live graph publishes
(`perception.drives.topics` maps each to its drive channel). numpy and msgspec only, so that training
(which may not import ``nodes``) and bus clients both import this module cheaply.

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

import json
import math
from collections.abc import Mapping

import msgspec
import numpy as np

# Bump on any incompatible change of a message below or of the frame layout. 2: Image.intrinsics is the
# full CameraInfo (size, distortion); Odometry stds are optional (None: unknown).
SCHEMA_VERSION = 2


def _horizontal_std_m(cov_enu_m2: tuple[float, float, float, float]) -> float:
    mean_var = (cov_enu_m2[0] + cov_enu_m2[3]) / 2.0
    return math.sqrt(max(0.0, mean_var)) if math.isfinite(mean_var) else math.nan


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
    # The publisher's incarnation: a random number in [1, 2**32 - 1] drawn by each Publisher when it is
    # made (a restarted node, a replay starting over), 0 when unknown (a drive, an older publisher).
    # ``seq`` counts within one incarnation: a new incarnation with seq 0 is a restart, not a gap.
    incarnation: int = 0


class CameraInfo(msgspec.Struct, frozen=True):
    """Pinhole intrinsics in pixels of the image they travel with (on an Image, in a drive's metadata).

    ``distortion`` follows OpenCV's order for ``distortion_model`` (``plumb_bob``: k1, k2, p1, p2, k3);
    empty means an undistorted (or unknown-distortion) image.
    """

    width_px: int
    height_px: int
    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"camera size {self.width_px}x{self.height_px} px must be positive")
        for name in ("fx_px", "fy_px", "cx_px", "cy_px"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"camera {name}={value!r} is not finite")
        if self.fx_px <= 0 or self.fy_px <= 0:
            raise ValueError(f"camera focal lengths fx_px={self.fx_px!r}, fy_px={self.fy_px!r} must be positive")

    @classmethod
    def from_hfov(cls, width_px: int, height_px: int, hfov_deg: float) -> CameraInfo:
        """Square pixels, principal point at the centre, focal length from the horizontal field of view."""
        if not 1.0 < hfov_deg < 179.0:
            raise ValueError(f"horizontal field of view {hfov_deg!r} deg is outside (1, 179)")
        fx = (width_px / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width_px, height_px, fx, fx, width_px / 2.0, height_px / 2.0)

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan2(self.width_px / 2.0, self.fx_px))

    @property
    def K(self) -> list[float]:  # noqa: N802 - the textbook name
        """Intrinsic matrix, 3x3 row-major."""
        return [self.fx_px, 0.0, self.cx_px, 0.0, self.fy_px, self.cy_px, 0.0, 0.0, 1.0]

    def scaled(self, width_px: int, height_px: int) -> CameraInfo:
        """The same camera for an image resized to ``width_px`` x ``height_px``."""
        sx, sy = width_px / self.width_px, height_px / self.height_px
        return CameraInfo(
            width_px, height_px, self.fx_px * sx, self.fy_px * sy, self.cx_px * sx, self.cy_px * sy,
            self.distortion_model, self.distortion,
        )

    def to_record(self) -> dict[str, str]:
        """The string map of the drive's ``streetloc.camera`` metadata record."""
        return {
            "width_px": str(self.width_px),
            "height_px": str(self.height_px),
            "fx_px": repr(float(self.fx_px)),
            "fy_px": repr(float(self.fy_px)),
            "cx_px": repr(float(self.cx_px)),
            "cy_px": repr(float(self.cy_px)),
            "distortion_model": self.distortion_model,
            "distortion": json.dumps([float(d) for d in self.distortion]),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, str], name: str = "streetloc.camera") -> CameraInfo:
        try:
            return cls(
                int(record["width_px"]),
                int(record["height_px"]),
                float(record["fx_px"]),
                float(record["fy_px"]),
                float(record["cx_px"]),
                float(record["cy_px"]),
                record.get("distortion_model", "plumb_bob"),
                tuple(float(d) for d in json.loads(record.get("distortion", "[]"))),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"metadata record {name!r} is malformed ({exc!r}): {dict(record)}") from None


class Image(msgspec.Struct):
    """A camera frame. ``encoding`` is ``bgr8`` (data: uint8 [H, W, 3]), ``mono8`` (uint8 [H, W]) or
    ``jpeg`` (data: uint8 [N], the JPEG file bytes; width/height still give the decoded size)."""

    header: Header
    width_px: int
    height_px: int
    encoding: str
    data: np.ndarray
    intrinsics: CameraInfo | None = None

    def to_bgr(self) -> np.ndarray:
        """The pixels as uint8 BGR [H, W, 3] (JPEG/PNG decoded here: the one decode path of the project).
        ValueError naming the frame when the data is not an image of its encoding."""
        data = self.data
        if self.encoding in ("jpeg", "png"):
            import cv2  # only readers of pixels pay for OpenCV

            buf = np.asarray(data, dtype=np.uint8).reshape(-1)
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
            if image is None:
                raise ValueError(f"frame stamp_ns={self.header.stamp_ns}: {self.encoding} of {buf.size} bytes "
                                 "does not decode")
            return image
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise ValueError(f"frame stamp_ns={self.header.stamp_ns}: {self.encoding} pixels must be uint8, "
                             f"got {getattr(data, 'dtype', type(data).__name__)}")
        if self.encoding == "bgr8" and data.ndim == 3 and data.shape[2] == 3:
            return data
        if self.encoding == "mono8" and data.ndim == 2:
            return np.repeat(data[:, :, None], 3, axis=2)
        raise ValueError(f"frame stamp_ns={self.header.stamp_ns}: encoding {self.encoding!r} with data shaped "
                         f"{tuple(data.shape)} is not an image (bgr8 [H,W,3], mono8 [H,W], jpeg, png)")


class FixHypothesis(msgspec.Struct, frozen=True):
    """One place a fix may be: a mode of PoseNet's mixture (a look-alike street is a second mode).

    ``cov_enu_m2`` (2x2 row-major, east/north, m^2) is the spread of this position *if this hypothesis is
    the right one*; ``weight`` is the source's probability that it is the right one (a fix's weights sum
    to at most 1).
    """

    lat_deg: float
    lon_deg: float
    weight: float
    cov_enu_m2: tuple[float, float, float, float] = (math.nan, 0.0, 0.0, math.nan)
    heading_deg: float | None = None
    heading_std_deg: float | None = None


class GeoFix(msgspec.Struct):
    """A position + heading fix: from PoseNet (``source`` = model id) or a GPS receiver (``gps``).

    The top-level position is the best single estimate that plain consumers read; ``hypotheses`` (best
    first, empty for a receiver) is the mixture a filter should use. ``valid=False`` comes with a
    ``reason`` (e.g. ``black_frame``, ``out_of_area``): the source says it should not be trusted.
    """

    header: Header
    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0
    heading_deg: float | None = None
    # 2x2 row-major, east/north, m^2. Unknown (a receiver or drive that gives none): NaN variances, never
    # a made-up 1 m^2 that a filter would trust.
    cov_enu_m2: tuple[float, float, float, float] = (math.nan, 0.0, 0.0, math.nan)
    heading_std_deg: float | None = None
    speed_mps: float | None = None  # ground speed when the source knows it (GPS receivers do)
    source: str = ""  # model id for PoseNet, receiver name for GPS
    valid: bool = True
    reason: str = ""  # why valid is False (words separated by ","); "" when valid
    hypotheses: list[FixHypothesis] = []

    @property
    def horizontal_std_m(self) -> float:
        """1-sigma error per horizontal axis: sqrt of the mean of the east and north variances (NaN unknown)."""
        return _horizontal_std_m(self.cov_enu_m2)


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
    intrinsics: CameraInfo | None = None  # the camera of the image (bearings from boxes); None: unknown


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
    speed_std_mps: float | None = None  # 1-sigma; None: unknown (the consumer applies its own prior)
    yaw_rate_std_radps: float | None = None
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
    reason: str = ""  # why the status is what it is (one line: "no fix accepted for 3.2 s")
    # topics whose measurements were gated or rejected since the last pose ("posenet/fix:heading": a fix's
    # heading alone)
    inputs_gated: list[str] = []
    # map landmarks (ids of the fusion node's map) matched to detected boxes and used since the last pose
    landmarks_used: int = 0
    landmark_ids: list[str] = []
    # how much the fusion trusted the newest PoseNet fix given the scene it was taken in (docs/context.md):
    # 1 - P(fix over 20 m off), 1 without a context model or context; and why ("sky 0.62", "no context";
    # "" when the node has no context model)
    fix_trust: float = 1.0
    fix_trust_reason: str = ""

    @property
    def horizontal_std_m(self) -> float:
        """1-sigma error per horizontal axis: sqrt of the mean of the east and north variances."""
        return _horizontal_std_m(self.cov_enu_m2)


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
