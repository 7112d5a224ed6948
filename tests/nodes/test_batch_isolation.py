"""Issue 16, item 1: one bad frame in a batch costs only its own output. A 0x0 image in a burst of frames
handed to PoseNet's ``on_batch`` used to drop its neighbours' fixes; the runtime now retries a batch whose
handler raises one message at a time, and PoseNet rejects the bad frame on its own."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from localization.geodesy import GeoOrigin
from nodes.bus.messages import GeoFix, Header, Image, Pose
from nodes.bus.pubsub import Delivery, Publisher, Subscriber
from nodes.posenet import PoseNetNode, PoseNetParams
from nodes.runtime import Node, NodeRunner
from perception.drives.topics import CAMERA_TOPIC, GPS_TOPIC, POSE_TOPIC, POSENET_TOPIC
from tests.conftest import save_tiny_posenet

ORIGIN = GeoOrigin(34.05, -118.24, 0.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return save_tiny_posenet(tmp_path_factory.mktemp("ckpt") / "tiny.pt", origin=ORIGIN.to_dict())


def frame(stamp_ns: int, w: int = 32, h: int = 24) -> Image:
    data = np.random.default_rng(stamp_ns % 1000).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image(header=Header(stamp_ns=stamp_ns, frame_id="camera"), width_px=w, height_px=h, encoding="bgr8",
                 data=data)


def burst(t0_ns: int) -> list[Image]:
    """Six good frames with a 0x0 one in the middle (as a broken driver or a crafted drive gives)."""
    frames = [frame(t0_ns + k * 100_000_000) for k in range(6)]
    empty = Image(header=Header(stamp_ns=t0_ns + 250_000_000, frame_id="camera"), width_px=0, height_px=0,
                  encoding="bgr8", data=np.zeros((0, 0, 3), np.uint8))
    return [*frames[:3], empty, *frames[3:]]


def test_posenet_batch_with_a_0x0_frame_localizes_the_other_six(checkpoint):
    node = PoseNetNode(PoseNetParams(model=checkpoint, device="cpu", delivery="every"))
    frames = burst(1_700_000_000_000_000_000)
    out = node.on_batch(CAMERA_TOPIC, frames, 0)
    good = [f.header.stamp_ns for f in frames if f.width_px]
    assert [fix.header.stamp_ns for _, fix in out] == good, "every good frame got its fix"
    errors = node.take_errors()
    assert [kind for kind, _ in errors if kind.startswith("reject:")] == [f"reject:{CAMERA_TOPIC}"]
    assert "0x0 px has no pixels" in next(detail for kind, detail in errors if kind.startswith("reject:"))
    assert node.rejected == 1


def test_posenet_on_the_bus_answers_every_good_frame_of_a_burst_with_a_0x0_frame(checkpoint, bus_config):
    """End to end: the 0x0 frame is rejected at decode (its shape is not its size), the six get fixes."""
    node = PoseNetNode(PoseNetParams(model=checkpoint, device="cpu", delivery="every", max_batch=16))
    runner = NodeRunner(node, config=bus_config)
    frames = burst(time.time_ns() - 10**9)
    with Publisher(CAMERA_TOPIC, node="camera", config=bus_config) as cam, \
            Subscriber(POSENET_TOPIC, config=bus_config) as fixes:
        assert cam.wait_for_subscribers(1, 5)
        deadline = time.monotonic() + 5
        while runner.publishers[POSENET_TOPIC].subscriber_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        for f in frames:  # queued before the node runs: one batch
            cam.publish(f)
        time.sleep(0.2)
        thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 2.0})
        thread.start()
        got: list[GeoFix] = []
        while (msg := fixes.recv(timeout_s=3.0)) is not None:
            got.append(msg)
        thread.join()
    diag = runner.diagnostics_message(1.0)
    runner.close()
    assert sorted(f.header.stamp_ns for f in got) == sorted(f.header.stamp_ns for f in frames if f.width_px)
    assert diag.errors[f"decode:{CAMERA_TOPIC}:out_of_range"] == 1


class ChokingModel(Node):
    """A batch model that raises on the whole batch when one member is bad (as a CNN does on a frame of
    the wrong shape), and answers each good message with a fix."""

    name = "choking"
    subscribes = {POSE_TOPIC: Delivery.EVERY}
    publishes = (GPS_TOPIC,)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def max_batch(self, topic):
        return 16

    def on_message(self, topic, msg, recv_ns):
        return self.on_batch(topic, [msg], recv_ns)

    def on_batch(self, topic, msgs, recv_ns):
        self.batches.append(len(msgs))
        if any(m.lat_deg == 13.0 for m in msgs):
            raise RuntimeError("the model chokes on this one")
        return [(GPS_TOPIC, GeoFix(Header(stamp_ns=m.header.stamp_ns), lat_deg=m.lat_deg, lon_deg=0.0))
                for m in msgs]


def test_runtime_retries_a_failed_batch_one_by_one(bus_config):
    node = ChokingModel()
    runner = NodeRunner(node, config=bus_config)
    t0 = time.time_ns()
    with Publisher(POSE_TOPIC, node="src", config=bus_config) as pub, \
            Subscriber(GPS_TOPIC, config=bus_config) as out:
        assert pub.wait_for_subscribers(1, 5)
        deadline = time.monotonic() + 5
        while runner.publishers[GPS_TOPIC].subscriber_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        lats = [1.0, 2.0, 3.0, 13.0, 4.0, 5.0, 6.0]
        for k, lat in enumerate(lats):
            pub.publish(Pose(Header(stamp_ns=t0 + k), lat_deg=lat, lon_deg=0.0))
        time.sleep(0.2)
        thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 1.0})
        thread.start()
        got = []
        while (msg := out.recv(timeout_s=1.5)) is not None:
            got.append(msg.lat_deg)
        thread.join()
    diag = runner.diagnostics_message(1.0)
    runner.close()
    assert got == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "the six neighbours of the bad message got their answers"
    assert node.batches[0] == 7 and node.batches[1:] == [1] * 7
    assert diag.errors[f"batch:{POSE_TOPIC}:RuntimeError"] == 1
    assert diag.errors[f"handler:{POSE_TOPIC}:RuntimeError"] == 1
