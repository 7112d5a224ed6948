"""Publish/subscribe on a real bus: delivery modes, slow subscribers, two processes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nodes.bus.messages import Detections, Header, Image, Pose, Segmentation
from nodes.bus.pubsub import Delivery, Publisher, Subscriber
from nodes.bus.topics import BusConfig
from nodes.test_pattern import TestPatternCamera, TestPatternParams


def _pose(i: int) -> Pose:
    return Pose(Header(stamp_ns=time.time_ns()), lat_deg=34.0 + i * 1e-6, lon_deg=-118.0, valid=True)


def _image(i: int, size: int = 100_000) -> Image:
    data = np.full(size, i % 256, np.uint8)
    return Image(Header(stamp_ns=time.time_ns()), width_px=size, height_px=1, encoding="mono8",
                 data=data.reshape(1, size))


def test_every_delivery_gets_each_message_in_order(bus_config):
    with Publisher("localization/pose", node="t", config=bus_config) as pub, \
            Subscriber("localization/pose", config=bus_config) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=5)
        for i in range(200):
            pub.publish(_pose(i))
        got = [sub.recv(timeout_s=2) for _ in range(200)]
        # after the burst, an empty queue waits for the timeout and says so, then takes a late message
        t0 = time.monotonic()
        assert sub.recv(timeout_s=0.2) is None
        assert time.monotonic() - t0 >= 0.15
        pub.publish(_pose(200))
        assert sub.recv(timeout_s=2).header.seq == 200
    assert [m.header.seq for m in got] == list(range(200))
    assert got[-1].lat_deg == pytest.approx(34.0 + 199e-6)
    assert got[0].header.trace[-1].node == "t"
    assert sub.seq_gaps == 0


def test_array_messages_cross_the_bus_with_their_dtypes_and_shapes(bus_config):
    """Small arrays (copied), large ones (zero-copy), empty ones, several per message."""
    detections = [
        Detections(Header(stamp_ns=1), boxes_xyxy_px=np.arange(n * 4, dtype=np.float32).reshape(n, 4),
                   class_ids=np.arange(n, dtype=np.int32), scores=np.linspace(0, 1, n, dtype=np.float32),
                   class_names=["car"] * n)
        for n in (0, 3, 40_000)  # 40k boxes: 640 kB, above pyzmq's zero-copy threshold
    ]
    mask = np.random.default_rng(0).integers(0, 12, (480, 640), dtype=np.uint8)
    with Publisher("perception/detections", node="yolo", config=bus_config) as det_pub, \
            Publisher("perception/segmentation", node="psp", config=bus_config) as seg_pub, \
            Subscriber("perception/detections", config=bus_config) as det_sub, \
            Subscriber("perception/segmentation", config=bus_config) as seg_sub:
        assert det_pub.wait_for_subscribers(1, timeout_s=5) and seg_pub.wait_for_subscribers(1, timeout_s=5)
        for det in detections:
            det_pub.publish(det)
        seg_pub.publish(Segmentation(Header(stamp_ns=2), label_mask=mask[:, ::2]))  # a strided view
        got = [det_sub.recv(timeout_s=2) for _ in detections]
        seg = seg_sub.recv(timeout_s=2)
    for sent, received in zip(detections, got, strict=True):
        assert received.boxes_xyxy_px.dtype == np.float32 and received.class_ids.dtype == np.int32
        assert np.array_equal(received.boxes_xyxy_px, sent.boxes_xyxy_px)
        assert np.array_equal(received.scores, sent.scores)
    assert np.array_equal(seg.label_mask, mask[:, ::2])


def test_latest_delivery_returns_only_the_newest(bus_config):
    with Publisher("camera/image", node="cam", config=bus_config) as pub, \
            Subscriber("camera/image", delivery=Delivery.LATEST, config=bus_config) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=5)
        for i in range(20):
            pub.publish(_image(i, 1000))
        time.sleep(0.3)
        newest = sub.recv(timeout_s=2)
        # whatever was queued has been skipped: nothing older comes after the newest
        assert sub.recv(timeout_s=0.2) is None
    assert newest.header.seq == 19
    assert sub.skipped >= 1


def test_slow_subscriber_stalls_neither_publisher_nor_other_subscribers(bus_config):
    n = 400
    with Publisher("camera/image", node="cam", config=bus_config) as pub, \
            Subscriber("camera/image", config=bus_config) as slow, \
            Subscriber("camera/image", config=bus_config) as fast:
        assert pub.wait_for_subscribers(2, timeout_s=5)
        received: list[int] = []

        def read_all() -> None:
            while len(received) < n:
                msg = fast.recv(timeout_s=3)
                if msg is None:
                    return
                received.append(msg.header.seq)

        reader = threading.Thread(target=read_all)
        reader.start()
        t0 = time.monotonic()
        for i in range(n):  # the slow subscriber never reads: its queue fills after queue_depth
            pub.publish(_image(i))
            time.sleep(0.002)
        publish_s = time.monotonic() - t0
        reader.join(timeout=10)
        slow_got = 0
        while slow.recv(timeout_s=0.2) is not None:
            slow_got += 1
    assert publish_s < 5.0, f"publisher blocked: {publish_s:.1f} s for {n} messages"
    assert received == list(range(n)), "the fast subscriber lost or reordered messages"
    assert slow_got < n, "the slow subscriber should have been dropped for, not waited on"


def test_second_publisher_of_a_topic_is_refused(bus_config):
    with Publisher("gps/fix", config=bus_config):
        with pytest.raises(OSError, match="another publisher"):
            Publisher("gps/fix", config=bus_config)


def test_tcp_transport(bus_config):
    import random

    config = BusConfig(transport="tcp", port_base=random.randint(20000, 40000))
    with Publisher("localization/pose", config=config) as pub, Subscriber("localization/pose", config=config) as sub:
        assert pub.endpoint.startswith("tcp://127.0.0.1:")
        assert pub.wait_for_subscribers(1, timeout_s=5)
        pub.publish(_pose(1))
        assert sub.recv(timeout_s=2).lat_deg == pytest.approx(34.000001)


RELAY = """
import sys, time
from nodes.bus import Publisher, Subscriber, Delivery, Pose, Header
sub = Subscriber("camera/image", delivery=Delivery.LATEST)
pub = Publisher("localization/pose", node="relay")
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    img = sub.recv(timeout_s=0.5)
    if img is None:
        continue
    recv_ns = time.time_ns()
    assert img.data.shape == (480, 640, 3), img.data.shape  # a wrong shape ends the relay: no pose
    # a pose that carries what the relay saw: the frame number the pattern writes in binary along its top
    # row (16 cells of 40 px) / 1000 as longitude, the mean of all pixels / 4 as latitude (within the
    # bounds of a position: a pose with lat > 90 is rejected at decode)
    frame = sum(1 << k for k in range(16) if img.data[0, 40 * k + 20, 0] > 127)
    pose = Pose(Header(stamp_ns=img.header.stamp_ns, trace=img.header.trace),
                lat_deg=float(img.data.mean()) / 4, lon_deg=frame / 1000, valid=True)
    pub.publish(pose, recv_ns=recv_ns)
