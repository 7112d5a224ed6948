"""The rate/latency monitor: its checks on synthetic streams, and its problems in diagnostics."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from nodes.bus.messages import GeoFix, Header, Hop, Image
from nodes.bus.topics import BusConfig
from nodes.monitor import MAIN_TOPICS, MonitorParams, TopicMonitor, format_report
from nodes.runtime import NodeRunner, load_params

S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S


def image(stamp_ns: int, latency_ns: int = 5_000_000) -> Image:
    header = Header(stamp_ns=stamp_ns, trace=[Hop("camera", stamp_ns, stamp_ns + latency_ns)])
    return Image(header=header, width_px=2, height_px=2, encoding="mono8", data=np.zeros((2, 2), np.uint8))


def feed(monitor: TopicMonitor, rate_hz: float, start_ns: int, seconds: float, latency_ns: int = 5_000_000,
         topic: str = "camera/image") -> int:
    """Messages at ``rate_hz`` (stamp = arrival) from ``start_ns`` for ``seconds``; returns the end time."""
    period = int(S / rate_hz)
    t = start_ns
    while t < start_ns + seconds * S:
        monitor.on_message(topic, image(t, latency_ns), t + latency_ns)
        t += period
    return t


def make(**params) -> TopicMonitor:
    return TopicMonitor(MonitorParams(topics=("camera/image",), **params))


def test_default_topics_are_the_main_topics():
    monitor = TopicMonitor()
    assert tuple(monitor.subscribes) == MAIN_TOPICS
    assert monitor.publishes == ()


def test_healthy_stream_has_no_problem():
    monitor = make(expected_rate_hz={"camera/image": 10.0})
    monitor.on_tick(T0)
    end = feed(monitor, 10.0, T0, 3.0)
    monitor.on_tick(end)
    assert monitor.health() == {}
    (report,) = monitor.report(end)
    assert report.rate_hz == pytest.approx(10.0, rel=0.01)
    assert report.latency_ms_p50 == pytest.approx(5.0)
    assert report.count == 30


@pytest.mark.parametrize(("rate_hz", "problem"), [(4.0, True), (6.0, False), (14.0, False), (16.0, True)])
def test_rate_outside_half_to_one_and_a_half_times_expected_is_a_problem(rate_hz, problem):
    monitor = make(expected_rate_hz={"camera/image": 10.0})
    monitor.on_tick(T0)
    end = feed(monitor, rate_hz, T0, 3.0)
    monitor.on_tick(end)
    health = monitor.health()
    assert ("rate:camera/image" in health) is problem
    if problem:
        assert "expected 10 Hz" in health["rate:camera/image"]


def test_table_rate_applies_without_override():
    monitor = make()  # camera/image is 30 Hz in the table
    monitor.on_tick(T0)
    end = feed(monitor, 10.0, T0, 2.0)
    monitor.on_tick(end)
    assert "rate:camera/image" in monitor.health()


def test_rate_check_off_with_zero():
    monitor = make(expected_rate_hz={"camera/image": 0.0})
    monitor.on_tick(T0)
    end = feed(monitor, 1.0, T0, 3.0)
    monitor.on_tick(end)
    assert monitor.health() == {}


def test_stale_topic_after_grace_and_recovery(caplog):
    monitor = make(expected_rate_hz={"camera/image": 10.0}, stale_after_s=2.0)
    caplog.set_level(logging.INFO, logger="nodes.monitor")
    monitor.on_tick(T0)
    monitor.on_tick(T0 + 1 * S)
    assert monitor.health() == {}  # grace: publishers may start after the monitor
    monitor.on_tick(T0 + 3 * S)
    assert "no message since start" in monitor.health()["stale:camera/image"]
    end = feed(monitor, 10.0, T0 + 3 * S, 2.0)
    monitor.on_tick(end)
    assert monitor.health() == {}
    monitor.on_tick(end + 5 * S)
    assert "no message for 5" in monitor.health()["stale:camera/image"]
    # transitions are logged once each, not every tick
    monitor.on_tick(end + 6 * S)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("recovered (stale)" in r.getMessage() for r in caplog.records)


def test_latency_limit():
    monitor = make(expected_rate_hz={"camera/image": 10.0}, max_latency_ms=50.0)
    monitor.on_tick(T0)
    end = feed(monitor, 10.0, T0, 2.0, latency_ns=80_000_000)
    monitor.on_tick(end)
    assert "latency 80.0 ms median, limit 50 ms" in monitor.health()["latency:camera/image"]


def test_window_forgets_old_messages():
    monitor = make(expected_rate_hz={"camera/image": 10.0}, window_s=2.0)
    monitor.on_tick(T0)
    t = feed(monitor, 30.0, T0, 5.0)  # too fast for a while ...
    t = feed(monitor, 10.0, t, 3.0)  # ... then right: judged on the last window only
    monitor.on_tick(t)
    assert monitor.health() == {}


def test_summary_lines(caplog):
    monitor = make(expected_rate_hz={"camera/image": 10.0}, summary_period_s=1.0)
    caplog.set_level(logging.INFO, logger="nodes.monitor")
    monitor.on_tick(T0)
    end = feed(monitor, 10.0, T0, 2.0)
    monitor.on_tick(end)
    assert any(r.getMessage().startswith("camera/image: 10 Hz (expected 10 Hz), latency p50 5.0 ms")
               for r in caplog.records)
    assert "not checked" in format_report(make(expected_rate_hz={"camera/image": 0.0}).report(T0)[0])


@pytest.mark.parametrize(("overrides", "message"), [
    (['topics=["camera/imag"]'], "topics: unknown topic 'camera/imag'"),
    (['topics=["diagnostics"]'], "fan-in"),
    (['topics=["gps/fix"]', 'expected_rate_hz={"camera/image"=10}'], "expected_rate_hz: 'camera/image' is not in"),
    (["rate_min_ratio=2"], "rate_min_ratio 2.0 is not below"),
])
def test_bad_params_are_named(overrides, message):
    params = load_params(MonitorParams, overrides=overrides)
    with pytest.raises(ValueError, match=message):
        TopicMonitor.declared_topics(params)
    with pytest.raises(ValueError, match=message):
        TopicMonitor(params)


def test_problems_reach_diagnostics(tmp_path):
    """Through Node.health: status warn, one errors kind per problem, details in last_error."""
    config = BusConfig(ipc_dir=str(tmp_path))
    monitor = TopicMonitor(MonitorParams(topics=("camera/image", "gps/fix"), stale_after_s=1.0))
    runner = NodeRunner(monitor, config=config)
    try:
        diag = runner.diagnostics_message(1.0)
        assert (diag.status, diag.errors) == ("ok", {})
        monitor.on_tick(T0)
        monitor.on_message("gps/fix", GeoFix(header=Header(stamp_ns=T0 + S), lat_deg=55.7, lon_deg=13.2), T0 + S)
        monitor.on_tick(T0 + 2 * S)
        diag = runner.diagnostics_message(1.0)
        assert diag.status == "warn"
        assert diag.errors == {"stale:camera/image": 1}
        assert "camera/image: no message since start" in diag.last_error
        assert {(t.topic, t.direction) for t in diag.topics} == {("camera/image", "in"), ("gps/fix", "in")}
    finally:
        runner.close()


def test_rejected_messages_are_a_problem_with_counts_per_reason_until_they_leave_the_window():
    import time

    monitor = make(expected_rate_hz={"camera/image": 0.0}, window_s=5.0)
    now = time.time_ns()  # on_reject is stamped by the node's clock: the wall clock for the monitor
    feed(monitor, 10.0, now - S, 1.0)
    for _ in range(3):
        monitor.on_reject("camera/image", "out_of_range", "camera/image: lat_deg=95.0 outside [-90, 90]")
    monitor.on_reject("camera/image", "depth", "camera/image: nested deeper than the decoder's limit")
    monitor.on_tick(now)
    problem = monitor.health()["rejected:camera/image"]
    assert problem.startswith("camera/image: 4 messages rejected in the last 5 s (depth 1, out_of_range 3); last:")
    (report,) = monitor.report(now)
    assert report.rejected == {"out_of_range": 3, "depth": 1}
    assert format_report(report).endswith(", 4 rejected")
    monitor.on_message("camera/image", image(now + 6 * S), now + 6 * S)
    monitor.on_tick(now + 6 * S)
    assert "rejected:camera/image" not in monitor.health()


def test_rate_after_a_replay_loops_is_the_new_pass_rate():
    """A looping replay starts its stamps over: the rate is measured since then, not over the jump back
    (which would read as a far lower rate for a whole window)."""
    monitor = make(expected_rate_hz={"camera/image": 10.0})
    monitor.on_tick(T0)
    end = feed(monitor, 10.0, T0 + 60 * S, 3.0)  # the end of a pass ...
    for k in range(5):  # ... then the drive's start again, arriving now
        monitor.on_message("camera/image", image(T0 + k * S // 10), end + k * S // 10)
    (report,) = monitor.report(end + S // 2)
    assert report.rate_hz == pytest.approx(10.0, rel=0.01)
