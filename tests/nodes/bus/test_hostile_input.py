"""Issue 16, item 1: one message must not kill any receiver. The message of the issue, a 200 kB
MessagePack value nested 200,000 levels deep, is sent in every place a receiver reads it (the whole
envelope, the body behind a valid envelope, an unknown field of a valid body) to every receive path:
the codec, a node's subscriber, the recorder (``streetloc record``), ``streetloc topic echo/hz``, the
client API, and the launcher's diagnostics fan-in with the monitor node watching. Each receiver must
go on, count the message, and still take the good message that follows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from nodes.bus import GPS_TOPIC, next_message, subscribe
from nodes.bus.messages import Diagnostics, GeoFix, Header, Pose
from nodes.bus.pubsub import Delivery, Subscriber
from nodes.bus.topics import TOPICS, BusConfig, Topic
from nodes.bus.wire import Codec, DecodeError
from nodes.record import Recorder, RecordParams
from nodes.runtime import Node, NodeRunner
from perception.drives import DriveReader
from perception.drives.topics import DIAGNOSTICS_TOPIC

REPO = Path(__file__).resolve().parents[3]
DEEP = b"\x91" * 200_000 + b"\xc0"  # [[[[...[nil]...]]]]: 200 kB, 200,000 levels


def good_frames(topic: Topic, msg) -> list[bytes]:
    return [bytes(f) for f in Codec(topic).encode(msg)]


def deep_messages(topic: Topic, good: list[bytes]) -> list[list[bytes]]:
    """The deep value as the envelope, as the body behind a valid envelope, and as an unknown field
    (decoders skip unknown fields) of the valid body of ``good``."""
    name = topic.name.encode()
    version, type_name, body = msgpack.unpackb(good[1])
    envelope_head = msgpack.packb(version) + msgpack.packb(type_name)
    packer = msgpack.Packer()
    body_with_extra = packer.pack_map_header(len(body) + 1)
    for key, value in body.items():
        body_with_extra += packer.pack(key) + packer.pack(value)
    body_with_extra += packer.pack("x") + DEEP
    return [
        [name, DEEP],
        [name, b"\x93" + envelope_head + DEEP],
        [name, b"\x93" + envelope_head + body_with_extra, *good[2:]],
    ]


def _fix(lat_deg: float = 55.7) -> GeoFix:
    return GeoFix(Header(stamp_ns=time.time_ns(), frame_id="gps"), lat_deg=lat_deg, lon_deg=13.2, source="test")


class Rogue:
    """A plain pyzmq publisher on a topic's endpoint (bound, as the topic's publisher would) or, for the
    diagnostics fan-in, connected to the forwarder like any node."""

    def __init__(self, config: BusConfig, topic: Topic) -> None:
        self.topic = topic
        self.socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        endpoint, bind = config.publisher_endpoint(topic)
        (self.socket.bind if bind else self.socket.connect)(endpoint)

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def close(self) -> None:
        self.socket.close(0)


# -- the codec, every topic ---------------------------------------------------------------------------

def _sample(topic: Topic):
    import numpy as np

    from nodes.bus.messages import Detections, Image, Odometry, Segmentation

    header = Header(stamp_ns=1)
    return {
        "Image": lambda: Image(header, 4, 2, "mono8", np.zeros((2, 4), np.uint8)),
        "GeoFix": lambda: GeoFix(header, lat_deg=1.0, lon_deg=2.0),
        "Detections": lambda: Detections(header, np.zeros((1, 4), np.float32), np.zeros(1, np.int32),
                                         np.ones(1, np.float32)),
        "Segmentation": lambda: Segmentation(header, np.zeros((2, 2), np.uint8)),
        "Odometry": lambda: Odometry(header, 1.0, 0.0),
        "Pose": lambda: Pose(header, 1.0, 2.0),
        "Diagnostics": lambda: Diagnostics(header, node="n", pid=1, uptime_s=1.0, status="ok"),
    }[topic.type_name]()


@pytest.mark.parametrize("topic", list(TOPICS.values()), ids=list(TOPICS))
def test_codec_turns_deep_nesting_into_a_counted_decode_error(topic):
    codec = Codec(topic)
    good = good_frames(topic, _sample(topic))
    kinds = []
    for frames in deep_messages(topic, good):
        with pytest.raises(DecodeError) as err:  # never RecursionError
            codec.decode(frames)
        kinds.append(err.value.kind)
    assert kinds[1:] == ["depth", "depth"], kinds  # the envelope alone fails on its shape first
    assert type(codec.decode(good)).__name__ == topic.type_name  # the codec still decodes good messages


# -- a node's subscriber ------------------------------------------------------------------------------

class FixSink(Node):
    name = "fix_sink"
    subscribes = {GPS_TOPIC: Delivery.EVERY}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[GeoFix] = []
        self.rejects: list[tuple[str, str]] = []

    def on_message(self, topic, msg, recv_ns):
        self.seen.append(msg)
        return ()

    def on_reject(self, topic, reason, detail):
        self.rejects.append((topic, reason))


def _run_in_thread(runner: NodeRunner, duration_s: float) -> threading.Thread:
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": duration_s})
    thread.start()
    return thread


def test_node_subscriber_survives_deep_nesting_and_counts_it(bus_config):
    topic = TOPICS[GPS_TOPIC]
    node = FixSink()
    runner = NodeRunner(node, config=bus_config)
    rogue = Rogue(bus_config, topic)
    thread = _run_in_thread(runner, 2.5)
    try:
        time.sleep(0.5)  # the subscriber connects to the rogue's endpoint
        for frames in deep_messages(topic, good_frames(topic, _fix())) * 3:
            rogue.send(frames)
        rogue.send(good_frames(topic, _fix(lat_deg=56.0)))
        thread.join()
    finally:
        rogue.close()
        diag = runner.diagnostics_message(1.0)
        runner.close()
    assert [f.lat_deg for f in node.seen] == [56.0], "the good fix after the deep ones was handled"
    assert diag.errors[f"decode:{GPS_TOPIC}:depth"] == 6
    assert diag.errors[f"decode:{GPS_TOPIC}:envelope"] == 3
    assert node.rejects.count((GPS_TOPIC, "depth")) == 6  # the node is told (the monitor reports them)


# -- the recorder: `streetloc record` ---------------------------------------------------------------

def test_record_process_survives_deep_nesting(bus_config, tmp_path, processes):
    topic = TOPICS[GPS_TOPIC]
    out = tmp_path / "rec.mcap"
    rogue = Rogue(bus_config, topic)
    try:
        proc = processes.start("-m", "nodes.cli", "record", "-o", str(out), "--topics", GPS_TOPIC,
                               "--duration", "4", cwd=REPO)
        time.sleep(2.0)  # interpreter start, subscription
        for frames in deep_messages(topic, good_frames(topic, _fix())) * 3:
            rogue.send(frames)
        rogue.send(good_frames(topic, _fix(lat_deg=56.0)))
        code = proc.wait(timeout=20)
    finally:
        rogue.close()
    err = proc.stderr.read()
    assert code == 0, err
    assert "RecursionError" not in err and "Traceback" not in err
    assert "decode:gps/fix:depth" in err  # said once in its log, then counted
    with DriveReader(out) as drive:
        assert [f.lat_deg for f in drive.fixes(GPS_TOPIC)] == [pytest.approx(56.0)]


def test_recorder_node_in_a_runner_records_around_deep_nesting(bus_config, tmp_path):
    topic = TOPICS[GPS_TOPIC]
    recorder = Recorder(RecordParams(output=str(tmp_path / "r.mcap"), topics=[GPS_TOPIC]))
    runner = NodeRunner(recorder, config=bus_config)
    rogue = Rogue(bus_config, topic)
    thread = _run_in_thread(runner, 2.0)
    try:
        time.sleep(0.5)
        for frames in deep_messages(topic, good_frames(topic, _fix())):
            rogue.send(frames)
        rogue.send(good_frames(topic, _fix(lat_deg=56.0)))
        thread.join()
    finally:
        rogue.close()
        runner.close()
    assert recorder.written[GPS_TOPIC] == 1


# -- the topic tools -------------------------------------------------------------------------------

def test_topic_echo_and_hz_survive_deep_nesting(bus_config, processes):
    topic = TOPICS[GPS_TOPIC]
    rogue = Rogue(bus_config, topic)
    try:
        echo = processes.start("-m", "nodes.cli", "topic", "echo", GPS_TOPIC, "-n", "1", "--timeout", "15", cwd=REPO)
        hz = processes.start("-m", "nodes.cli", "topic", "hz", GPS_TOPIC, "--duration", "5", cwd=REPO)
        deadline = time.monotonic() + 15
        lat = 56.0
        while echo.poll() is None and time.monotonic() < deadline:
            for frames in deep_messages(topic, good_frames(topic, _fix())):
                rogue.send(frames)
            lat += 0.001
            rogue.send(good_frames(topic, _fix(lat_deg=lat)))
            time.sleep(0.1)
        echo_code = echo.wait(timeout=5)
        # keep hz fed until it has reported
        while hz.poll() is None and time.monotonic() < deadline + 5:
            rogue.send(deep_messages(topic, good_frames(topic, _fix()))[1])
            lat += 0.001
            rogue.send(good_frames(topic, _fix(lat_deg=lat)))
            time.sleep(0.1)
        hz_code = hz.wait(timeout=5)
    finally:
        rogue.close()
    echo_out, echo_err = echo.stdout.read(), echo.stderr.read()
    assert echo_code == 0, echo_err
    assert "lat_deg: 56.0" in echo_out
    assert "# rejected message on gps/fix: depth:" in echo_err and "Traceback" not in echo_err
    hz_out, hz_err = hz.stdout.read(), hz.stderr.read()
    assert hz_code == 0, hz_err
    assert "gps/fix: average rate" in hz_out and "depth " in hz_out and "Traceback" not in hz_err


# -- the client API ---------------------------------------------------------------------------------

def test_client_api_skips_deep_nesting(bus_config):
    topic = TOPICS[GPS_TOPIC]
    rogue = Rogue(bus_config, topic)
    got: list = []
    sub = subscribe(GPS_TOPIC)

    def feed() -> None:
        time.sleep(0.5)
        for frames in deep_messages(topic, good_frames(topic, _fix())):
            rogue.send(frames)
        rogue.send(good_frames(topic, _fix(lat_deg=56.0)))
        time.sleep(0.3)
        for frames in deep_messages(topic, good_frames(topic, _fix())):
            rogue.send(frames)
        rogue.send(good_frames(topic, _fix(lat_deg=57.0)))

    try:
        feeder = threading.Thread(target=feed)
        feeder.start()
        first = next_message(GPS_TOPIC, timeout_s=5.0)
        for msg in sub:  # iteration skips rejected messages
            got.append(msg)
            if len(got) == 2:
                break
        feeder.join()
    finally:
        rogue.close()
        sub.close()
    assert first is not None and first.lat_deg == 56.0
    assert [m.lat_deg for m in got] == [56.0, 57.0]
    assert sub.rejected["depth"] >= 2 and sub.decode_errors >= 3


# -- the launcher's diagnostics fan-in, and the monitor node ---------------------------------------------

LAUNCH = """
description = "a monitor of gps/fix"
external_topics = ["gps/fix"]
[nodes.monitor]
module = "nodes.monitor"
[nodes.monitor.params]
topics = ["gps/fix"]
expected_rate_hz = {{ "gps/fix" = 0 }}
stale_after_s = 60.0
"""


def test_launcher_and_monitor_survive_deep_nesting_and_the_monitor_reports_it(tmp_path):
    ipc_dir = tmp_path / "ipc"
    config = BusConfig(transport="ipc", ipc_dir=str(ipc_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETLOC_")}
    env.update(config.to_env())
    env["PYTHONUNBUFFERED"] = "1"
    launch_file = tmp_path / "g.toml"
    launch_file.write_text(LAUNCH.format())
    out = tmp_path / "console.txt"
    with open(out, "wb") as fh:
        launcher = subprocess.Popen([sys.executable, "-m", "nodes.cli", "launch", str(launch_file), "--log-dir",
                                     str(tmp_path / "logs")], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    diag_topic, fix_topic = TOPICS[DIAGNOSTICS_TOPIC], TOPICS[GPS_TOPIC]
    rogue_fix = rogue_diag = None
    report = None
    try:
        with Subscriber(DIAGNOSTICS_TOPIC, config=config) as diag:
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                assert launcher.poll() is None, out.read_text()
                msg = diag.recv(timeout_s=0.5)
                first = msg if msg is not None and msg.node == "monitor" else None
            assert first is not None, "the monitor never reported"
            rogue_fix, rogue_diag = Rogue(config, fix_topic), Rogue(config, diag_topic)
            deadline = time.monotonic() + 20
            while report is None and time.monotonic() < deadline:
                for frames in deep_messages(diag_topic, good_frames(diag_topic, _sample(diag_topic))):
                    rogue_diag.send(frames)
                for frames in deep_messages(fix_topic, good_frames(fix_topic, _fix())):
                    rogue_fix.send(frames)
                rogue_fix.send(good_frames(fix_topic, _fix(lat_deg=95.0)))  # out of bounds: rejected too
                msg = diag.recv(timeout_s=0.3)
                if (msg is not None and msg.node == "monitor" and "rejected:gps/fix" in msg.errors
                        and msg.errors.get("decode:gps/fix:depth", 0) >= 4):
                    report = msg
            assert launcher.poll() is None, "the launcher died: " + out.read_text()
            assert report is not None, "the monitor never reported the rejected messages"
            assert report.pid == first.pid, "the monitor was restarted (it crashed)"
            assert report.errors.get("decode:gps/fix:out_of_range", 0) >= 1
            assert "gps/fix:" in report.last_error and "rejected" in report.last_error
            assert diag.rejected.get("depth", 0) >= 2  # the diagnostics this test read had the deep ones too
    finally:
        for rogue in (rogue_fix, rogue_diag):
            if rogue is not None:
                rogue.close()
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=15)
    console = out.read_text()
    assert code == 0, console
    assert "diagnostics: rejected a message (depth:" in console
    assert "Traceback" not in console and "exited with code" not in console and "killed by" not in console
