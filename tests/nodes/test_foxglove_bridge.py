"""The Foxglove bridge: a WebSocket client (as the Foxglove app speaks it) sees the graph's channels,
subscribes, and decodes what the bus carried; bad records are counted, never fatal."""

from __future__ import annotations

import json
import struct
import threading
import time

import numpy as np
import pytest

pytest.importorskip("foxglove", reason="the bridge needs foxglove-sdk (pip install 'streetloc[viz]')")
ws_client = pytest.importorskip("websockets.sync.client", reason="the test client needs websockets")

from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage  # noqa: E402
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations  # noqa: E402
from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix  # noqa: E402
from foxglove_schemas_protobuf.Log_pb2 import Log  # noqa: E402
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage  # noqa: E402

from nodes.bus.messages import Detections, Diagnostics, Header, Image, Pose, Segmentation  # noqa: E402
from nodes.bus.pubsub import Publisher  # noqa: E402
from nodes.foxglove_bridge import DIAGNOSTICS_LOG_SUFFIX, FoxgloveBridge, FoxgloveBridgeParams  # noqa: E402
from nodes.runtime import NodeRunner  # noqa: E402
from perception.drives.topics import (  # noqa: E402
    CAMERA_TOPIC,
    DETECTIONS_TOPIC,
    DIAGNOSTICS_TOPIC,
    POSE_TOPIC,
    SEGMENTATION_TOPIC,
    TRUTH_BOXES_TOPIC,
)

# foxglove-sdk >= 0.2x speaks "foxglove.sdk.v1" (the Foxglove app offers both); older servers "foxglove.websocket.v1"
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
T0 = 1_700_000_000_000_000_000
LOG_TOPIC = DIAGNOSTICS_TOPIC + DIAGNOSTICS_LOG_SUFFIX  # the foxglove.Log channel
MESSAGE_DATA = 0x01  # binary opcode of a message on a subscribed channel


