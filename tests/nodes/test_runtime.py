"""The node runtime: parameters, survival of malformed input, diagnostics, clean stop on signals."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import msgspec
import pytest
import zmq

from nodes.bus.forwarder import Forwarder
from nodes.bus.messages import GeoFix, Header, Pose
from nodes.bus.pubsub import Delivery, Publisher, Subscriber
from nodes.bus.wire import Codec
from nodes.runtime import Node, NodeRunner, describe_params, load_params
from nodes.test_pattern import TestPatternCamera, TestPatternParams


class EchoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    scale: Annotated[float, msgspec.Meta(gt=0, description="multiplies latitude")] = 1.0
    label: Annotated[str, msgspec.Meta(description="free text")] = "echo"
    sizes: Annotated[list[int], msgspec.Meta(description="a list")] = []


class PoseEcho(Node):
    """Collects poses (a minimal consumer for the runtime tests)."""

    name = "pose_echo"
    Params = EchoParams
    subscribes = {"localization/pose": Delivery.EVERY}
    publishes = ("gps/fix",)

    def __init__(self, params=None):
        super().__init__(params)
        self.seen: list[Pose] = []

    def on_message(self, topic, msg, recv_ns):
        if msg.lat_deg < -80:
            raise ValueError("latitude below -80")  # a handler bug must not kill the node either
        self.seen.append(msg)
        return ()


def test_params_defaults_file_and_overrides(tmp_path):
    assert load_params(EchoParams) == EchoParams()
    path = tmp_path / "p.toml"
    path.write_text('[params]\nscale = 2.5\nlabel = "from file"\n')
    params = load_params(EchoParams, file=str(path), overrides=["label=cli", "sizes=[1, 2]"])
    assert (params.scale, params.label, params.sizes) == (2.5, "cli", [1, 2])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["colour=red"], "unknown parameter 'colour'"),
        (["scale=fast"], "scale: Expected `float`"),
        (["scale=-1"], "scale: Expected `float` > 0"),
        (["scale"], "is not key=value"),
    ],
)
def test_bad_params_name_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_params(EchoParams, overrides=overrides, node="n1")


def test_bad_params_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("scale = = 1\n")
    with pytest.raises(ValueError, match="bad.toml"):
        load_params(EchoParams, file=str(path))
    path.write_text("nope = 1\n")
    with pytest.raises(ValueError, match="unknown parameter 'nope' in .*bad.toml"):
        load_params(EchoParams, file=str(path))


def test_params_are_documented():
    rows = {name: (type_name, default, doc) for name, type_name, default, doc in describe_params(TestPatternParams)}
    assert rows["rate_hz"] == ("float", 10.0, "frames per second")


def test_node_survives_malformed_messages_and_reports_them(bus_config):
    node = PoseEcho()
    with Forwarder(bus_config) as _fwd:
        runner = NodeRunner(node, config=bus_config)
        diag = Subscriber("diagnostics", config=bus_config)
        # a rogue publisher on the node's input endpoint, sending garbage and then a good message
        rogue = zmq.Context.instance().socket(zmq.PUB)
        endpoint, _ = bus_config.publisher_endpoint(runner.subscribers["localization/pose"].topic)
        rogue.bind(endpoint)
        thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 4.0})
        thread.start()
        try:
            time.sleep(0.5)
            codec = Codec(runner.subscribers["localization/pose"].topic)
            good = codec.encode(Pose(Header(stamp_ns=10), lat_deg=34.0, lon_deg=-118.0))
            version, type_name, body = msgspec.msgpack.decode(good[1])
            bad_inputs = [
                [b"localization/pose"],  # no payload frame
                [b"localization/pose", msgspec.msgpack.encode([7, type_name, body])],  # wrong version
                [b"localization/pose", msgspec.msgpack.encode([version, type_name, [1, 2, 3]])],  # bad body
                [b"localization/pose", msgspec.msgpack.encode([version, "Image", body])],  # wrong type
            ]
            for frames in bad_inputs * 5:
                rogue.send_multipart(frames)
            rogue.send_multipart(codec.encode(Pose(Header(stamp_ns=2), lat_deg=-85.0, lon_deg=0.0)))
            # out of bounds: rejected at decode, never reaches the handler
            rogue.send_multipart(codec.encode(Pose(Header(stamp_ns=3), lat_deg=-100.0, lon_deg=0.0)))
            rogue.send_multipart([bytes(f) for f in good])
            report = None
            deadline = time.monotonic() + 3.5
            while time.monotonic() < deadline:
                msg = diag.recv(timeout_s=0.5)
                if msg is not None and msg.errors:
                    report = msg
        finally:
            thread.join()
            rogue.close(0)
            diag.close()
            runner.close()
    assert [m.lat_deg for m in node.seen] == [34.0], "the good message after the garbage was processed"
    assert report is not None, "diagnostics never reported the errors"
    assert report.node == "pose_echo" and report.status in ("warn", "ok")
    errors = report.errors
    assert errors["decode:localization/pose:frames"] == 5
    assert errors["decode:localization/pose:version"] == 5
    assert errors["decode:localization/pose:body"] == 5
    assert errors["decode:localization/pose:type"] == 5
    assert errors["handler:localization/pose:ValueError"] == 1
    assert errors["decode:localization/pose:out_of_range"] == 1


def test_diagnostics_report_rates_at_1hz(bus_config):
    camera = TestPatternCamera(TestPatternParams(rate_hz=50, width_px=32, height_px=24))
    with Forwarder(bus_config):
        runner = NodeRunner(camera, config=bus_config)
        diag = Subscriber("diagnostics", config=bus_config)
        thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 3.3})
        thread.start()
        reports = []
        while thread.is_alive():
            msg = diag.recv(timeout_s=0.2)
            if msg is not None:
                reports.append(msg)
        thread.join()
        diag.close()
        runner.close()
    assert 2 <= len(reports) <= 4
    out = [t for t in reports[-1].topics if t.topic == "camera/image" and t.direction == "out"][0]
    assert 40 <= out.rate_hz <= 55
    assert reports[-1].pid > 0 and reports[-1].uptime_s > 1.5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_node_process_stops_cleanly_within_2s(bus_config, processes, sig):
    proc = processes.start("-m", "nodes.test_pattern", "--param", "rate_hz=30")
    with Subscriber("camera/image", config=bus_config) as sub:
        assert sub.recv(timeout_s=15) is not None, "node did not start publishing"
    t0 = time.monotonic()
    proc.send_signal(sig)
    rc = proc.wait(timeout=5)
    assert time.monotonic() - t0 < 2.0
    assert rc == 0


def test_node_process_rejects_bad_param_with_exit_2(bus_config, processes):
    proc = processes.start("-m", "nodes.test_pattern", "--param", "rate_hz=often")
    assert proc.wait(timeout=20) == 2
    assert "rate_hz" in proc.stderr.read()


def test_publisher_on_input_topic_is_unaffected_by_missing_node(bus_config):
    # publishing with nobody listening neither blocks nor fails
    with Publisher("localization/pose", config=bus_config) as pub:
        t0 = time.monotonic()
        for _ in range(1000):
            pub.publish(Pose(Header(stamp_ns=1), 0.0, 0.0))
        assert time.monotonic() - t0 < 2.0


class SlowBatcher(Node):
    """Takes 50 ms per call, so poses queue up while it works; batches up to 8."""

    name = "batcher"
    subscribes = {"localization/pose": Delivery.EVERY}
    publishes = ()

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def max_batch(self, topic):
        return 8

    def on_message(self, topic, msg, recv_ns):
        return self.on_batch(topic, [msg], recv_ns)

    def on_batch(self, topic, msgs, recv_ns):
        time.sleep(0.05)
        self.calls.append(len(msgs))
        self._bad = [m for m in msgs if m.lat_deg < 0]
        return ()

    def take_errors(self):
        bad, self._bad = getattr(self, "_bad", []), []
        return [("reject:localization/pose", f"lat {m.lat_deg}") for m in bad]


def test_a_busy_node_takes_queued_messages_in_batches(bus_config):
    node = SlowBatcher()
    runner = NodeRunner(node, config=bus_config)
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 3.0})
    thread.start()
    with Publisher("localization/pose", config=bus_config) as pub:
        assert pub.wait_for_subscribers(1, 5)
        for i in range(40):
            pub.publish(Pose(Header(stamp_ns=i), lat_deg=-1.0 if i == 20 else 1.0, lon_deg=0.0))
            time.sleep(0.005)
        thread.join()
    diag = runner.diagnostics_message(1.0)
    runner.close()
    assert sum(node.calls) == 40, "every message handled exactly once"
    assert max(node.calls) == 8 and len(node.calls) < 40
    assert diag.errors["reject:localization/pose"] == 1


class FastTicker(Node):
    """Ticks at 1 kHz and listens on a topic nobody publishes (the replay's shape)."""

    name = "ticker"
    subscribes = {"localization/pose": Delivery.EVERY}

    def __init__(self):
        super().__init__()
        self.ticks = 0

    def tick_hz(self):
        return 1000.0

    def on_tick(self, now_ns):
        self.ticks += 1
        return ()


def test_a_fast_ticker_sleeps_between_ticks(bus_config, monkeypatch):
    """A wait shorter than 1 ms is rounded up, not down to a zero-timeout poll: a 1 kHz ticker used to spin
    between its ticks and burn a whole core (the lock-step replay spent more CPU per frame than PoseNet)."""
    polls = []
    real_poll = zmq.Poller.poll

    def counting_poll(self, timeout=None):
        polls.append(timeout)
        return real_poll(self, timeout)

    monkeypatch.setattr(zmq.Poller, "poll", counting_poll)
    node = FastTicker()
    runner = NodeRunner(node, config=bus_config)
    try:
        runner.spin(duration_s=0.3)
    finally:
        runner.close()
    assert node.ticks > 50  # it did tick (a loaded machine gives fewer than 300)
    assert len(polls) <= 3 * node.ticks + 20, f"{len(polls)} polls for {node.ticks} ticks: the loop spins"
    assert sum(1 for t in polls if t == 0) <= 0.2 * len(polls)


class FixRelay(Node):
    """gps/fix in, a posenet/fix of the same stamp out (a stand-in for a node whose outputs follow its
    input's stamps: PoseNet, the detector)."""

    name = "relay"
    subscribes = {"gps/fix": Delivery.EVERY}
    publishes = ("posenet/fix",)

    def __init__(self):
        super().__init__()
        self.restarted: list[str] = []

    def on_message(self, topic, msg, recv_ns):
        return [("posenet/fix", GeoFix(Header(stamp_ns=msg.header.stamp_ns), lat_deg=1.0, lon_deg=2.0))]

    def on_input_restart(self, topic):
        self.restarted.append(topic)


def test_outputs_start_a_new_incarnation_when_an_input_starts_over_in_time(bus_config):
    """A replay looping publishes its drive again under a new incarnation, stamps going back: a node
    downstream restarts its own streams, so its outputs of the new pass are not rejected as going back.
    A respawned publisher stamped a little earlier (< 1 s: a late message) or later is no restart."""
    t0, s = 1_700_000_000_000_000_000, 1_000_000_000
    node = FixRelay()
    runner = NodeRunner(node, config=bus_config)
    with Subscriber("posenet/fix", config=bus_config) as out, Publisher("gps/fix", config=bus_config) as src:
        thread = _spin(runner, 10.0)
        assert src.wait_for_subscribers(1, 5)
        time.sleep(0.2)
        passes = [[t0 + k * s // 2 for k in range(6)], [t0 + k * s // 2 for k in range(6)],  # a loop
                  [t0 + 2 * s], [t0 + 3 * s]]  # a respawn 0.5 s back (late), then one going on
        for stamps in passes:
            src.restart_stream()
            for stamp in stamps:
                src.publish(GeoFix(Header(stamp_ns=stamp), lat_deg=1.0, lon_deg=2.0))
            time.sleep(0.3)
        got = []
        while (msg := out.recv(timeout_s=0.5)) is not None:
            got.append(msg.header.stamp_ns)
        rejected = dict(out.rejected)
        runner.stop()
        thread.join()
        runner.close()
    assert node.restarted == ["gps/fix"] and runner.inputs_went_back == 1
    assert got == passes[0] + passes[1] + [passes[3][0]]
    # the late message went out in the second pass's stream, stamped before its last: rejected downstream
    assert rejected == {"stamp_backwards": 1}


def _spin(runner: NodeRunner, duration_s: float) -> threading.Thread:
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": duration_s}, daemon=True)
    thread.start()
    return thread
