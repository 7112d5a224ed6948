"""Decode live messages with only pyzmq and msgpack, following docs/wire_format.md, not our code."""

from __future__ import annotations

import random
import time

import msgpack
import numpy as np
import zmq


def _recv_documented(port: int, topic: bytes, timeout_s: float = 20.0):
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    try:
        if not sock.poll(int(timeout_s * 1000)):
            return None
        return sock.recv_multipart()
    finally:
        sock.close(0)


def test_image_decodes_with_msgpack_per_the_document(processes):
    port_base = random.randint(20000, 40000)
    env = {"STREETLOC_TRANSPORT": "tcp", "STREETLOC_PORT_BASE": str(port_base)}
    processes.start("-m", "nodes.test_pattern", "--param", "width_px=64", "--param", "height_px=48",
                    "--param", "rate_hz=20", env=env)
    frames = _recv_documented(port_base + 0, b"camera/image")  # camera/image: port_offset 0
    assert frames is not None, "no camera/image message"
    topic, payload, *arrays = frames
    assert topic == b"camera/image"
    version, type_name, msg = msgpack.unpackb(payload)
    assert (version, type_name) == (2, "Image")
    assert msg["encoding"] == "bgr8" and (msg["width_px"], msg["height_px"]) == (64, 48)
    ref = msg["data"]
    pixels = np.frombuffer(arrays[ref["frame"] - 2], ref["dtype"]).reshape(ref["shape"])
    assert pixels.shape == (48, 64, 3)
    assert pixels[10, 0].tolist() == [255, 255, 255]  # the first colour bar is white
    header = msg["header"]
    assert header["stamp_ns"] > 1.6e18 and header["trace"][0]["node"] == "test_pattern"
    intrinsics = msg["intrinsics"]
    assert intrinsics["fx_px"] > 0 and (intrinsics["width_px"], intrinsics["height_px"]) == (64, 48)


def test_pose_decodes_with_msgpack_per_the_document():
    from nodes.bus import BusConfig, Header, Pose, Publisher

    port_base = random.randint(20000, 40000)
    config = BusConfig(transport="tcp", port_base=port_base)
    with Publisher("localization/pose", node="fusion", config=config) as pub:
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.connect(f"tcp://127.0.0.1:{port_base + 6}")  # localization/pose: port_offset 6
        sock.setsockopt(zmq.SUBSCRIBE, b"localization/pose")
        assert pub.wait_for_subscribers(1, timeout_s=5)
        pub.publish(Pose(Header(stamp_ns=time.time_ns()), lat_deg=34.0522, lon_deg=-118.2437,
                         cov_enu_m2=(4.0, 0.5, 0.5, 9.0), status="tracking", valid=True))
        assert sock.poll(5000)
        topic, payload = sock.recv_multipart()
        sock.close(0)
    version, type_name, pose = msgpack.unpackb(payload)
    assert (version, type_name) == (2, "Pose")
    assert (pose["lat_deg"], pose["lon_deg"]) == (34.0522, -118.2437)
    assert pose["cov_enu_m2"] == [4.0, 0.5, 0.5, 9.0]
    assert pose["status"] == "tracking" and pose["valid"] is True
    assert pose["header"]["trace"][-1]["node"] == "fusion"
