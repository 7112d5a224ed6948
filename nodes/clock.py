"""The graph clock and stamp-ordered inputs: what "now" is for a node, and in which order its inputs come.

Pure logic, no sockets: ``nodes.runtime.NodeRunner`` drives it on the bus, ``run_offline`` drives it from a
list of messages (openpilot's process replay: a node fed a recorded drive, no processes).

**The graph clock.** A node reads "now" from ``Node.now_ns()``, not from ``time``. Live it is the wall
clock. In replay (``use_sim_time``, as in ROS 2: ``STREETLOC_USE_SIM_TIME=1``, which ``streetloc replay
--launch`` and ``streetloc demo`` set for the graph they start; a graph launched apart sets it in a node's
``env`` in the launch file) a node that merges its inputs by stamp runs on *stamp time*: now is
the largest ``stamp_ns`` of the inputs delivered to it so far, and its ``on_tick`` fires at graph-clock
times on a fixed grid (multiples of the tick period since the epoch), each tick after every input stamped
at or before it and before any input stamped after it. Graph time only moves with the inputs, so a node
whose inputs are silent sees no time pass, then gets the ticks it missed, in order, before the input that
moved the clock: its outputs are those a timely run would give, only later.

Why stamp time and not a ``clock`` topic published by the replay (ROS 2's ``/clock``): each topic has
its own ZeroMQ connection, and ZeroMQ orders messages per connection only. A clock message overtakes
the data it stands for: a process sending data(i) on one socket then clock(i) on another, and a node
polling both as the runtime does, handled clock(i) first for 26 % of 20,000 pairs sent 100 us apart and
for nearly all of them sent back to back (ipc, this project's 2-core machine). And a derived topic
(``posenet/fix`` of frame t) comes a pipeline latency after clock t. A tick driven by ``/clock`` would
then see a different set of inputs from run to run, and a replay at another rate would change the
outputs. Time taken from the stamps of the inputs the node has been given makes the node's sequence of
(input | tick) events a function of the stamps alone: the same in lock-step, at xN and at maximum speed
for what the replay publishes (tests/nodes/test_clock.py), and the same from run to run in lock-step for
derived topics too. In a real-time replay a derived topic comes a pipeline latency late, as on the robot:
it waits up to ``max_delay_s``, and past that it is late and counted.
Nodes that do not merge by stamp (sources such as the camera and the replay, tools such as the monitor and
the recorder) stay on the wall clock: they pace the graph or measure it in real time.

**Stamp-ordered inputs.** A node with several subscriptions sets ``merge_inputs_by_stamp =
StampMerge(max_delay_s=...)``; each input is then held until every subscription has been heard up to its
stamp (topics arrive in order per topic, so a subscription whose newest message is stamped s will send
nothing older) or until it has waited ``max_delay_s`` of wall time, and inputs go to the node in
``(stamp_ns, subscription order)`` order. An input stamped before one already delivered is *late*: it is
counted (``late:<topic>`` in diagnostics, a warning the first time) and, per ``StampMerge.late``, either
delivered at once, out of order, for a node that can re-run from a past stamp (it sees a stamp older than
one it already had), or dropped (also counted in the topic's ``dropped``). It is never silently reordered.
Nodes that do not merge pay nothing: their inputs take the runtime's direct path, as before.

**With a lock-step replay** (which publishes everything up to camera frame s, then waits for an answer
stamped >= s): a merging node's inputs and ticks are the same from run to run, whatever its own or its
upstream's latency, because the replay holds back everything stamped after s. Let the replay
wait for a per-frame answer (``posenet/fix``, its default), not for a tick-driven output: a tick at T
fires only once an input stamped after T has been delivered, so a ``localization/pose`` stamped >= s
exists only after the replay has moved past s. A filter that wants a pose per frame publishes one when
it handles the frame's fix.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the runtime imports this module, not the other way round
    import msgspec

    from nodes.runtime import Node

USE_SIM_TIME_ENV = "STREETLOC_USE_SIM_TIME"
MAX_CATCH_UP_TICKS = 100_000  # ticks fired after one jump of the graph clock at most (a bad stamp)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def use_sim_time_from_env(env: Mapping[str, str] | None = None) -> bool:
    """``STREETLOC_USE_SIM_TIME`` as a flag; ValueError naming the variable for another value."""
    value = (os.environ if env is None else env).get(USE_SIM_TIME_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{USE_SIM_TIME_ENV}={value!r} is not a flag (1/true/yes/on or 0/false/no/off)")


class GraphClock:
    """Time as a node sees it (ns since the Unix epoch). Wall clock, or with ``sim`` the largest input
    stamp delivered so far (0 before the first); it never goes back."""

    def __init__(self, sim: bool = False) -> None:
        self.sim = sim
        self._now_ns = 0

    def now_ns(self) -> int:
        return self._now_ns if self.sim else time.time_ns()

    def advance(self, stamp_ns: int) -> None:
        """Move stamp time to ``stamp_ns`` if it is later (sim only; the wall clock moves by itself)."""
        if stamp_ns > self._now_ns:
            self._now_ns = stamp_ns

    def restart(self) -> None:
        """Start stamp time over (0 until the next input): the inputs' stamps went back for good (a replay
        looping to the drive's start; ``NodeRunner`` calls this), which is not a clock going backwards."""
        self._now_ns = 0