"""


def test_two_processes_exchange_images_and_poses(bus_config, processes):
    camera = processes.start("-m", "nodes.test_pattern", "--param", "rate_hz=30", "--param", "width_px=640",
                             "--param", "height_px=480")
    processes.start("-c", RELAY)
    with Subscriber("localization/pose", config=bus_config) as sub:
        pose = None
        deadline = time.monotonic() + 20
        while pose is None and time.monotonic() < deadline:
            pose = sub.recv(timeout_s=0.5)
            assert camera.poll() is None, camera.stderr.read() if camera.poll() is not None else ""
    assert pose is not None, "no pose arrived from the relay process"
    assert [hop.node for hop in pose.header.trace] == ["test_pattern", "relay"]
    # the relay saw the very pixels of the frame the camera rendered
    frame = round(pose.lon_deg * 1000)
    expected = TestPatternCamera(TestPatternParams(rate_hz=30, width_px=640, height_px=480)).render(frame)
    assert pose.lat_deg * 4 == pytest.approx(float(expected.mean()), rel=1e-12)
    latency_ms = (pose.header.trace[-1].pub_ns - pose.header.stamp_ns) / 1e6
    assert 0 <= latency_ms < 5000


def test_buffered_delivery_survives_a_stalled_reader(bus_config):
    """A reader that stalls for longer than the socket queues last still gets every message."""
    n = 300  # camera/image queues 32 messages per side: a stalled reader would lose most of these
    with Publisher("camera/image", node="cam", config=bus_config) as pub, \
            Subscriber("camera/image", delivery=Delivery.BUFFERED, config=bus_config) as sub:
        assert pub.wait_for_subscribers(1, timeout_s=5)
        for i in range(n):
            pub.publish(_image(i, 2000))
            if i % 10 == 9:
                time.sleep(0.01)  # ~1 kHz: the drain thread keeps up, the stalled reader could not
        time.sleep(1.0)  # the reader stalls; the drain thread keeps emptying the socket
        got = []
        while (msg := sub.recv(timeout_s=1.0)) is not None:
            got.append(msg.header.seq)
    assert got == list(range(n))
    assert sub.seq_gaps == 0 and sub.backlog == 0
