"""The graph clock and stamp-ordered inputs: the merger and tick schedule without sockets, then a node on
the bus, then a toy two-input node driven by the real replay at several rates."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nodes.bus.messages import GeoFix, Header, Odometry
from nodes.bus.pubsub import Delivery, Publisher
from nodes.clock import (
    MAX_CATCH_UP_TICKS,
    USE_SIM_TIME_ENV,
    StampMerge,
    StampMerger,
    TickSchedule,
    run_offline,
    use_sim_time_from_env,
)
from nodes.runtime import Node, NodeRunner
from perception.drives import CameraInfo, DriveMetadata, DriveWriter

MS = 1_000_000


# -- the merger, socket-free ---------------------------------------------------------------------

def _stamps(held):
    return [(h.topic, h.stamp_ns) for h in held]


def test_merger_reorders_out_of_order_arrival_across_topics():
    m = StampMerger(["gps/fix", "odometry"], StampMerge(max_delay_s=0.1))
    m.push("odometry", 20, "o20", now_ns=0)
    assert m.pop_ready(1 * MS) == [], "odometry 20 waits: gps/fix not heard up to 20"
    m.push("gps/fix", 10, "g10", now_ns=2 * MS)  # arrived later, stamped earlier
    assert _stamps(m.pop_ready(3 * MS)) == [("gps/fix", 10)]
    m.push("gps/fix", 30, "g30", now_ns=4 * MS)
    assert _stamps(m.pop_ready(5 * MS)) == [("odometry", 20)], "gps heard up to 30 lets odometry 20 go"
    assert m.pop_ready(50 * MS) == [], "gps 30 waits for odometry up to 30, within the bound"
    assert m.next_deadline_ns() == 104 * MS
    assert _stamps(m.pop_ready(104 * MS)) == [("gps/fix", 30)], "released when the bound expires"
    assert m.late == {"gps/fix": 0, "odometry": 0}


def test_merger_waits_for_a_silent_input_only_up_to_the_bound():
    m = StampMerger(["gps/fix", "odometry"], StampMerge(max_delay_s=0.2))
    for i, stamp in enumerate((30, 10, 20)):  # odometry out of order within its own topic
        m.push("odometry", stamp, stamp, now_ns=i * MS)
    assert m.pop_ready(150 * MS) == [], "gps/fix never heard: everything waits"
    # the first arrival (stamp 30) expires: the ones stamped before it go too, in order
    assert _stamps(m.pop_ready(200 * MS)) == [("odometry", 10), ("odometry", 20), ("odometry", 30)]
    assert m.next_deadline_ns() is None and len(m) == 0


def test_merger_counts_and_delivers_a_late_message_under_deliver():
    m = StampMerger(["gps/fix", "odometry"], StampMerge(max_delay_s=0.1, late="deliver"))
    m.push("gps/fix", 10, "g", 0)
    m.push("odometry", 30, "o", 0)
    m.push("gps/fix", 40, "g", 0)
    assert _stamps(m.pop_ready(0)) == [("gps/fix", 10), ("odometry", 30)]
    held = m.push("odometry", 25, "late", 1 * MS)  # stamped before odometry 30, already delivered
    assert held is not None and held.late
    assert m.late == {"gps/fix": 0, "odometry": 1}
    out = m.pop_ready(1 * MS)
    assert _stamps(out) == [("odometry", 25)] and out[0].late, "handed over at once, flagged"
    assert m.delivered_ns == 30, "a late message does not move the delivered stamp back"


def test_merger_drops_a_late_message_under_drop_and_counts_it():
    m = StampMerger(["gps/fix", "odometry"], StampMerge(max_delay_s=0.1, late="drop"))
    m.push("gps/fix", 10, "g", 0)
    m.push("odometry", 30, "o", 0)
    m.push("gps/fix", 40, "g", 0)
    assert _stamps(m.pop_ready(0)) == [("gps/fix", 10), ("odometry", 30)]
    assert m.push("gps/fix", 5, "late", 0) is None
    assert m.pop_ready(1 * MS) == [], "nothing to hand over: gps 40 still waits for odometry"
    assert m.late["gps/fix"] == 1 and m.dropped["gps/fix"] == 1


def test_merger_breaks_stamp_ties_by_subscription_order():
    m = StampMerger(["odometry", "gps/fix"], StampMerge(max_delay_s=0.1))
    m.push("gps/fix", 10, "g", 0)
    m.push("odometry", 10, "o", 0)
    assert _stamps(m.pop_ready(0)) == [("odometry", 10), ("gps/fix", 10)]
    m.push("gps/fix", 10, "g2", 0)
    assert _stamps(m.pop_ready(0)) == [("gps/fix", 10)], "an equal stamp after delivery is not late"
    assert m.late == {"odometry": 0, "gps/fix": 0}


@pytest.mark.parametrize("bad", [{"max_delay_s": -1.0}, {"late": "reorder"}])
def test_bad_merge_settings_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        StampMerge(**bad)


def test_tick_schedule_is_on_a_grid_of_stamp_time():
    s = TickSchedule(4.0)  # 250 ms
    assert list(s.due(1_000_000_123)) == [], "first tick on the first grid point after the first stamp"
    assert list(s.due(2_000 * MS)) == [1_250 * MS, 1_500 * MS, 1_750 * MS], "strictly before the stamp"
    assert list(s.due(2_000 * MS + 1)) == [2_000 * MS]
    s2 = TickSchedule(4.0)
    assert list(s2.due(1_100 * MS)) == [] and next(s2.due(1_300 * MS)) == 1_250 * MS, \
        "a replay started elsewhere ticks at the same graph times"


def test_tick_schedule_skips_and_counts_an_absurd_clock_jump():
    s = TickSchedule(1000.0)
    list(s.due(0))
    fired = list(s.due((MAX_CATCH_UP_TICKS + 500) * MS))
    assert len(fired) == MAX_CATCH_UP_TICKS and s.skipped == 500


@pytest.mark.parametrize(("value", "flag"), [("", False), ("0", False), ("true", True), ("1", True)])
def test_use_sim_time_from_env(value, flag):
    assert use_sim_time_from_env({USE_SIM_TIME_ENV: value}) is flag


def test_use_sim_time_rejects_a_non_flag():
    with pytest.raises(ValueError, match=USE_SIM_TIME_ENV):
        use_sim_time_from_env({USE_SIM_TIME_ENV: "maybe"})


# -- a toy node with two inputs and a tick ---------------------------------------------------------

class StampLog(Node):
    """Logs what it is handed and when: (kind, stamp or tick time, graph now) per event."""

    name = "stamp_log"
    subscribes = {"gps/fix": Delivery.EVERY, "odometry": Delivery.EVERY}
    publishes = ()
    merge_inputs_by_stamp = StampMerge(max_delay_s=0.5)

    def __init__(self, tick_hz: float = 4.0) -> None:
        super().__init__()
        self.hz = tick_hz
        self.events: list[tuple[str, int, int]] = []

    def tick_hz(self) -> float:
        return self.hz

    def on_message(self, topic, msg, recv_ns):
        self.events.append((topic, msg.header.stamp_ns, self.now_ns()))
        return ()

    def on_tick(self, now_ns):
        self.events.append(("tick", now_ns, self.now_ns()))
        return ()


T0_NS = 1_700_000_000_000_000_000


def _gps(stamp_ns: int) -> GeoFix:
    return GeoFix(Header(stamp_ns=stamp_ns), lat_deg=34.05, lon_deg=-118.24)


def _odo(stamp_ns: int) -> Odometry:
    return Odometry(Header(stamp_ns=stamp_ns), speed_mps=1.0, yaw_rate_radps=0.0)


def test_run_offline_gives_inputs_in_stamp_order_with_ticks_between():
    node = StampLog(tick_hz=10.0)
    out = run_offline(node, [("odometry", _odo(T0_NS + 130 * MS)), ("gps/fix", _gps(T0_NS + 50 * MS)),
                             ("gps/fix", _gps(T0_NS + 250 * MS)), ("odometry", _odo(T0_NS + 100 * MS))])
    assert out == []
    assert [(k, t - T0_NS) for k, t, _ in node.events] == [
        ("gps/fix", 50 * MS), ("odometry", 100 * MS), ("tick", 100 * MS), ("odometry", 130 * MS),
        ("tick", 200 * MS), ("gps/fix", 250 * MS)]
    assert all(now == t for _, t, now in node.events), "now is the graph time of each event"


# -- on the bus ------------------------------------------------------------------------------------

def _spin(runner: NodeRunner, duration_s: float) -> threading.Thread:
    thread = threading.Thread(target=runner.spin, kwargs={"duration_s": duration_s}, daemon=True)
    thread.start()
    return thread


def test_runner_reorders_inputs_across_topics_and_reports_a_late_one(bus_config):
    node = StampLog(tick_hz=0.0)
    runner = NodeRunner(node, config=bus_config, use_sim_time=False)
    thread = _spin(runner, 6.0)
    with Publisher("gps/fix", config=bus_config) as gps, Publisher("odometry", config=bus_config) as odo:
        assert gps.wait_for_subscribers(1, 5) and odo.wait_for_subscribers(1, 5)
        for stamp in (10, 20, 30):
            odo.publish(_odo(stamp))  # all of odometry first, then gps/fix: socket order is not stamp order
        time.sleep(0.1)
        for stamp in (5, 15, 25, 35):
            gps.publish(_gps(stamp))
        time.sleep(1.0)  # gps 35 waits for odometry past 35, then the 0.5 s bound lets it go
        # stamped before what was delivered: late. From a new incarnation of the odometry publisher (a
        # restarted driver): within one incarnation a stamp going back is rejected at decode instead
        odo.restart_stream()
        odo.publish(_odo(12))
        time.sleep(0.5)
    diag = runner.diagnostics_message(1.0)
    runner.stop()
    thread.join()
    runner.close()
    assert [(k, t) for k, t, _ in node.events] == [
        ("gps/fix", 5), ("odometry", 10), ("gps/fix", 15), ("odometry", 20), ("gps/fix", 25), ("odometry", 30),
        ("gps/fix", 35), ("odometry", 12)]
    assert diag.errors == {"late:odometry": 1}
    assert "delivered out of order" in diag.last_error


def test_clock_is_wall_time_without_replay(bus_config, monkeypatch):
    monkeypatch.delenv(USE_SIM_TIME_ENV, raising=False)
    node = StampLog(tick_hz=20.0)
    runner = NodeRunner(node, config=bus_config)
    assert not runner.clock.sim
    before = time.time_ns()
    thread = _spin(runner, 0.6)
    with Publisher("gps/fix", config=bus_config) as gps:
        assert gps.wait_for_subscribers(1, 5)
        gps.publish(_gps(5))  # an old stamp: the clock still reads the wall
        thread.join()
    after = time.time_ns()
    runner.close()
    ticks = [t for k, t, _ in node.events if k == "tick"]
    assert len(ticks) >= 5 and all(before <= t <= after for t in ticks)
    assert all(before <= now <= after for _, _, now in node.events)


def test_use_sim_time_leaves_a_node_that_does_not_merge_on_the_wall_clock(bus_config, monkeypatch):
    monkeypatch.setenv(USE_SIM_TIME_ENV, "1")

    class Plain(Node):
        subscribes = {"gps/fix": Delivery.EVERY}

    runner = NodeRunner(Plain(), config=bus_config)
    merging = NodeRunner(StampLog(), config=bus_config)
    try:
        assert not runner.clock.sim and abs(runner.node.now_ns() - time.time_ns()) < 1e9
        assert merging.clock.sim and merging.node.now_ns() == 0
    finally:
        runner.close()
        merging.close()


# -- through the real replay at several rates ------------------------------------------------------

FRAME_NS = 100 * MS


def _write_drive(path) -> tuple[list[int], list[int]]:
    """2 s: camera and GPS at 10 Hz, odometry at 50 Hz, on offset grids (stamps never coincide)."""
    gps_ns = [T0_NS + i * FRAME_NS + 3 * MS for i in range(20)]
    odo_ns = [T0_NS + k * 20 * MS + 7 * MS for k in range(100)]
    with DriveWriter(path, DriveMetadata(source="test", camera=CameraInfo(16, 12, 12.0, 12.0, 8.0, 6.0))) as w:
        for i in range(20):
            w.add_image(T0_NS + i * FRAME_NS, np.full((12, 16, 3), i, np.uint8))
        for t in gps_ns:
            w.add_gps(t, lat_deg=34.05, lon_deg=-118.24, heading_deg=5.0, horizontal_std_m=0.2, speed_mps=1.0)
        for t in odo_ns:
            w.add_odometry(t, speed_mps=1.0, yaw_rate_radps=0.01)
    return gps_ns, odo_ns


class FrameAck(Node):
    """Answers each camera frame with a fix of its stamp after ``delay_s`` (the lock-step replay waits
    for it; a stand-in for PoseNet)."""

    name = "frame_ack"
    subscribes = {"camera/image": Delivery.EVERY}
    publishes = ("posenet/fix",)

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s

    def on_message(self, topic, msg, recv_ns):
        time.sleep(self.delay_s)
        return [("posenet/fix", _gps(msg.header.stamp_ns))]


class FixOdometryLog(StampLog):
    """A fusion-shaped toy: a derived topic (the fixes) merged with odometry, waiting less for a fix than
    the fix takes to come."""

    subscribes = {"posenet/fix": Delivery.EVERY, "odometry": Delivery.EVERY}
    merge_inputs_by_stamp = StampMerge(max_delay_s=0.05)


def _replay_through(bus_config, processes, drive: str, *params: str, node: StampLog | None = None
                    ) -> list[tuple[str, int, int]]:
    node = node or StampLog()
    runner = NodeRunner(node, config=bus_config, use_sim_time=True)
    thread = _spin(runner, 60.0)
    args = ["-m", "nodes.replay", "--param", f"drive={drive}", "--param", "start_delay_s=1.0",
            "--param", 'topics=["camera/image", "gps/fix", "odometry"]']
    for p in params:
        args += ["--param", p]
    proc = processes.start(*args)
    try:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        time.sleep(1.0)  # the last inputs wait out their 0.5 s bound
    finally:
        runner.stop()
        thread.join()
        late = dict(runner._merger.late)
        runner.close()
    assert set(late.values()) == {0}, late
    return node.events


def test_a_toy_node_sees_the_same_inputs_and_ticks_at_every_replay_rate(bus_config, processes, tmp_path):
    drive = str(tmp_path / "drive.mcap")
    gps_ns, odo_ns = _write_drive(drive)
    expected = StampLog()
    run_offline(expected, sorted([("gps/fix", _gps(t)) for t in gps_ns] + [("odometry", _odo(t)) for t in odo_ns],
                                 key=lambda r: r[1].header.stamp_ns))
    ticks = [t for k, t, _ in expected.events if k == "tick"]
    # 4 Hz on the grid, before the last input (odometry at 1.987 s): 0.25 ... 1.75 s
    assert [t - T0_NS for t in ticks] == [k * 250 * MS for k in range(1, 8)]
    ack = NodeRunner(FrameAck(), config=bus_config)  # one for all runs: the lock-step replay's answerer
    ack_thread = _spin(ack, 120.0)
    try:
        runs = {
            "lock-step": _replay_through(bus_config, processes, drive, "lockstep=true"),
            "x1": _replay_through(bus_config, processes, drive, "rate=1"),
            "x4": _replay_through(bus_config, processes, drive, "rate=4"),
            "max speed": _replay_through(bus_config, processes, drive, "rate=0"),
        }
    finally:
        ack.stop()
        ack_thread.join()
        ack.close()
    for mode, events in runs.items():
        assert events == expected.events, f"{mode}: the node saw other inputs or ticks than the drive holds"


class MergingBatcher(StampLog):
    """A merging node with a CNN-style batch hook: it gets runs of one topic together."""

    def __init__(self) -> None:
        super().__init__(tick_hz=10.0)
        self.batches: list[tuple[str, list[int]]] = []

    def max_batch(self, topic):
        return 4

    def on_batch(self, topic, msgs, recv_ns):
        self.batches.append((topic, [(m.header.stamp_ns - T0_NS) // MS for m in msgs]))
        return super().on_batch(topic, msgs, recv_ns)


def test_a_merging_node_keeps_its_batches_in_stamp_order_and_between_ticks(bus_config):
    node = MergingBatcher()
    runner = NodeRunner(node, config=bus_config, use_sim_time=True)
    thread = _spin(runner, 5.0)
    with Publisher("gps/fix", config=bus_config) as gps, Publisher("odometry", config=bus_config) as odo:
        assert gps.wait_for_subscribers(1, 5) and odo.wait_for_subscribers(1, 5)
        for k in range(12):  # odometry every 20 ms from 0 to 220 ms
            odo.publish(_odo(T0_NS + k * 20 * MS))
        gps.publish(_gps(T0_NS + 150 * MS))
        gps.publish(_gps(T0_NS + 300 * MS))
        time.sleep(1.0)
    runner.stop()
    thread.join()
    runner.close()
    # everything up to odometry 220 goes once gps/fix is heard at 300; runs of odometry are batched up to
    # 4 and split at ticks (a lone message goes to on_message); gps 300 waits for the bound
    assert node.batches == [("odometry", [20, 40, 60, 80]), ("odometry", [120, 140]), ("odometry", [160, 180, 200])]
    assert [(k, (t - T0_NS) // MS) for k, t, _ in node.events if k != "odometry"] == [
        ("tick", 0), ("tick", 100), ("gps/fix", 150), ("tick", 200), ("gps/fix", 300)]
    offline = StampLog(tick_hz=10.0)
    run_offline(offline, [("odometry", _odo(T0_NS + k * 20 * MS)) for k in range(12)]
                + [("gps/fix", _gps(T0_NS + 150 * MS)), ("gps/fix", _gps(T0_NS + 300 * MS))])
    assert [e[:2] for e in node.events] == [e[:2] for e in offline.events], "batching keeps the order"
    assert [now for k, t, now in node.events if t == T0_NS + 40 * MS] == [T0_NS + 80 * MS], \
        "within a batch, now is the newest stamp of the batch"


def test_lock_step_gives_a_merging_node_a_derived_topic_in_stamp_order_whatever_its_latency(
        bus_config, processes, tmp_path):
    drive = str(tmp_path / "drive.mcap")
    _, odo_ns = _write_drive(drive)
    fix_ns = [T0_NS + i * FRAME_NS for i in range(20)]
    expected = FixOdometryLog()
    run_offline(expected, [("posenet/fix", _gps(t)) for t in fix_ns] + [("odometry", _odo(t)) for t in odo_ns])
    ack = NodeRunner(FrameAck(delay_s=0.15), config=bus_config)  # 3x the merge's max_delay_s
    ack_thread = _spin(ack, 60.0)
    try:
        events = _replay_through(bus_config, processes, drive, "lockstep=true", "lockstep_timeout_s=5.0",
                                 node=FixOdometryLog())
    finally:
        ack.stop()
        ack_thread.join()
        ack.close()
    assert events == expected.events