WALL_CLOCK = GraphClock(sim=False)  # stateless: shared by every node not given a clock by a runner


@dataclass(frozen=True)
class StampMerge:
    """A node's request for its inputs merged in ``stamp_ns`` order.

    ``max_delay_s``: wall time an input waits at most for the other subscriptions to catch up with its
    stamp (the latency the node accepts to get its inputs in order). ``late``: what becomes of an input
    stamped before one already delivered: ``"deliver"`` (at once, out of order, counted: for a filter
    that re-runs from a past stamp) or ``"drop"`` (counted)."""

    max_delay_s: float = 0.1
    late: Literal["deliver", "drop"] = "deliver"

    def __post_init__(self) -> None:
        if not self.max_delay_s >= 0:
            raise ValueError(f"StampMerge: max_delay_s={self.max_delay_s} is not >= 0")
        if self.late not in ("deliver", "drop"):
            raise ValueError(f"StampMerge: late={self.late!r} is not 'deliver' or 'drop'")


@dataclass(order=True)
class Held:
    """One input inside the merger. Ordered by (stamp, subscription index, arrival order)."""

    stamp_ns: int
    index: int
    seq: int
    topic: str = field(compare=False)
    item: Any = field(compare=False)
    arrival_ns: int = field(compare=False)  # wall clock when it entered the merger
    late: bool = field(default=False, compare=False)
    released: bool = field(default=False, compare=False)


class StampMerger:
    """Merges the inputs of ``topics`` in stamp order with a bounded wait (see the module docstring).

    ``push`` each input as it arrives, then ``pop_ready`` what may go to the node now. Times are wall
    clock ns passed in, so tests need neither sockets nor sleeps."""

    def __init__(self, topics: Sequence[str], policy: StampMerge) -> None:
        if not topics:
            raise ValueError("merge_inputs_by_stamp: the node subscribes to nothing")
        self.topics = list(topics)
        self.policy = policy
        self.max_delay_ns = int(policy.max_delay_s * 1e9)
        self._index = {t: i for i, t in enumerate(self.topics)}
        self.heard_ns: dict[str, int | None] = {t: None for t in self.topics}  # newest stamp per input
        self.delivered_ns: int | None = None  # newest stamp handed out
        self.late: dict[str, int] = {t: 0 for t in self.topics}
        self.dropped: dict[str, int] = {t: 0 for t in self.topics}
        self._heap: list[Held] = []
        self._arrivals: deque[Held] = deque()  # arrival order; the front expires first
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, topic: str, stamp_ns: int, item: Any, now_ns: int) -> Held | None:
        """Take one input. Returns it, or None when it was late and the policy drops it. A late input
        (``held.late``) is counted in ``late`` either way."""
        index = self._index[topic]
        heard = self.heard_ns[topic]
        self.heard_ns[topic] = stamp_ns if heard is None else max(heard, stamp_ns)
        is_late = self.delivered_ns is not None and stamp_ns < self.delivered_ns
        if is_late:
            self.late[topic] += 1
            if self.policy.late == "drop":
                self.dropped[topic] += 1
                return None
        held = Held(stamp_ns, index, next(self._seq), topic, item, now_ns, is_late)
        heapq.heappush(self._heap, held)
        self._arrivals.append(held)
        return held

    def release_up_to_ns(self, now_ns: int) -> int | None:
        """Inputs stamped at or before this may go now: every subscription has been heard up to it, or
        an input stamped there has waited ``max_delay_s`` (everything before it then goes too)."""
        heard = self.heard_ns.values()
        bound = None if None in heard else min(heard)  # type: ignore[type-var]
        if self.delivered_ns is not None:  # equal stamps, and late inputs under "deliver", go at once
            bound = self.delivered_ns if bound is None else max(bound, self.delivered_ns)
        expired_before = now_ns - self.max_delay_ns
        for held in self._arrivals:
            if held.arrival_ns > expired_before:
                break
            if not held.released:
                bound = held.stamp_ns if bound is None else max(bound, held.stamp_ns)
        return bound

    def pop_ready(self, now_ns: int) -> list[Held]:
        """The inputs that may go to the node now, in the order to hand them over."""
        bound = self.release_up_to_ns(now_ns)
        out: list[Held] = []
        if bound is None:
            return out
        heap = self._heap
        while heap and heap[0].stamp_ns <= bound:
            held = heapq.heappop(heap)
            held.released = True
            out.append(held)
            if self.delivered_ns is None or held.stamp_ns > self.delivered_ns:
                self.delivered_ns = held.stamp_ns
        arrivals = self._arrivals
        while arrivals and arrivals[0].released:
            arrivals.popleft()
        return out

    def pop_all(self) -> list[Held]:
        """Every input held, in the order to hand them over, without waiting for the other inputs (before a
        ``restart``: what came before the inputs went back is delivered first)."""
        out = sorted(self._heap)
        for held in out:
            held.released = True
            if self.delivered_ns is None or held.stamp_ns > self.delivered_ns:
                self.delivered_ns = held.stamp_ns
        self._heap.clear()
        self._arrivals.clear()
        return out

    def restart(self) -> None:
        """Forget the stamps heard and delivered (``late``/``dropped`` counts stay): the inputs start over
        at earlier stamps (a replay looping), which must not make every new input late. Call ``pop_all``
        first; what is still held is dropped."""
        for topic in self.topics:
            self.heard_ns[topic] = None
        self.delivered_ns = None
        self._heap.clear()
        self._arrivals.clear()

    def next_deadline_ns(self) -> int | None:
        """Wall time at which the oldest held input stops waiting; None when nothing is held."""
        for held in self._arrivals:
            if not held.released:
                return held.arrival_ns + self.max_delay_ns
        return None


