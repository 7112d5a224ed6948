"""Stamps and publisher incarnations at the subscriber: a stamp far ahead of the clock, beyond int64, or
before the previous one of the same publisher is rejected and counted; a restarted publisher (a new
incarnation, seq from 0) is a restart, not a gap and not a clock going back."""

from __future__ import annotations

import time

import pytest

from nodes.bus.messages import GeoFix, Header, Hop
from nodes.bus.pubsub import Publisher, Subscriber
from nodes.bus.topics import TOPICS
from nodes.bus.wire import Codec, DecodeError
from perception.drives.bounds import STAMP_MAX_AHEAD_NS
from perception.drives.topics import GPS_TOPIC

S = 1_000_000_000


def frames(stamp_ns: int, *, node: str = "gps", seq: int = 0, incarnation: int = 7) -> list[bytes]:
    fix = GeoFix(Header(stamp_ns=stamp_ns, seq=seq, trace=[Hop(node, stamp_ns, stamp_ns)], incarnation=incarnation),
                 lat_deg=55.7, lon_deg=13.2)
    return [bytes(f) for f in Codec(TOPICS[GPS_TOPIC]).encode(fix)]


@pytest.fixture
def sub(bus_config):
    with Subscriber(GPS_TOPIC, config=bus_config) as s:
        yield s


def test_a_stamp_far_ahead_of_the_clock_is_rejected(sub):
    now = time.time_ns()
    sub.decode(frames(now + 5 * S), now_ns=now)  # a few seconds of clock skew between machines: fine
    with pytest.raises(DecodeError) as err:
        sub.decode(frames(now + STAMP_MAX_AHEAD_NS + S, seq=1), now_ns=now)
    assert err.value.kind == "stamp_ahead" and "ahead of this machine's clock" in str(err.value)
    assert sub.rejected == {"stamp_ahead": 1}


def test_stamp_beyond_int64_is_rejected_not_a_crash(sub):
    with pytest.raises(DecodeError) as err:
        sub.decode(frames(2**64 - 1))
    assert err.value.kind == "out_of_range" and "header.stamp_ns=18446744073709551615" in str(err.value)


def test_stamps_going_back_within_one_publisher_are_rejected(sub):
    t0 = time.time_ns() - 100 * S
    sub.decode(frames(t0 + 10 * S, seq=0))
    sub.decode(frames(t0 + 20 * S, seq=1))
    with pytest.raises(DecodeError) as err:
        sub.decode(frames(t0 + 15 * S, seq=2))
    assert err.value.kind == "stamp_backwards" and "5 s before its previous" in str(err.value)
    sub.decode(frames(t0 + 20 * S, seq=3))  # equal stamps are fine (several records of one capture)
    sub.decode(frames(t0 + 5 * S, node="other"))  # another publisher has a history of its own
    assert sub.rejected == {"stamp_backwards": 1}


def test_a_new_incarnation_is_a_restart_not_a_gap_or_a_clock_going_back(sub):
    t0 = time.time_ns() - 100 * S
    for seq in range(5):
        sub.decode(frames(t0 + seq * S, seq=seq, incarnation=1))
    # the node is respawned (or a replay starts over): seq from 0, stamps from the start again
    for seq in range(3):
        sub.decode(frames(t0 + seq * S, seq=seq, incarnation=2))
    assert sub.restarts == 1 and sub.seq_gaps == 0 and sub.decode_errors == 0
    sub.decode(frames(t0 + 9 * S, seq=6, incarnation=2))  # within an incarnation a jump is a gap
    assert sub.seq_gaps == 3


def test_publishers_draw_an_incarnation_and_restart_streams(bus_config):
    with Publisher(GPS_TOPIC, node="gps", config=bus_config) as pub, \
            Subscriber(GPS_TOPIC, config=bus_config) as sub:
        assert pub.wait_for_subscribers(1, 5)
        first = pub.incarnation
        assert 1 <= first < 2**32
        t0 = time.time_ns() - 10 * S
        for k in range(3):
            pub.publish(GeoFix(Header(stamp_ns=t0 + k * S), lat_deg=55.7, lon_deg=13.2))
        pub.restart_stream()
        assert pub.incarnation != first and pub.seq == 0
        pub.publish(GeoFix(Header(stamp_ns=t0), lat_deg=55.7, lon_deg=13.2))
        got = [sub.recv(timeout_s=2) for _ in range(4)]
    assert [m.header.incarnation for m in got] == [first] * 3 + [pub.incarnation]
    assert [m.header.seq for m in got] == [0, 1, 2, 0]
    assert sub.restarts == 1 and sub.decode_errors == 0 and sub.seq_gaps == 0


def test_tracked_publishers_are_bounded(sub):
    from nodes.bus.pubsub import MAX_TRACKED_PUBLISHERS

    t0 = time.time_ns() - 100 * S
    for k in range(MAX_TRACKED_PUBLISHERS * 3):
        sub.decode(frames(t0, node=f"spoof{k}"))
    assert len(sub._publishers) <= MAX_TRACKED_PUBLISHERS and len(sub._incarnations) <= MAX_TRACKED_PUBLISHERS


def test_a_node_says_when_the_publisher_of_an_input_restarted(bus_config, caplog):
    import logging
    import threading

    from nodes.bus.pubsub import Delivery
    from nodes.runtime import Node, NodeRunner

    class Sink(Node):
        name = "sink"
        subscribes = {GPS_TOPIC: Delivery.EVERY}

        def __init__(self) -> None:
            super().__init__()
            self.seqs: list[int] = []

        def on_message(self, topic, msg, recv_ns):
            self.seqs.append(msg.header.seq)
            return ()

    node = Sink()
    runner = NodeRunner(node, config=bus_config)
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": 1.5})
    with caplog.at_level(logging.INFO, logger="streetloc.sink"), \
            Publisher(GPS_TOPIC, node="gps", config=bus_config) as pub:
        assert pub.wait_for_subscribers(1, 5)
        thread.start()
        t0 = time.time_ns() - 10 * S
        for k in range(3):
            pub.publish(GeoFix(Header(stamp_ns=t0 + k * S), lat_deg=55.7, lon_deg=13.2))
        time.sleep(0.3)
        pub.restart_stream()  # as a respawned gps driver would
        pub.publish(GeoFix(Header(stamp_ns=t0), lat_deg=55.7, lon_deg=13.2))
        thread.join()
    diag = runner.diagnostics_message(1.0)
    runner.close()
    assert node.seqs == [0, 1, 2, 0]
    assert "gps/fix: its publisher restarted (new incarnation, seq from 0; 1 restart seen)" in caplog.text
    assert diag.errors == {} and all(t.dropped == 0 for t in diag.topics)
