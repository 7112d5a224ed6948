"""What a node is: a pure class (``Node``) plus a thin process shell (``NodeRunner`` / ``node_main``).

A ``Node`` subclass declares its parameters (a msgspec Struct with documented defaults), the topics it
subscribes to (with the delivery each wants) and publishes, and handles inputs in ``on_message`` and
timers in ``on_tick``, returning ``(topic, message)`` pairs to publish. It never touches a socket, so
tests drive it directly (``nodes.clock.run_offline``, or its handlers called by hand).

Time: a node that needs "now" reads ``Node.now_ns()`` (not ``time``). Live that is the wall clock; in a
replay (``use_sim_time``) a node that sets ``merge_inputs_by_stamp`` runs on the graph clock taken from its
inputs' stamps, its ticks fire at graph-clock times and its inputs come in stamp order with a bounded wait
for late ones, so that a replay in lock-step, at xN or at full speed gives it the same inputs and ticks.
``nodes.clock`` says why (stamp time rather than a /clock topic), and how late inputs are handled.

Streams that start over: a node whose input's publisher comes back as a new incarnation stamped well before
its last message (a replay looping) gets ``on_input_restart`` and a new incarnation of each of its
publishers, so that its outputs of the new pass are a stream of their own and not stamps going back
(docs/wire_format.md, "Header"); a merging node's held inputs are delivered first, its merger, graph clock
and ticks start over, and what its other inputs' old incarnations still send (the previous pass's tail) is
dropped until they restart too.

The shell owns the sockets: it decodes inputs (a malformed message is logged once per kind, counted in
diagnostics and skipped), calls the node, publishes its outputs, publishes ``diagnostics`` at 1 Hz, and
stops cleanly within a fraction of a second on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import ClassVar

import msgspec
import zmq

from nodes.bus import security
from nodes.bus.messages import Diagnostics, Header, TopicStats
from nodes.bus.pubsub import MAX_TRACKED_PUBLISHERS, Delivery, Publisher, Subscriber
from nodes.bus.topics import BusConfig, get_topic
from nodes.bus.wire import DecodeError
from nodes.clock import (
    WALL_CLOCK,
    GraphClock,
    Held,
    StampMerge,
    StampMerger,
    TickSchedule,
    use_sim_time_from_env,
)

# Parameters are declared once in each node's Params Struct; nodes/params.py derives loading, options
# and docs from it. describe_params/load_params stay importable from here.
from nodes.params import (  # noqa: F401
    add_params_arguments,
    checked_params,
    describe_params,
    given_params,
    load_params,
    params_text,
)
from perception.drives.topics import DIAGNOSTICS_TOPIC

Outputs = Iterable[tuple[str, msgspec.Struct]]
DIAGNOSTICS_PERIOD_S = 1.0
_POLL_SLICE_MS = 50  # upper bound on how long a stop request waits
# A new incarnation of an input's publisher stamped this much before that publisher's last message starts
# over in time (a replay looping to its drive's start): the node's outputs start over too. Less is a late
# input (a respawned driver sending what it had buffered), for the merger's late policy.
INPUT_RESTART_MIN_BACK_NS = 1_000_000_000


class NoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A node without parameters."""