class TickSchedule:
    """Ticks of ``hz`` on stamp time: at multiples of the period since the epoch, from the first graph
    time seen, so that replays started at different places or run at different rates tick at the same
    graph times."""

    def __init__(self, hz: float) -> None:
        if not hz > 0:
            raise ValueError(f"tick rate {hz} Hz is not > 0")
        self.period_ns = max(1, round(1e9 / hz))
        self.next_ns: int | None = None
        self.skipped = 0  # ticks not fired after a clock jump longer than MAX_CATCH_UP_TICKS periods

    def due(self, before_ns: int) -> Iterator[int]:
        """The tick times not yet fired that are earlier than ``before_ns`` (the stamp about to be
        delivered), in order."""
        if self.next_ns is None:
            self.next_ns = -(-before_ns // self.period_ns) * self.period_ns  # first grid point >= it
        missed = (before_ns - self.next_ns + self.period_ns - 1) // self.period_ns
        if missed > MAX_CATCH_UP_TICKS:
            skip = missed - MAX_CATCH_UP_TICKS
            self.skipped += skip
            self.next_ns += skip * self.period_ns
        while self.next_ns < before_ns:
            tick_ns = self.next_ns
            self.next_ns += self.period_ns
            yield tick_ns


def run_offline(node: Node, messages: Iterable[tuple[str, msgspec.Struct]]) -> list[tuple[str, msgspec.Struct]]:
    """Feed ``messages`` ((topic, msg) in arrival order, e.g. a drive's records) to ``node`` without a
    bus, as the runtime would in a replay, and return what it publishes. A node that merges by stamp gets
    them in (stamp, subscription) order on stamp time, with its ticks in between; any other node gets them
    as given, on the wall clock, without ticks. ``recv_ns`` is the message's stamp."""
    merge = node.merge_inputs_by_stamp
    out: list[tuple[str, msgspec.Struct]] = []
    if merge is None:
        for topic, msg in messages:
            out.extend(node.on_message(topic, msg, msg.header.stamp_ns) or ())  # type: ignore[attr-defined]
        return out
    order = {t: i for i, t in enumerate(node.subscribes)}
    clock = GraphClock(sim=True)
    node.clock = clock
    hz = node.tick_hz()
    schedule = TickSchedule(hz) if hz > 0 else None
    stamped = sorted(((msg.header.stamp_ns, order[topic], i, topic, msg)  # type: ignore[attr-defined]
                      for i, (topic, msg) in enumerate(messages)), key=lambda r: r[:3])
    for stamp_ns, _, _, topic, msg in stamped:
        for tick_ns in schedule.due(stamp_ns) if schedule else ():
            clock.advance(tick_ns)
            out.extend(node.on_tick(tick_ns) or ())
        clock.advance(stamp_ns)
        out.extend(node.on_message(topic, msg, stamp_ns) or ())
    return out