class Client:
    """The Foxglove WebSocket protocol's client side, as far as a test needs it."""

    def __init__(self, port: int) -> None:
        self._connection = ws_client.connect(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS, open_timeout=5)
        self.ws = self._connection.__enter__()  # the context-manager form websockets asks for
        self.channels: dict[str, dict] = {}  # topic -> advertised channel
        self.next_id = 1

    def wait_for_channels(self, *topics: str, timeout_s: float = 5.0) -> None:
        end = time.monotonic() + timeout_s
        while not set(topics) <= set(self.channels):
            msg = self.ws.recv(timeout=max(0.01, end - time.monotonic()))
            if isinstance(msg, str):
                op = json.loads(msg)
                if op.get("op") == "advertise":
                    self.channels.update({c["topic"]: c for c in op["channels"]})

    def subscribe(self, topic: str) -> int:
        sub_id, self.next_id = self.next_id, self.next_id + 1
        self.ws.send(json.dumps({"op": "subscribe",
                                 "subscriptions": [{"id": sub_id, "channelId": self.channels[topic]["id"]}]}))
        return sub_id

    def message(self, sub_id: int, timeout_s: float = 5.0) -> tuple[int, bytes] | None:
        """(log time ns, payload) of the next message of subscription ``sub_id``; None on timeout."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                msg = self.ws.recv(timeout=max(0.01, end - time.monotonic()))
            except TimeoutError:
                return None
            if isinstance(msg, bytes) and msg[0] == MESSAGE_DATA:
                sid, log_time_ns = struct.unpack_from("<IQ", msg, 1)
                if sid == sub_id:
                    return log_time_ns, msg[13:]
        return None

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def pose(i: int) -> Pose:
    return Pose(Header(stamp_ns=T0 + i * 50_000_000, frame_id="enu"), lat_deg=55.7 + i * 1e-5, lon_deg=13.2,
                cov_enu_m2=(4.0, 0.5, 0.5, 9.0), status="tracking")


def test_a_websocket_client_subscribes_to_the_pose_and_decodes_a_location_fix(bus_config):
    bridge = FoxgloveBridge(FoxgloveBridgeParams(port=0, topics=(POSE_TOPIC, DIAGNOSTICS_TOPIC)))
    runner = NodeRunner(bridge, config=bus_config)
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 8.0})
    thread.start()
    client = Client(bridge.port)
    try:
        client.wait_for_channels(POSE_TOPIC, DIAGNOSTICS_TOPIC)
        channel = client.channels[POSE_TOPIC]
        assert (channel["encoding"], channel["schemaName"]) == ("protobuf", "foxglove.LocationFix")
        sub_id = client.subscribe(POSE_TOPIC)
        got = None
        with Publisher(POSE_TOPIC, config=bus_config) as pub:
            assert pub.wait_for_subscribers(1, 5)
            for i in range(100):  # until the subscription is live on the server's side
                pub.publish(pose(i))
                got = client.message(sub_id, timeout_s=0.1)
                if got is not None:
                    break
        assert got is not None, "no pose reached the WebSocket client"
        log_time_ns, payload = got
        fix = LocationFix.FromString(payload)
        i = round((log_time_ns - T0) / 50_000_000)
        assert log_time_ns == pose(i).header.stamp_ns, "log time is the capture stamp"
        assert fix.latitude == pytest.approx(pose(i).lat_deg) and fix.longitude == pytest.approx(13.2)
        # east/north variances and their covariance: what the Map panel draws as the ellipse
        assert list(fix.position_covariance)[:5] == [4.0, 0.5, 0.0, 0.5, 9.0]
        assert fix.position_covariance_type != LocationFix.UNKNOWN
        assert {kv.key: kv.value for kv in fix.metadata}["status"] == "tracking"
    finally:
        client.close()
        runner.stop()
        thread.join()
        runner.close()


def test_a_record_that_cannot_be_shown_is_counted_and_the_next_one_is_served():
    bridge = FoxgloveBridge(FoxgloveBridgeParams(port=0, topics=(DETECTIONS_TOPIC,)))
    client = Client(bridge.port)
    try:
        client.wait_for_channels(DETECTIONS_TOPIC)
        sub_id = client.subscribe(DETECTIONS_TOPIC)
        deadline = time.monotonic() + 5
        while not bridge._channels[DETECTIONS_TOPIC].has_sinks() and time.monotonic() < deadline:
            time.sleep(0.01)
        bad = Detections(Header(stamp_ns=T0), boxes_xyxy_px=np.array([[1.0, 2.0, 30.0, 40.0]], np.float32),
                         class_ids=np.array([7], np.int32), scores=np.array([0.9], np.float32),
                         class_names=["car"])
        assert bridge.on_message(DETECTIONS_TOPIC, bad, T0) == ()
        ((kind, detail),) = bridge.take_errors()
        assert kind == "convert:perception/detections" and "class id 7" in detail
        good = Detections(Header(stamp_ns=T0 + 1), boxes_xyxy_px=np.array([[1.0, 2.0, 30.0, 40.0]], np.float32),
                          class_ids=np.array([0], np.int32), scores=np.array([0.9], np.float32),
                          class_names=["car"])
        bridge.on_message(DETECTIONS_TOPIC, good, T0)
        got = client.message(sub_id)
        assert got is not None and got[0] == T0 + 1
        annotations = ImageAnnotations.FromString(got[1])
        assert [(p.x, p.y) for p in annotations.points[0].points] == [(1, 2), (30, 2), (30, 40), (1, 40)]
        assert annotations.texts[0].text == "car 0.90"
    finally:
        client.close()
        bridge.close()


def _subscribed(bridge: FoxgloveBridge, client: Client, *topics: str) -> dict[str, int]:
    client.wait_for_channels(*topics)
    ids = {t: client.subscribe(t) for t in topics}
    deadline = time.monotonic() + 5
    channels = {**bridge._channels, LOG_TOPIC: bridge._log_channel}
    while not all(channels[t].has_sinks() for t in topics):
        assert time.monotonic() < deadline, "subscriptions never reached the server"
        time.sleep(0.01)
    return ids


def test_camera_mask_and_health_are_served_as_the_panels_want_them():
    bridge = FoxgloveBridge(FoxgloveBridgeParams(port=0, max_image_hz=10.0,
                                                 topics=(CAMERA_TOPIC, SEGMENTATION_TOPIC, DIAGNOSTICS_TOPIC)))
    client = Client(bridge.port)
    try:
        ids = _subscribed(bridge, client, CAMERA_TOPIC, SEGMENTATION_TOPIC, LOG_TOPIC)
        frame = np.zeros((8, 12, 3), np.uint8)
        for dt_ns in (0, 50_000_000, 100_000_000):  # 20 Hz of stamps, served at 10: the middle one is not
            bridge.on_message(CAMERA_TOPIC, Image(Header(stamp_ns=T0 + dt_ns), 12, 8, "bgr8", frame), T0)
        times = [client.message(ids[CAMERA_TOPIC]), client.message(ids[CAMERA_TOPIC], timeout_s=0.3)]
        assert times[0] is not None and times[1] is not None
        assert [t for t, _ in times] == [T0, T0 + 100_000_000]
        image = CompressedImage.FromString(times[0][1])
        assert image.format == "jpeg" and image.data[:2] == b"\xff\xd8"

        mask = np.array([[0, 1], [1, 0]], np.uint8)
        bridge.on_message(SEGMENTATION_TOPIC, Segmentation(Header(stamp_ns=T0), mask, ["road", "car"]), T0)
        got = client.message(ids[SEGMENTATION_TOPIC])
        assert got is not None
        raw = RawImage.FromString(got[1])
        pixels = np.frombuffer(raw.data, np.uint8).reshape(2, 2, 3)
        assert raw.encoding == "rgb8" and (pixels[0, 0] != pixels[0, 1]).any(), "classes in distinct colours"
        assert (pixels[0, 0] == pixels[1, 1]).all()

        def diag(status: str, error: str = "") -> Diagnostics:
            return Diagnostics(Header(stamp_ns=T0), node="posenet", pid=1, uptime_s=1.0, status=status,
                               last_error=error)

        for status in ("ok", "ok", "warn"):  # a lasting status is one line
            bridge.on_message(DIAGNOSTICS_TOPIC, diag(status, "stale:camera/image"), T0)
        lines = [client.message(ids[LOG_TOPIC], timeout_s=1.0) for _ in range(2)]
        assert client.message(ids[LOG_TOPIC], timeout_s=0.2) is None
        texts = [Log.FromString(line[1]).message for line in lines if line is not None]
        assert texts == ["posenet: ok", "posenet: warn: stale:camera/image (was ok)"]
    finally:
        client.close()
        bridge.close()


@pytest.mark.parametrize(("topics", "message"), [
    (("nonsense",), "unknown topic"),
    ((TRUTH_BOXES_TOPIC,), "unknown topic"),  # drive only, never on the bus
    ((POSE_TOPIC, POSE_TOPIC), "listed twice"),
])
def test_bad_topics_are_named(topics, message):
    with pytest.raises(ValueError, match=message):
        FoxgloveBridge.declared_topics(FoxgloveBridgeParams(topics=topics))


def test_a_taken_port_is_one_clear_error():
    first = FoxgloveBridge(FoxgloveBridgeParams(port=0, topics=(POSE_TOPIC,)))
    try:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            FoxgloveBridge(FoxgloveBridgeParams(port=first.port, topics=(POSE_TOPIC,)))
    finally:
        first.close()
