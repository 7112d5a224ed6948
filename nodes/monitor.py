"""A rate and latency monitor: watches topics and reports the ones that are late, slow, fast or silent.

Like ROS's ``diagnostic_updater`` frequency/timestamp checks or openpilot's ``freq_ok`` flags, but as a
node of its own, so that any graph gets them by adding one entry to its launch file. For each configured
topic it measures, over a sliding window:

- the **rate** from the messages' capture stamps (``header.stamp_ns``), against the topic table's
  ``rate_hz`` (or an override): outside ``[rate_min_ratio, rate_max_ratio]`` x expected is a problem;
- the **end-to-end latency** from the header trace, ``trace[-1].pub_ns - stamp_ns`` (capture to the
  last publisher), median and max; above ``max_latency_ms`` (when set) is a problem;
- **staleness**: no message for ``stale_after_s`` is a problem;
- **rejected messages**: any message of the topic rejected at decode within the window (malformed, a
  field out of its bounds such as lat 95 or a NaN, a stamp ahead of the clock or going back; the
  reasons of docs/wire_format.md, "Limits") is a problem, ``rejected:<topic>``, with the counts per
  reason and the last one in the detail.

Problems go into the node's diagnostics (status "warn", one ``errors`` kind per problem such as
``stale:camera/image``, details in ``last_error``; see ``Node.health``) and into its log when they
appear and clear. It publishes nothing itself, so it can watch any graph without being wired into it.

    python -m nodes.monitor --param 'topics=["TOPIC"]' --param 'expected_rate_hz={"TOPIC"=10}'

(TOPIC: a name of the topic table, `streetloc topic list`; by default the graph's main topics.)
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from nodes.bus.pubsub import Delivery
from nodes.bus.topics import get_topic
from nodes.runtime import INPUT_RESTART_MIN_BACK_NS as _STARTS_OVER_NS
from nodes.runtime import Node, Outputs, node_main
from perception.drives.topics import (
    CAMERA_TOPIC,
    DETECTIONS_TOPIC,
    POSE_TOPIC,
    POSENET_TOPIC,
    SEGMENTATION_TOPIC,
)

log = logging.getLogger(__name__)

# The topics a localization graph lives by: camera in, perception, fused pose out.
MAIN_TOPICS = (CAMERA_TOPIC, POSENET_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC, POSE_TOPIC)


class MonitorParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    topics: Annotated[tuple[str, ...], msgspec.Meta(
        min_length=1, description="topics to watch (table names; not fan-in topics)")] = MAIN_TOPICS
    expected_rate_hz: Annotated[dict[str, float], msgspec.Meta(
        description="expected rate per topic, Hz, where it differs from the topic table's; "
                    "0 turns the rate check off for that topic")] = {}
    window_s: Annotated[float, msgspec.Meta(
        gt=0, le=600, description="sliding window of the rate and latency statistics, s")] = 5.0
    rate_min_ratio: Annotated[float, msgspec.Meta(
        ge=0, description="a rate below this x expected is a problem")] = 0.5
    rate_max_ratio: Annotated[float, msgspec.Meta(
        gt=0, description="a rate above this x expected is a problem")] = 1.5
    stale_after_s: Annotated[float, msgspec.Meta(
        gt=0, description="a topic without a message for this long is stale, s")] = 2.0
    max_latency_ms: Annotated[float, msgspec.Meta(
        ge=0, description="median end-to-end latency above this is a problem, ms; 0: not checked")] = 0.0
    check_hz: Annotated[float, msgspec.Meta(
        gt=0, le=100, description="how often the checks run, Hz")] = 2.0
    summary_period_s: Annotated[float, msgspec.Meta(
        ge=0, description="log one line of statistics per topic this often, s; 0: never")] = 0.0


@dataclass
class TopicReport:
    """What the monitor knows of one topic at one instant."""

    topic: str
    expected_hz: float  # 0: no rate check
    rate_hz: float | None  # from capture stamps over the window; None before two messages
    latency_ms_p50: float | None  # capture -> last publisher, median over the window
    latency_ms_max: float | None
    age_s: float | None  # since the last message arrived; None if none ever did
    count: int  # messages since start
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> messages rejected within the window
    last_rejected: str = ""  # the last rejection within the window, one line


class _Window:
    """Messages of one topic within the last ``window_ns``: (recv_ns, stamp_ns, latency_ns or None)."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.samples: deque[tuple[int, int, int | None]] = deque()
        self.count = 0
        self.last_recv_ns: int | None = None
        self.rejects: deque[tuple[int, str, str]] = deque()  # (recv_ns, reason, detail) within the window

    def add(self, recv_ns: int, stamp_ns: int, latency_ns: int | None) -> None:
        self.samples.append((recv_ns, stamp_ns, latency_ns))
        self.count += 1
        self.last_recv_ns = recv_ns
        self.prune(recv_ns)

    def prune(self, now_ns: int) -> None:
        while self.samples and self.samples[0][0] < now_ns - self.window_ns:
            self.samples.popleft()
        while self.rejects and self.rejects[0][0] < now_ns - self.window_ns:
            self.rejects.popleft()

    def reject(self, recv_ns: int, reason: str, detail: str) -> None:
        self.rejects.append((recv_ns, reason, detail))
        self.prune(recv_ns)
        if len(self.rejects) > 100_000:  # a flood: the counts stay right enough, memory stays bounded
            self.rejects.popleft()

    def rejected(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason, _ in self.rejects:
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def rate_hz(self) -> float | None:
        # From the capture stamps, not arrival times: bus jitter must not read as a rate problem, and a
        # window that is not yet full must not read as a low rate.
        if len(self.samples) < 2:
            return None
        stamps = [s for _, s, _ in self.samples]
        for i in range(len(stamps) - 1, 0, -1):  # a replay looping: stamps start over; rate since then
            if stamps[i] < stamps[i - 1] - _STARTS_OVER_NS:
                stamps = stamps[i:]
                break
        if len(stamps) < 2:
            return None
        span_ns = max(stamps) - min(stamps)
        return (len(stamps) - 1) * 1e9 / span_ns if span_ns > 0 else None

    def latency_ms(self) -> tuple[float | None, float | None]:
        values = [lat for _, _, lat in self.samples if lat is not None]
        if not values:
            return None, None
        return statistics.median(values) / 1e6, max(values) / 1e6


class TopicMonitor(Node):
    """Watches topics' rate, latency and staleness; reports problems in diagnostics and logs."""

    name = "monitor"
    Params = MonitorParams

    @classmethod
    def declared_topics(cls, params: msgspec.Struct) -> tuple[dict[str, Delivery], tuple[str, ...]]:
        assert isinstance(params, MonitorParams)
        for name in params.topics:
            try:
                topic = get_topic(name)
            except ValueError as exc:
                raise ValueError(f"topics: {exc}") from None
            if topic.fan_in:
                raise ValueError(f"topics: {name!r} has many publishers (fan-in); its rate says nothing")
        if len(set(params.topics)) != len(params.topics):
            raise ValueError(f"topics: listed twice: {sorted({t for t in params.topics if params.topics.count(t) > 1})}")
        for name in params.expected_rate_hz:
            if name not in params.topics:
                raise ValueError(f"expected_rate_hz: {name!r} is not in topics {list(params.topics)}")
        if params.rate_min_ratio >= params.rate_max_ratio:
            raise ValueError(f"rate_min_ratio {params.rate_min_ratio} is not below rate_max_ratio "
                             f"{params.rate_max_ratio}")
        # EVERY: a rate measured on a drained queue (LATEST) would read low by design
        return {name: Delivery.EVERY for name in params.topics}, ()

    def __init__(self, params: MonitorParams | None = None) -> None:
        super().__init__(params)
        p: MonitorParams = self.params  # type: ignore[assignment]
        self.subscribes, self.publishes = self.declared_topics(p)  # per instance: set by params
        window_ns = int(p.window_s * 1e9)
        self._windows = {name: _Window(window_ns) for name in p.topics}
        self._expected = {name: p.expected_rate_hz.get(name, get_topic(name).rate_hz) for name in p.topics}
        self._started_ns: int | None = None
        self._next_summary_ns: int | None = None
        self.problems: dict[str, str] = {}

    def tick_hz(self) -> float:
        return self.params.check_hz  # type: ignore[attr-defined]

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        header = msg.header  # type: ignore[attr-defined]
        latency_ns = header.trace[-1].pub_ns - header.stamp_ns if header.trace else None
        self._windows[topic].add(recv_ns, header.stamp_ns, latency_ns)
        return ()

    def on_reject(self, topic: str, reason: str, detail: str) -> None:
        self._windows[topic].reject(self.now_ns(), reason, detail)

    def report(self, now_ns: int) -> list[TopicReport]:
        """The current statistics of every watched topic."""
        rows = []
        for name, window in self._windows.items():
            window.prune(now_ns)
            p50, worst = window.latency_ms()
            age = None if window.last_recv_ns is None else (now_ns - window.last_recv_ns) / 1e9
            rows.append(TopicReport(name, self._expected[name], window.rate_hz(), p50, worst, age, window.count,
                                    window.rejected(), window.rejects[-1][2] if window.rejects else ""))
        return rows

    def check(self, now_ns: int) -> dict[str, str]:
        """The problems at ``now_ns``: kind (``stale:``, ``rate:``, ``latency:``, ``rejected:`` + topic) ->
        detail."""
        p: MonitorParams = self.params  # type: ignore[assignment]
        if self._started_ns is None:
            self._started_ns = now_ns
        problems: dict[str, str] = {}
        for r in self.report(now_ns):
            if r.rejected:
                counts = ", ".join(f"{reason} {n}" for reason, n in sorted(r.rejected.items()))
                problems[f"rejected:{r.topic}"] = (f"{r.topic}: {sum(r.rejected.values())} messages rejected in the "
                                                   f"last {p.window_s:g} s ({counts}); last: {r.last_rejected}")
            if r.age_s is None:
                waited_s = (now_ns - self._started_ns) / 1e9
                if waited_s > p.stale_after_s:  # a grace period: publishers may start after us
                    problems[f"stale:{r.topic}"] = f"{r.topic}: no message since start ({waited_s:.1f} s)"
                continue
            if r.age_s > p.stale_after_s:
                problems[f"stale:{r.topic}"] = f"{r.topic}: no message for {r.age_s:.1f} s"
                continue
            if r.expected_hz > 0 and r.rate_hz is not None:
                ratio = r.rate_hz / r.expected_hz
                if not p.rate_min_ratio <= ratio <= p.rate_max_ratio:
                    problems[f"rate:{r.topic}"] = (
                        f"{r.topic}: {r.rate_hz:.3g} Hz, expected {r.expected_hz:g} Hz "
                        f"({p.rate_min_ratio:g}x to {p.rate_max_ratio:g}x)")
            if p.max_latency_ms > 0 and r.latency_ms_p50 is not None and r.latency_ms_p50 > p.max_latency_ms:
                problems[f"latency:{r.topic}"] = (f"{r.topic}: latency {r.latency_ms_p50:.1f} ms median, "
                                                  f"limit {p.max_latency_ms:g} ms")
        return problems

    def on_tick(self, now_ns: int) -> Outputs:
        problems = self.check(now_ns)
        # log transitions only: a problem that lasts an hour is one warning, not 7200
        for kind, detail in problems.items():
            if kind not in self.problems:
                log.warning("%s", detail)
        for kind in self.problems:
            if kind not in problems:
                what, _, topic = kind.partition(":")
                log.info("%s: recovered (%s)", topic, what)
        self.problems = problems
        self._log_summary(now_ns)
        return ()

    def _log_summary(self, now_ns: int) -> None:
        period_s = self.params.summary_period_s  # type: ignore[attr-defined]
        if period_s <= 0:
            return
        if self._next_summary_ns is None:
            self._next_summary_ns = now_ns + int(period_s * 1e9)
            return
        if now_ns < self._next_summary_ns:
            return
        self._next_summary_ns = now_ns + int(period_s * 1e9)
        for r in self.report(now_ns):
            log.info("%s", format_report(r))

    def health(self) -> dict[str, str]:
        return dict(self.problems)


def _fmt(value: float | None, unit: str, spec: str = ".3g") -> str:
    return "-" if value is None else f"{value:{spec}} {unit}"


def format_report(r: TopicReport) -> str:
    """One line: ``camera/image: 10 Hz (expected 10 Hz), latency p50 1.2 ms max 3.4 ms, last 0.05 s ago``."""
    expected = f"{r.expected_hz:g} Hz" if r.expected_hz > 0 else "not checked"
    return (f"{r.topic}: {_fmt(r.rate_hz, 'Hz')} (expected {expected}), "
            f"latency p50 {_fmt(r.latency_ms_p50, 'ms', '.1f')} max {_fmt(r.latency_ms_max, 'ms', '.1f')}, "
            f"last {_fmt(r.age_s, 's ago', '.2f')}, {r.count} messages"
            + (f", {sum(r.rejected.values())} rejected" if r.rejected else ""))


if __name__ == "__main__":
    raise SystemExit(node_main(TopicMonitor))
