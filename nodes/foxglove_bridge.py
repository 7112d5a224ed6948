"""A live view of the graph in Foxglove: serves bus topics over the Foxglove WebSocket protocol.

Open the Foxglove app, "Open connection" -> Foxglove WebSocket -> ``ws://localhost:8765`` (docs/foxglove.md
lists the panels). Every bus topic it watches becomes a Foxglove channel of the same name, in the schema a
drive stores it in (the same conversion, `perception.drives.conversions.encode`), so a live view and an
opened drive look alike:

| bus topic                 | Foxglove channel (schema, encoding)                           | panel          |
|---------------------------|---------------------------------------------------------------|----------------|
| `camera/image`            | foxglove.CompressedImage, protobuf (JPEG as it came, or encoded) | Image       |
| `perception/detections`   | foxglove.ImageAnnotations, protobuf (a box + label per object) | Image (overlay) |
| `perception/segmentation` | foxglove.RawImage rgb8, protobuf (class colours, not labels)  | Image          |
| `posenet/fix`, `gps/fix`  | foxglove.LocationFix, protobuf (covariance: the ellipse)      | Map            |
| `localization/pose`       | foxglove.LocationFix, protobuf (covariance: the ellipse)      | Map            |
| `odometry`                | foxglove.Odometry, protobuf                                   | Plot           |
| `diagnostics`             | JSON (the Diagnostics record) + ``diagnostics/log`` foxglove.Log | Raw Messages, Log |

Messages carry their capture stamp (``header.stamp_ns``) as log time, so a replay shows the drive's time.
Nothing is encoded for a channel no client subscribes to (a robot without a viewer pays only the bus).
Images (camera and mask) are thinned to ``max_image_hz`` of stamp time: a JPEG encode of every 30 Hz
frame would cost more than the view is worth. A record that cannot be shown (a box outside its class
table, a NaN latitude) is counted as ``convert:<topic>`` in the diagnostics, one log line per kind; the
bridge goes on. It publishes nothing on the bus.

    python -m nodes.foxglove_bridge --param port=8765

Needs the ``foxglove-sdk`` package (``pip install 'streetloc[viz]'``), imported when the node starts.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
import numpy as np

from nodes.bus.messages import Diagnostics, Segmentation
from nodes.bus.pubsub import Delivery
from nodes.bus.topics import get_topic
from nodes.runtime import Node, Outputs, node_main
from perception.drives import _proto as pb
from perception.drives.conversions import _PALETTE, EncodeOptions, encode
from perception.drives.topics import (
    CAMERA_FRAME_ID,
    CAMERA_TOPIC,
    DETECTIONS_TOPIC,
    DIAGNOSTICS_TOPIC,
    GPS_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SCHEMA_COMPRESSED_IMAGE,
    SCHEMA_IMAGE_ANNOTATIONS,
    SCHEMA_LOCATION_FIX,
    SCHEMA_ODOMETRY,
    SCHEMA_RAW_IMAGE,
    SEGMENTATION_TOPIC,
)

log = logging.getLogger(__name__)

# What a localization view wants: the camera with what perception saw, the fixes and the pose on a map,
# the health of the nodes. Odometry is available but off by default (50 Hz of numbers few look at).
DEFAULT_TOPICS = (CAMERA_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC, POSENET_TOPIC, GPS_TOPIC, POSE_TOPIC,
                  DIAGNOSTICS_TOPIC)
IMAGE_TOPICS = (CAMERA_TOPIC, SEGMENTATION_TOPIC)
# conversion of the topic table -> the Foxglove schema the bridge logs it in
_SCHEMAS = {"image": SCHEMA_COMPRESSED_IMAGE, "boxes": SCHEMA_IMAGE_ANNOTATIONS, "mask": SCHEMA_RAW_IMAGE,
            "fix": SCHEMA_LOCATION_FIX, "pose": SCHEMA_LOCATION_FIX, "odom": SCHEMA_ODOMETRY}
DIAGNOSTICS_LOG_SUFFIX = "/log"  # diagnostics/log: one foxglove.Log line per node whose status changes
_DIAGNOSTICS_SCHEMA = {"type": "object", "title": "streetloc Diagnostics",
                       "description": "nodes.bus.messages.Diagnostics as JSON (msgspec field names)"}


class FoxgloveBridgeParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: Annotated[str, msgspec.Meta(
        min_length=1, description="listen address; \"0.0.0.0\" for other machines (no authentication: "
                                  "anyone who reaches the port sees the graph)")] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(
        ge=0, le=65535, description="WebSocket port (ws://HOST:PORT); 0 = any free port, logged")] = 8765
    topics: Annotated[tuple[str, ...], msgspec.Meta(
        min_length=1, description="bus topics served as Foxglove channels of the same name")] = DEFAULT_TOPICS
    max_image_hz: Annotated[float, msgspec.Meta(
        ge=0, le=1000, description="camera frames and masks served per second of stamp time, Hz; "
                                   "0 = every one")] = 10.0
    jpeg_quality: Annotated[int, msgspec.Meta(
        ge=1, le=100, description="JPEG quality of raw (bgr8/mono8) camera frames; JPEG frames pass as "
                                  "they came")] = 80


def _mask_colors(msg: Segmentation) -> Any:
    """The label mask [H, W] uint8 as an rgb8 RawImage in the class colours of the box overlay (a mono8
    mask of labels 0..N reads as black in an Image panel)."""
    mask = np.asarray(msg.label_mask)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"label mask at stamp_ns={msg.header.stamp_ns} must be uint8 [H, W]; got "
                         f"{mask.dtype} {mask.shape}")
    palette = (np.asarray(_PALETTE, np.float64) * 255.0).round().astype(np.uint8)  # [K, 3] rgb
    rgb = palette[mask % len(palette)]  # [H, W, 3]
    height, width = mask.shape
    return pb.RawImage(timestamp=pb.timestamp(msg.header.stamp_ns), frame_id=msg.header.frame_id or CAMERA_FRAME_ID,
                       width=width, height=height, encoding="rgb8", step=width * 3,
                       data=np.ascontiguousarray(rgb).tobytes())


class FoxgloveBridge(Node):
    """Serves bus topics to the Foxglove app over its WebSocket protocol (camera, boxes, mask, map, health)."""

    name = "foxglove"
    Params = FoxgloveBridgeParams

    @classmethod
    def declared_topics(cls, params: msgspec.Struct) -> tuple[dict[str, Delivery], tuple[str, ...]]:
        assert isinstance(params, FoxgloveBridgeParams)
        for name in params.topics:
            try:
                topic = get_topic(name)
            except ValueError as exc:
                raise ValueError(f"topics: {exc}") from None
            if name != DIAGNOSTICS_TOPIC and topic.conversion not in _SCHEMAS:
                raise ValueError(f"topics: {name!r} ({topic.type_name}) has no Foxglove view")
        if len(set(params.topics)) != len(params.topics):
            raise ValueError(f"topics: listed twice: {sorted({t for t in params.topics if params.topics.count(t) > 1})}")
        # images: the newest only (a viewer wants now, not a backlog); the rest: every message
        return {name: Delivery.LATEST if name in IMAGE_TOPICS else Delivery.EVERY for name in params.topics}, ()

    def __init__(self, params: FoxgloveBridgeParams | None = None) -> None:
        super().__init__(params)
        p: FoxgloveBridgeParams = self.params  # type: ignore[assignment]
        self.subscribes, self.publishes = self.declared_topics(p)  # per instance: set by params
        try:
            import foxglove  # the SDK is a native extension: only this node needs it
        except ImportError:
            raise ValueError("the Foxglove bridge needs the foxglove-sdk package: pip install 'streetloc[viz]'") from None
        from foxglove.channels import LogChannel

        self._opts = EncodeOptions(jpeg_quality=p.jpeg_quality)
        self._min_image_period_ns = int(1e9 / p.max_image_hz) if p.max_image_hz > 0 else 0
        self._last_image_ns: dict[str, int] = {}
        self._errors: list[tuple[str, str]] = []
        self._status: dict[str, str] = {}  # node -> last diagnostics status, for the log channel
        self.sent: dict[str, int] = {}  # topic -> messages logged to Foxglove (tests, diagnostics)
        self._context = foxglove.Context()  # our own: channels of another bridge in the process stay apart
        self._channels: dict[str, Any] = {}
        for name in p.topics:
            if name == DIAGNOSTICS_TOPIC:
                self._channels[name] = foxglove.Channel(name, schema=_DIAGNOSTICS_SCHEMA, message_encoding="json",
                                                        context=self._context)
                continue
            schema_name = _SCHEMAS[get_topic(name).conversion]
            schema = foxglove.Schema(name=schema_name, encoding="protobuf", data=pb.schema_data(schema_name))
            self._channels[name] = foxglove.Channel(name, schema=schema, message_encoding="protobuf",
                                                    context=self._context)
        self._log_channel = (LogChannel(DIAGNOSTICS_TOPIC + DIAGNOSTICS_LOG_SUFFIX, context=self._context)
                             if DIAGNOSTICS_TOPIC in p.topics else None)
        try:
            self.server = foxglove.start_server(name="streetloc", host=p.host, port=p.port, context=self._context)
        except Exception as exc:  # the SDK raises its own error types for a taken port or a bad address
            raise OSError(f"foxglove bridge: cannot listen on {p.host}:{p.port}: {exc}") from None
        self.port = int(self.server.port)
        log.info("Foxglove: open ws://%s:%d in the Foxglove app (Open connection -> Foxglove WebSocket)",
                 "localhost" if p.host in ("127.0.0.1", "0.0.0.0") else p.host, self.port)

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        channel = self._channels.get(topic)
        if channel is None:
            return ()
        if topic == DIAGNOSTICS_TOPIC:
            self._diagnostics(msg)  # type: ignore[arg-type]
            return ()
        if not channel.has_sinks():  # no client watches: no encode
            return ()
        stamp_ns = msg.header.stamp_ns  # type: ignore[attr-defined]
        if topic in IMAGE_TOPICS and self._min_image_period_ns:
            last = self._last_image_ns.get(topic)
            # stamp time, so that a x10 replay is thinned like a live camera; a stamp going back (a
            # replay starting over) starts the thinning over
            if last is not None and 0 <= stamp_ns - last < self._min_image_period_ns:
                return ()
            self._last_image_ns[topic] = stamp_ns
        try:
            if topic == SEGMENTATION_TOPIC:
                proto = _mask_colors(msg)  # type: ignore[arg-type]
            else:
                _, proto = encode(get_topic(topic), msg, self._opts)
            data = proto.SerializeToString()
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            self._errors.append((f"convert:{topic}", str(exc)))
            return ()
        channel.log(data, log_time=stamp_ns)
        self.sent[topic] = self.sent.get(topic, 0) + 1
        return ()

    def _diagnostics(self, msg: Diagnostics) -> None:
        channel = self._channels[DIAGNOSTICS_TOPIC]
        if channel.has_sinks():
            channel.log(msgspec.json.encode(msg), log_time=msg.header.stamp_ns)
            self.sent[DIAGNOSTICS_TOPIC] = self.sent.get(DIAGNOSTICS_TOPIC, 0) + 1
        previous = self._status.get(msg.node)
        self._status[msg.node] = msg.status
        if self._log_channel is None or previous == msg.status:
            return  # a status that lasts is one line, not one a second
        from foxglove.messages import Log, LogLevel, Timestamp

        warn = msg.status != "ok"
        text = (f"{msg.node}: {msg.status}" + (f": {msg.last_error}" if warn and msg.last_error else "")
                + ("" if previous is None else f" (was {previous})"))
        sec, nsec = divmod(msg.header.stamp_ns, 1_000_000_000)
        self._log_channel.log(Log(timestamp=Timestamp(sec=sec, nsec=nsec), level=LogLevel.Warning if warn
                                  else LogLevel.Info, message=text, name=msg.node), log_time=msg.header.stamp_ns)

    def take_errors(self) -> list[tuple[str, str]]:
        errors, self._errors = self._errors, []
        return errors

    def close(self) -> None:
        self.server.stop()


if __name__ == "__main__":
    raise SystemExit(node_main(FoxgloveBridge))
