"""Topic remaps, as the launcher passes them to a node process (``--remap FROM=TO``): the node keeps
its declared names, the bus sees the remapped ones, and a remap across message types is refused."""

from __future__ import annotations

import time

import pytest

from nodes.bus.messages import GeoFix, Header
from nodes.bus.pubsub import Delivery, Publisher
from nodes.runtime import Node, NodeRunner, node_main, resolve_remaps


class InOut(Node):
    """Takes GeoFix on gps/fix, publishes poses (the shape of a fusion node)."""

    subscribes = {"gps/fix": Delivery.EVERY}
    publishes = ("localization/pose",)


def test_resolve_remaps():
    assert resolve_remaps(["gps/fix"], ["localization/pose"], {"gps/fix": "posenet/fix"}) == {
        "gps/fix": "posenet/fix", "localization/pose": "localization/pose"}
    with pytest.raises(ValueError, match="type mismatch: the node uses 'gps/fix' as GeoFix, 'camera/image' carries Image"):
        resolve_remaps(["gps/fix"], [], {"gps/fix": "camera/image"}, "n")
    with pytest.raises(ValueError, match="neither subscribes to nor publishes 'odometry'"):
        resolve_remaps(["gps/fix"], [], {"odometry": "odometry"}, "n")
    with pytest.raises(ValueError, match="unknown topic 'gps/fx'"):
        resolve_remaps(["gps/fix"], [], {"gps/fix": "gps/fx"}, "n")


def test_sockets_are_on_the_remapped_topics(bus_config):
    runner = NodeRunner(InOut(), config=bus_config, remaps={"gps/fix": "posenet/fix"})
    try:
        # keyed by the declared names the node uses, connected to the bus topics
        assert runner.subscribers["gps/fix"].topic.name == "posenet/fix"
        assert runner.publishers["localization/pose"].topic.name == "localization/pose"
    finally:
        runner.close()


def test_remapped_subscription_delivers_under_the_declared_name(bus_config):
    node = InOut()
    runner = NodeRunner(node, config=bus_config, remaps={"gps/fix": "posenet/fix"})
    seen = []
    node.on_message = lambda topic, msg, recv_ns: seen.append(topic) or ()  # type: ignore[method-assign]
    with Publisher("posenet/fix", config=bus_config) as pub:
        assert pub.wait_for_subscribers(1, timeout_s=5)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            pub.publish(GeoFix(header=Header(stamp_ns=time.time_ns()), lat_deg=55.7, lon_deg=13.2))
            runner.spin(duration_s=0.1)
    try:
        assert seen and set(seen) == {"gps/fix"}
        diag = runner.diagnostics_message(1.0)
        assert {(t.topic, t.direction) for t in diag.topics if t.count} == {("posenet/fix", "in")}
    finally:
        runner.close()


def test_node_main_refuses_a_bad_remap(capsys):
    assert node_main(InOut, ["--name", "x", "--remap", "gps/fix=camera/image"]) == 2
    assert "type mismatch" in capsys.readouterr().err
    assert node_main(InOut, ["--name", "x", "--remap", "gps/fix"]) == 2
    assert "is not FROM=TO" in capsys.readouterr().err