class Node:
    """Base of every node's pure logic. Subclasses set the class attributes and override handlers."""

    name: ClassVar[str] = "node"  # default instance name (a launch file may rename)
    Params: ClassVar[type[msgspec.Struct]] = NoParams
    subscribes: ClassVar[dict[str, Delivery]] = {}
    publishes: ClassVar[tuple[str, ...]] = ()
    # Inputs in stamp order with a bounded wait, and (in replay) the graph clock; None: socket order,
    # wall clock. A node whose setting depends on its params sets it on the instance in ``__init__``.
    merge_inputs_by_stamp: ClassVar[StampMerge | None] = None
    clock: GraphClock = WALL_CLOCK  # replaced by the runner (or ``run_offline``) that runs the node
    # Raised by a node whose outputs start over (a replay looping to the drive's start): the shell then
    # gives every publisher a new incarnation, so that subscribers see a restarted stream whose stamps
    # go back, not a clock going backwards (docs/wire_format.md, "Header").
    stream_epoch: int = 0
    # When an input's publisher comes back as a new incarnation whose stamps go back by more than a second
    # (an upstream replay looping; ``INPUT_RESTART_MIN_BACK_NS``), the shell gives this node's publishers
    # a new incarnation too and calls ``on_input_restart``: outputs derived from the new stamps start a new stream instead of going back
    # in stamp within the old one (which every subscriber would reject). False for a node whose outputs
    # do not follow its inputs' stamps (the replay, which only reads answers).
    restarts_with_inputs: ClassVar[bool] = True

    def __init__(self, params: msgspec.Struct | None = None) -> None:
        self.params = checked_params(params, self.name) if params is not None else self.Params()

    def now_ns(self) -> int:
        """The graph clock (ns since the Unix epoch): wall time live; in replay, for a node that merges
        its inputs by stamp, the newest input stamp delivered (in ``on_batch``: the batch's newest), or
        the tick being fired."""
        return self.clock.now_ns()

    def tick_hz(self) -> float:
        """Rate of ``on_tick`` calls; 0 for none. On the graph clock for a node on stamp time."""
        return 0.0

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        """Handle one decoded input; return messages to publish."""
        return ()

    def on_tick(self, now_ns: int) -> Outputs:
        """Periodic work at ``tick_hz``; ``now_ns`` is the graph-clock time of the tick (``now_ns()``);
        return messages to publish."""
        return ()

    def max_batch(self, topic: str) -> int:
        """How many already-queued messages of ``topic`` the shell may hand to ``on_batch`` at once
        (a CNN that fell behind catches up in one forward pass). 1: one at a time via ``on_message``."""
        return 1

    def on_batch(self, topic: str, msgs: list[msgspec.Struct], recv_ns: int) -> Outputs:
        """Handle several queued inputs of one topic together; by default one ``on_message`` each."""
        out: list[tuple[str, msgspec.Struct]] = []
        for msg in msgs:
            out.extend(self.on_message(topic, msg, recv_ns) or ())
        return out

    def on_reject(self, topic: str, reason: str, detail: str) -> None:
        """An input of ``topic`` was rejected before reaching the node (malformed, a field out of bounds,
        a stamp ahead of the clock or going back: ``reason`` is the DecodeError kind). The shell has
        counted it already (``decode:<topic>:<reason>``); a node that reports on its inputs (the
        monitor) overrides this."""

    def on_input_restart(self, topic: str) -> None:
        """The publisher of ``topic`` restarted with stamps going back (a replay starting its drive over):
        what comes next starts over in time. Called by the shell before the first input of the new stream
        is handed over, after the inputs held before it (a merging node's) were delivered; the shell then
        gives the node's publishers a new incarnation. A node keeping state over time (a filter) starts
        it again here; by default nothing."""

    def take_errors(self) -> list[tuple[str, str]]:
        """Errors met in the last handler call that did not stop it, as (kind, detail) pairs: a batch
        with one bad frame still publishes the others and reports the bad one here. Counted in
        diagnostics by the shell."""
        return []

    def is_ready(self) -> bool:
        """Reported in diagnostics; the launcher can wait on it before starting dependants."""
        return True

    def is_finished(self) -> bool:
        """True when the node has nothing left to do (a replay at the end of its drive): the shell
        then stops and the process exits 0."""
        return False

    def health(self) -> dict[str, str]:
        """Problems the node sees now, kind -> one-line detail (``{"stale:camera/image": "no message
        for 3.1 s"}``); empty when healthy. While any is present the diagnostics say status "warn",
        count the kind once per period in ``errors`` and carry the details in ``last_error``."""
        return {}

    @classmethod
    def declared_topics(cls, params: msgspec.Struct) -> tuple[dict[str, Delivery], tuple[str, ...]]:
        """(subscribes, publishes) of an instance built with ``params``, without building it (which may
        load a model): the launcher's ``--check`` reads the graph from this. A node whose topics depend
        on its parameters overrides it and sets ``self.subscribes``/``self.publishes`` in ``__init__``
        to the same; a ValueError names a parameter that gives no usable topic."""
        return dict(cls.subscribes), tuple(cls.publishes)

    def close(self) -> None:
        """Release resources (files, models)."""


