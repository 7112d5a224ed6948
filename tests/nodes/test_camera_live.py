"""Live path: a video file plays at its own rate through the camera node, and a CNN node slower than the
camera (LATEST delivery) works on fresh frames, dropping and counting the old ones."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from nodes.bus.messages import GeoFix, Header
from nodes.bus.pubsub import Delivery, Subscriber
from nodes.camera import Camera, CameraParams
from nodes.camera_model import CameraModelNode, CameraModelParams
from nodes.runtime import NodeRunner
from tests.nodes.test_camera import make_video


def _spin(runner: NodeRunner, duration_s: float) -> threading.Thread:
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": duration_s}, daemon=True)
    thread.start()
    return thread


def test_video_file_plays_at_its_own_rate(bus_config, tmp_path):
    video = make_video(tmp_path / "v.avi", frames=200, fps=25.0)
    camera = Camera(CameraParams(source=video))
    runner = NodeRunner(camera, config=bus_config)
    stamps = []
    with Subscriber("camera/image", config=bus_config) as sub:
        time.sleep(0.2)  # the subscription reaches the publisher
        thread = _spin(runner, 1.3)
        while (msg := sub.recv(timeout_s=0.3)) is not None or thread.is_alive():
            if msg is not None:
                stamps.append(msg.header.stamp_ns)
        thread.join()
    runner.close()
    assert camera.tick_hz() == 25.0
    # played in real time: not as fast as it decodes (200 frames), not slower than its rate
    assert 20 <= camera.frames + camera.late_frames <= 36, (camera.frames, camera.late_frames)
    gaps_ms = np.diff(stamps) / 1e6
    assert 30 <= float(np.median(gaps_ms)) <= 50  # 40 ms apart


def test_video_file_skips_frames_whose_time_has_passed(tmp_path):
    """A node that falls behind (CPU taken by others) does not play the file slower: like a device, the
    frames it was late for are skipped and counted."""
    video = make_video(tmp_path / "v.avi", frames=100, fps=50.0)
    camera = Camera(CameraParams(source=video))
    out = camera.on_tick(0)  # frame 0 starts the clock
    time.sleep(0.2)  # 10 frame periods late
    out += camera.on_tick(0)
    assert len(out) == 2 and camera.late_frames >= 8
    camera.close()


class SlowModel(CameraModelNode):
    """A camera CNN node whose model takes ``delay_s`` a frame (slower than the camera)."""

    name = "slow_model"
    publishes = ("posenet/fix",)
    delay_s = 0.1

    def load_predictor(self, params):
        return SimpleNamespace(model_id="slow", device="cpu", half=False, input_size_px=(8, 6))

    def _prepare(self, msg):
        return msg.header.stamp_ns

    def _infer(self, msgs, prepared):
        time.sleep(self.delay_s)
        now = time.time_ns()
        self.ages_ms = getattr(self, "ages_ms", []) + [(now - m.header.stamp_ns) / 1e6 for m in msgs]
        return [("posenet/fix", GeoFix(Header(stamp_ns=m.header.stamp_ns), lat_deg=0.0, lon_deg=0.0)) for m in msgs]


def test_slow_cnn_node_with_latest_drops_old_frames_and_counts_them(bus_config, tmp_path):
    from nodes.test_pattern import TestPatternCamera, TestPatternParams

    camera = TestPatternCamera(TestPatternParams(rate_hz=50, width_px=32, height_px=24))
    model = SlowModel(CameraModelParams(delivery="latest", threads=0))  # threads=0: no torch import
    assert model.subscribes == {"camera/image": Delivery.LATEST}
    cam_runner = NodeRunner(camera, config=bus_config)
    model_runner = NodeRunner(model, config=bus_config)
    time.sleep(0.3)  # subscriptions reach the publisher
    threads = [_spin(model_runner, 2.0), _spin(cam_runner, 1.6)]
    for t in threads:
        t.join()
    stats = {(s.topic, s.direction): s for s in model_runner.diagnostics_message(1.0).topics}
    published = camera.frame_index  # frames the camera sent
    cam_runner.close()
    model_runner.close()
    handled, dropped = model.frames_in, stats[("camera/image", "in")].dropped
    assert 8 <= handled <= 20  # ~10 frames/s of model time out of 50 frames/s
    # every frame the camera sent is either handled or counted as dropped (but the first ones, sent before
    # the node had seen any, and the last one or two still in flight)
    assert dropped >= published - handled - 8, (published, handled, dropped)
    assert dropped <= published - handled
    # no backlog: each frame handled was at most about one model time old (2 x 100 ms with scheduling)
    assert max(model.ages_ms) < 250, model.ages_ms


def test_nice_lowers_a_cnn_nodes_priority(monkeypatch):
    """robot.toml runs the detector and the segmenter below PoseNet's priority (``nice``), so that the pose
    path keeps the CPU when the three models want more than there is."""
    import os

    calls = []
    monkeypatch.setattr(os, "nice", lambda n: calls.append(n) or n)
    SlowModel(CameraModelParams(threads=0, nice=5))
    SlowModel(CameraModelParams(threads=0))
    assert calls == [5]