# -- topic remaps -------------------------------------------------------------------------------

def resolve_remaps(subscribes: Iterable[str], publishes: Iterable[str], remaps: Mapping[str, str],
                   node: str = "node") -> dict[str, str]:
    """Declared topic -> bus topic for every topic a node subscribes to or publishes. A remap renames a
    declared topic to another table topic carrying the same message type (``posenet/fix`` ->
    ``gps/fix``: both GeoFix); ValueError naming the node and the remap otherwise."""
    declared = [*subscribes, *publishes]
    resolved = {t: t for t in declared}
    for src, dst in remaps.items():
        if src not in resolved:
            raise ValueError(f"node {node}: remap {src!r} -> {dst!r}: the node neither subscribes to nor "
                             f"publishes {src!r} (its topics: {', '.join(declared) or 'none'})")
        src_topic, dst_topic = get_topic(src), get_topic(dst)
        if dst_topic.fan_in or src_topic.fan_in:
            raise ValueError(f"node {node}: remap {src!r} -> {dst!r}: fan-in topics cannot be remapped")
        if src_topic.message_type is not dst_topic.message_type:
            raise ValueError(f"node {node}: remap {src!r} -> {dst!r}: type mismatch: the node uses "
                             f"{src!r} as {src_topic.type_name}, {dst!r} carries {dst_topic.type_name}")
        resolved[src] = dst
    return resolved


# -- the process shell --------------------------------------------------------------------------

class _Stats:
    def __init__(self) -> None:
        self.count: dict[tuple[str, str], int] = defaultdict(int)
        self.period_count: dict[tuple[str, str], int] = defaultdict(int)
        self.dropped: dict[tuple[str, str], int] = defaultdict(int)
        self.latency_ms: list[float] = []
        self.errors: dict[str, int] = defaultdict(int)
        self.period_errors = 0
        self.last_error = ""


class NodeRunner:
    """Runs a ``Node`` on the bus until ``stop()`` or a signal. ``remaps`` (declared topic -> bus topic,
    see ``resolve_remaps``) moves the node onto other topics; the node itself still sees its declared
    names, diagnostics report the bus names. ``use_sim_time`` (default: ``STREETLOC_USE_SIM_TIME``) puts a
    node that merges its inputs by stamp on stamp time (``nodes.clock``); other nodes stay on the wall
    clock whatever it says."""

    def __init__(self, node: Node, *, name: str | None = None, config: BusConfig | None = None,
                 context: zmq.Context | None = None, remaps: Mapping[str, str] | None = None,
                 use_sim_time: bool | None = None) -> None:
        self.node = node
        self.name = name or node.name
        self.config = config or BusConfig.from_env()
        self.log = logging.getLogger(f"streetloc.{self.name}")
        self._context = context or zmq.Context.instance()
        self._stop = False
        self._stats = _Stats()
        self._logged_kinds: set[str] = set()
        self.started_ns = time.time_ns()
        for topic in (*node.subscribes, *node.publishes):
            get_topic(topic)  # fail early, naming the topic
        self.remaps = resolve_remaps(node.subscribes, node.publishes, remaps or {}, self.name)
        # keyed by the declared topic (what the node returns and is handed); sockets on the bus topic
        self.publishers = {t: Publisher(self.remaps[t], node=self.name, config=self.config,
                                        context=self._context)
                           for t in node.publishes}
        self.diagnostics = Publisher(DIAGNOSTICS_TOPIC, node=self.name, config=self.config, context=self._context)
        merge = node.merge_inputs_by_stamp
        # a merging node's inputs go through the merger; every other node keeps the direct path
        self._merger = StampMerger(list(node.subscribes), merge) if merge is not None else None
        if use_sim_time is None:
            use_sim_time = use_sim_time_from_env()
        self.clock = GraphClock(sim=bool(use_sim_time) and self._merger is not None)
        node.clock = self.clock
        tick_hz = node.tick_hz()
        self._schedule = TickSchedule(tick_hz) if self.clock.sim and tick_hz > 0 else None
        self.subscribers = {t: Subscriber(self.remaps[t], delivery=d, config=self.config, context=self._context)
                            for t, d in node.subscribes.items()}
        self._stream_epoch = node.stream_epoch
        self._input_restarts: dict[str, int] = {}  # bus topic -> publisher restarts already logged
        # (declared topic, publishing node) -> (incarnation, newest stamp), least recently heard first: to
        # tell inputs that start over in time (a new incarnation stamped before the last) from a respawn
        self._input_streams: dict[tuple[str, str], tuple[int, int]] = {}
        # after the inputs went back: the other inputs' publishers (-> their old incarnation) that have not
        # restarted yet; what they still send belongs to before the restart
        self._joining: dict[tuple[str, str], int] = {}
        self.inputs_went_back = 0  # times an input started over in time (each restarted the outputs)

    def stop(self, *_: object) -> None:
        self._stop = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def record_error(self, kind: str, detail: str) -> None:
        """Count an error; log the first of each kind (then only the diagnostics counters grow)."""
        self._stats.errors[kind] += 1
        self._stats.period_errors += 1
        self._stats.last_error = f"{kind}: {detail}"[:300]
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            self.log.warning("%s: %s (further errors of this kind are counted in diagnostics)", kind, detail)

    def _publish(self, outputs: Outputs | None, recv_ns: int | None) -> None:
        if self.node.stream_epoch != self._stream_epoch:  # the node starts its outputs over
            self._stream_epoch = self.node.stream_epoch
            for pub in self.publishers.values():
                pub.restart_stream()
        for topic, msg in outputs or ():
            pub = self.publishers.get(topic)
            if pub is None:
                self.record_error("undeclared-output", f"node published on {topic!r}, not in its publishes")
                continue
            try:
                pub.publish(msg, recv_ns=recv_ns)
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                self.record_error(f"encode:{pub.topic.name}", str(exc))
                continue
            self._stats.count[(pub.topic.name, "out")] += 1
            self._stats.period_count[(pub.topic.name, "out")] += 1

    def _handle(self, topic: str, sub: Subscriber) -> None:
        """Take one message of ``topic`` (or, up to the node's ``max_batch``, all that are queued),
        decode, hand to the node, publish what it returns."""
        bus_topic = sub.topic.name  # differs from the declared ``topic`` when remapped
        limit = max(1, int(self.node.max_batch(topic)))
        msgs: list[msgspec.Struct] = []
        recv_ns = 0
        while len(msgs) < limit:
            frames = sub.recv_frames(0)
            if frames is None:
                break
            recv_ns = recv_ns or time.time_ns()
            msg = self._decode(topic, sub, frames)
            if msg is None:
                continue
            if self._input_stream(topic, msg) == "back":
                if msgs:  # what came before the restart goes out in the old stream
                    self._deliver(topic, msgs, recv_ns)
                    msgs = []
                self._inputs_restarted(topic, bus_topic)
            msgs.append(msg)
            self._stats.count[(bus_topic, "in")] += 1
            self._stats.period_count[(bus_topic, "in")] += 1
        self._stats.dropped[(bus_topic, "in")] = sub.seq_gaps  # LATEST's skipped frames are gaps too
        self._note_restarts(sub)
        if msgs:
            self._deliver(topic, msgs, recv_ns)

    def _decode(self, topic: str, sub: Subscriber, frames: list) -> msgspec.Struct | None:
        """The decoded message, or None for one that is rejected: counted as ``decode:<bus topic>:<kind>``
        and told to the node (``on_reject``). Nothing a sender can put in the frames escapes from here."""
        bus_topic = sub.topic.name
        try:
            return sub.decode(frames)
        except DecodeError as exc:
            kind, detail = exc.kind, str(exc)
        except Exception as exc:  # noqa: BLE001 - the codec raises only DecodeError; this is the backstop
            kind, detail = "internal", f"{type(exc).__name__}: {exc}"
        self.record_error(f"decode:{bus_topic}:{kind}", detail)
        try:
            self.node.on_reject(topic, kind, detail)
        except Exception as exc:  # noqa: BLE001
            self.record_error(f"handler:{topic}:{type(exc).__name__}", str(exc))
        return None

    def _deliver(self, topic: str, msgs: list[msgspec.Struct], recv_ns: int) -> None:
        """Hand decoded inputs of one topic to the node; publish what it returns. A batch whose handler
        raises is handed over again one message at a time, so that one bad message (a 0x0 frame a model
        chokes on) costs only its own output, never its neighbours' (counted as ``handler:<topic>:<exc>``)."""
        t0 = time.perf_counter()
        if len(msgs) == 1:
            outputs = self._call(topic, msgs[0], recv_ns)
        else:
            try:
                outputs = list(self.node.on_batch(topic, msgs, recv_ns) or ())
            except Exception as exc:  # noqa: BLE001 - one bad member: isolate it below
                self.log.debug("batch handler error; retrying one by one", exc_info=True)
                self.record_error(f"batch:{topic}:{type(exc).__name__}", f"batch of {len(msgs)} failed, "
                                  f"retried one by one: {exc}")
                outputs = []
                for msg in msgs:
                    outputs.extend(self._call(topic, msg, recv_ns))
        for kind, detail in self.node.take_errors():
            self.record_error(kind, detail)
        self._stats.latency_ms.append((time.perf_counter() - t0) * 1000.0 / len(msgs))
        self._publish(outputs, recv_ns)

    def _input_stream(self, topic: str, msg: msgspec.Struct) -> str:
        """Where an input stands with respect to its publisher's restarts: ``"back"`` when it opens a new
        incarnation of its publisher stamped more than ``INPUT_RESTART_MIN_BACK_NS`` before that
        publisher's last message (a replay looping: the node's outputs must start over too), ``"stale"``
        when it comes, after such a restart on another input, from a publisher that has not restarted yet (the tail of the previous pass: its outputs
        for the old stamps), ``"ok"`` otherwise. A respawned publisher, whose stamps go on, is "ok"."""
        if not self.node.restarts_with_inputs:
            return "ok"
        header = msg.header  # type: ignore[attr-defined]
        key = (topic, header.trace[-1].node if header.trace else "")
        incarnation, stamp_ns = header.incarnation, header.stamp_ns
        streams = self._input_streams
        last = streams.pop(key, None)
        same = last is not None and last[0] == incarnation
        streams[key] = (incarnation, max(stamp_ns, last[1]) if same and last is not None else stamp_ns)
        if len(streams) > MAX_TRACKED_PUBLISHERS:
            del streams[next(iter(streams))]
        old = self._joining.get(key)
        if old is not None:
            if old == incarnation:
                return "stale"
            del self._joining[key]  # this publisher restarted too: it joins the new pass
            return "ok"
        if last is not None and not same and stamp_ns < last[1] - INPUT_RESTART_MIN_BACK_NS:
            self._joining = {k: v[0] for k, v in streams.items() if k != key}
            return "back"
        return "ok"

    def _inputs_restarted(self, topic: str, bus_topic: str) -> None:
        """An input started over in time: deliver what a merging node still holds, start its merger, graph
        clock and tick schedule over, tell the node (``on_input_restart``) and give every publisher a new
        incarnation, so that the outputs of the new pass are a new stream, not stamps going back."""
        self.inputs_went_back += 1
        self.log.info("%s: its publisher restarted with earlier stamps (a replay starting over)%s (%d so far)",
                      bus_topic, "; this node's outputs start over as a new incarnation" if self.publishers else "",
                      self.inputs_went_back)
        merger = self._merger
        if merger is not None:
            self._release(everything=True)
            merger.restart()
            self.clock.restart()
            if self._schedule is not None:
                self._schedule = TickSchedule(self.node.tick_hz())
        try:
            self.node.on_input_restart(topic)
        except Exception as exc:  # noqa: BLE001 - counted; the node goes on
            self.log.debug("input restart handler error", exc_info=True)
            self.record_error(f"handler:{topic}:{type(exc).__name__}", str(exc))
        for pub in self.publishers.values():
            pub.restart_stream()

    def _note_restarts(self, sub: Subscriber) -> None:
        """Say in the log when a publisher of an input came back as a new incarnation (a respawned node,
        a replay starting over): its seq restarts at 0, which is not counted as lost messages."""
        seen = self._input_restarts.get(sub.topic.name, 0)
        if sub.restarts > seen:
            self._input_restarts[sub.topic.name] = sub.restarts
            self.log.info("%s: its publisher restarted (new incarnation, seq from 0; %d restart%s seen)",
                          sub.topic.name, sub.restarts, "" if sub.restarts == 1 else "s")

    def _call(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> list[tuple[str, msgspec.Struct]]:
        """``on_message`` of one input; its outputs, or none when it raises (counted, the node goes on)."""
        try:
            return list(self.node.on_message(topic, msg, recv_ns) or ())
        except Exception as exc:  # noqa: BLE001 - a bad input must not kill the node
            self.log.debug("handler error", exc_info=True)
            self.record_error(f"handler:{topic}:{type(exc).__name__}", str(exc))
            return []

    def _take(self, topic: str, sub: Subscriber) -> None:
        """Move every message queued on ``sub`` into the merger (a merging node), counting late ones.
        Taking all that is queued before deciding what has waited too long means an input counts as late
        only when its message had not arrived, not when this node was busy."""
        bus_topic = sub.topic.name
        merger = self._merger
        assert merger is not None
        for _ in range(sub.topic.queue_depth):  # bounded: a fast publisher must not starve the loop
            frames = sub.recv_frames(0)
            if frames is None:
                break
            msg = self._decode(topic, sub, frames)
            if msg is None:
                continue
            self._stats.count[(bus_topic, "in")] += 1
            self._stats.period_count[(bus_topic, "in")] += 1
            verdict = self._input_stream(topic, msg)
            if verdict == "stale":  # the previous pass's tail: its stamps are from before the restart
                merger.dropped[topic] += 1
                continue
            if verdict == "back":
                self._inputs_restarted(topic, bus_topic)
            stamp_ns = msg.header.stamp_ns  # type: ignore[attr-defined]
            delivered_ns = merger.delivered_ns
            held = merger.push(topic, stamp_ns, msg, time.time_ns())
            if held is None or held.late:
                assert delivered_ns is not None
                self.record_error(f"late:{bus_topic}", f"stamp {stamp_ns} arrived after stamp {delivered_ns} "
                                  f"was delivered ({(delivered_ns - stamp_ns) / 1e6:.1f} ms older; raise "
                                  f"max_delay_s={merger.policy.max_delay_s}?): "
                                  f"{'dropped' if held is None else 'delivered out of order'}")
        self._stats.dropped[(bus_topic, "in")] = sub.seq_gaps + merger.dropped[topic]
        self._note_restarts(sub)

    def _release(self, everything: bool = False) -> None:
        """Hand the merger's ready inputs (``everything``: all it holds) to the node in stamp order, runs
        of one topic batched up to ``max_batch``; on stamp time, fire the ticks due before each."""
        merger = self._merger
        assert merger is not None
        ready = merger.pop_all() if everything else merger.pop_ready(time.time_ns())
        i = 0
        while i < len(ready):
            first = ready[i]
            if self._schedule is not None and not first.late:
                for tick_ns in self._schedule.due(first.stamp_ns):
                    self.clock.advance(tick_ns)  # now_ns() in on_tick is the tick's time
                    self._tick(tick_ns)
            limit = max(1, int(self.node.max_batch(first.topic)))
            group: list[Held] = [first]
            i += 1
            # a run of one topic, with no tick due inside it (the clock would pass the tick otherwise)
            while (i < len(ready) and len(group) < limit and ready[i].topic == first.topic
                   and ready[i].late == first.late
                   and (self._schedule is None or self._schedule.next_ns is None
                        or ready[i].stamp_ns <= self._schedule.next_ns)):
                group.append(ready[i])
                i += 1
            if self.clock.sim:
                self.clock.advance(max(h.stamp_ns for h in group))
            self._deliver(first.topic, [h.item for h in group], first.arrival_ns)
        if self._schedule is not None and self._schedule.skipped:
            self.record_error("clock-jump", f"{self._schedule.skipped} ticks skipped after a jump of the "
                              "graph clock (an input stamp far ahead of the others)")
            self._schedule.skipped = 0

    def _tick(self, now_ns: int | None = None) -> None:
        """One ``on_tick``: at ``now_ns`` on stamp time, at the wall clock's now otherwise."""
        try:
            outputs = list(self.node.on_tick(time.time_ns() if now_ns is None else now_ns) or ())
        except Exception as exc:
            self.log.debug("tick error", exc_info=True)
            self.record_error(f"tick:{type(exc).__name__}", str(exc))
            return
        self._publish(outputs, None)

    def diagnostics_message(self, period_s: float) -> Diagnostics:
        s = self._stats
        lat = sorted(s.latency_ms)
        topics = [TopicStats(topic=t, direction=d, count=n, rate_hz=s.period_count[(t, d)] / max(period_s, 1e-9),
                             dropped=s.dropped[(t, d)])
                  for (t, d), n in sorted(s.count.items())]
        for t in self.node.subscribes:
            if (self.remaps[t], "in") not in s.count:
                topics.append(TopicStats(topic=self.remaps[t], direction="in", count=0, rate_hz=0.0))
        try:
            problems = dict(self.node.health())
        except Exception as exc:  # a broken health check is itself a problem, not a crash
            problems = {f"health:{type(exc).__name__}": str(exc)}
        for kind in problems:
            s.errors[kind] += 1  # once per period while the problem lasts
        now = time.time_ns()
        return Diagnostics(
            header=Header(stamp_ns=now, frame_id=self.name),
            node=self.name, pid=os.getpid(), uptime_s=(now - self.started_ns) / 1e9,
            status="warn" if s.period_errors or problems else "ok", topics=topics,
            latency_ms_p50=lat[len(lat) // 2] if lat else 0.0, latency_ms_max=lat[-1] if lat else 0.0,
            errors=dict(s.errors), last_error="; ".join(problems.values())[:300] if problems else s.last_error,
            ready=bool(self.node.is_ready()),
        )

    def spin(self, duration_s: float | None = None) -> None:
        """Process inputs, ticks and diagnostics until stopped (or for ``duration_s``)."""
        poller = zmq.Poller()
        by_socket = {}
        for topic, sub in self.subscribers.items():
            poller.register(sub.socket, zmq.POLLIN)
            by_socket[sub.socket] = (topic, sub)
        tick_hz = self.node.tick_hz()
        # on stamp time, ticks come from the inputs' stamps (``_release``), not from this loop
        tick_period_s = 1.0 / tick_hz if tick_hz > 0 and self._schedule is None else None
        merger = self._merger
        now = time.monotonic()
        end = now + duration_s if duration_s is not None else None
        next_tick = now if tick_period_s else float("inf")
        next_diag = now + DIAGNOSTICS_PERIOD_S
        last_diag = now
        while not self._stop and not self.node.is_finished():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            wait_s = min(next_tick, next_diag, now + _POLL_SLICE_MS / 1000, end or float("inf")) - now
            if merger is not None:
                deadline_ns = merger.next_deadline_ns()
                if deadline_ns is not None:  # wake when the oldest held input stops waiting
                    wait_s = min(wait_s, (deadline_ns - time.time_ns()) / 1e9 + 0.001)
            # rounded up: a wait under 1 ms truncated to poll(0) would spin until the tick, a core burnt
            # (a 1 kHz ticker, the replay, spent more CPU per frame than PoseNet did)
            events = poller.poll(max(0, math.ceil(wait_s * 1000))) if by_socket else time.sleep(max(0.0, wait_s))
            if merger is None:
                for sock, _ in events or ():
                    self._handle(*by_socket[sock])
            else:
                for sock, _ in events or ():
                    self._take(*by_socket[sock])
                self._release()
            now = time.monotonic()
            if tick_period_s and now >= next_tick:
                self._tick()
                # keep the schedule, but never try to catch up a backlog of missed ticks
                next_tick = max(next_tick + tick_period_s, now)
            if now >= next_diag:
                self.diagnostics.publish(self.diagnostics_message(now - last_diag))
                self._stats.period_count.clear()
                self._stats.latency_ms.clear()
                self._stats.period_errors = 0
                last_diag, next_diag = now, now + DIAGNOSTICS_PERIOD_S

    def close(self) -> None:
        try:
            self.node.close()
        finally:
            for sock in (*self.publishers.values(), *self.subscribers.values(), self.diagnostics):
                sock.close()


def setup_logging(name: str) -> None:
    """Log lines of a node process on stderr, prefixed with its name; level from STREETLOC_LOG_LEVEL."""
    logging.basicConfig(level=os.environ.get("STREETLOC_LOG_LEVEL", "INFO"),
                        format=f"[{name}] %(levelname)s %(message)s", stream=sys.stderr)


def serve(runner: NodeRunner, duration_s: float | None = None) -> int:
    """The process shell, the one every node process runs (``node_main``, ``streetloc replay``,
    ``streetloc record``): spin ``runner`` until SIGINT/SIGTERM, the node finishes or ``duration_s``
    passes, then close it and deliver what is still queued. Returns the exit code, 0."""
    runner.install_signal_handlers()
    try:
        runner.spin(duration_s)
    finally:
        runner.close()
        # deliver what is still queued (bounded by the publishers' linger) before the process exits;
        # the CurveZMQ ZAP handler, if any, is stopped first (its socket would hold term() forever)
        security.terminate(zmq.Context.instance())
    return 0


def node_parser(node_cls: type[Node], prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of a node process: the shell's options plus one option per parameter of
    ``node_cls.Params`` (see ``nodes.params.add_params_arguments``)."""
    doc = (node_cls.__doc__ or "").strip().splitlines()
    module = node_cls.__module__
    if module == "__main__":  # run as ``python -m nodes.x``: the name it was run by
        module = getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", module)
    parser = argparse.ArgumentParser(prog=prog or f"python -m {module}",
                                     description=doc[0] if doc else None,
                                     epilog="Precedence: defaults, --params-file, --param, the options above.")
    parser.add_argument("--name", default=node_cls.name, help="node instance name (default %(default)s)")
    parser.add_argument("--params-file", help="TOML file of parameters")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter, value as in TOML (repeatable)")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM=TO",
                        help="use table topic TO (same message type) where the node declares FROM (repeatable)")
    parser.add_argument("--list-params", action="store_true", help="print parameters and exit")
    # a parameter named like a shell option (``name``) is still set with --param name=...
    taken = {n.removeprefix("--").replace("-", "_") for n in parser._option_string_actions}
    add_params_arguments(parser.add_argument_group(f"parameters of {node_cls.__name__}"), node_cls.Params,
                         exclude=taken)
    return parser


def node_main(node_cls: type[Node], argv: list[str] | None = None, prog: str | None = None) -> int:
    """The ``main()`` of a node process: ``python -m nodes.<module> [--name N] [--params-file F]
    [--param key=value ...] [--<parameter> VALUE ...]``. Exit 0 on SIGINT/SIGTERM, 2 on bad
    parameters."""
    args = node_parser(node_cls, prog).parse_args(argv)
    if args.list_params:
        print("\n".join(params_text(node_cls.Params, indent="")))
        return 0
    setup_logging(args.name)
    try:
        params = load_params(node_cls.Params, file=args.params_file, overrides=args.param,
                             values=given_params(args, node_cls.Params), node=args.name)
        remaps = {}
        for item in args.remap:
            src, sep, dst = item.partition("=")
            if not sep:
                raise ValueError(f"node {args.name}: --remap {item!r} is not FROM=TO")
            remaps[src.strip()] = dst.strip()
        node = node_cls(params)
        runner = NodeRunner(node, name=args.name, remaps=remaps)
    except (ValueError, OSError) as exc:
        print(f"[{args.name}] error: {exc}", file=sys.stderr)
        return 2
    code = serve(runner)
    if argv is None:  # the process's own command line: it ends here
        # Everything the node owns is closed and its queued messages delivered (serve). Skip the
        # interpreter's teardown: in a CNN node it is 0.8-1.3 s of CPU (collecting and freeing torch's
        # objects), which on a busy machine ran past the launcher's stop_timeout_s and got the node
        # SIGKILLed after a clean stop (BENCHMARKS.md, "Soak").
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    return code
