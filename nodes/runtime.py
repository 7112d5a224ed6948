"""What a node is: a pure class (``Node``) plus a thin process shell (``NodeRunner`` / ``node_main``).

A ``Node`` subclass declares its parameters (a msgspec Struct with documented defaults), the topics it
subscribes to (with the delivery each wants) and publishes, and handles inputs in ``on_message`` and
timers in ``on_tick``, returning ``(topic, message)`` pairs to publish. It never touches a socket, so
tests drive it directly (``nodes.testing.run_offline``).

The shell owns the sockets: it decodes inputs (a malformed message is logged once per kind, counted in
diagnostics and skipped), calls the node, publishes its outputs, publishes ``diagnostics`` at 1 Hz, and
stops cleanly within a fraction of a second on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import msgspec
import zmq

from nodes.bus.messages import Diagnostics, Header, TopicStats
from nodes.bus.pubsub import Delivery, Publisher, Subscriber
from nodes.bus.topics import BusConfig, get_topic
from nodes.bus.wire import DecodeError
from perception.drives.topics import DIAGNOSTICS_TOPIC

Outputs = Iterable[tuple[str, msgspec.Struct]]
DIAGNOSTICS_PERIOD_S = 1.0
_POLL_SLICE_MS = 50  # upper bound on how long a stop request waits


class NoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A node without parameters."""


class Node:
    """Base of every node's pure logic. Subclasses set the class attributes and override handlers."""

    name: ClassVar[str] = "node"  # default instance name (a launch file may rename)
    Params: ClassVar[type[msgspec.Struct]] = NoParams
    subscribes: ClassVar[dict[str, Delivery]] = {}
    publishes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: msgspec.Struct | None = None) -> None:
        self.params = checked_params(params, self.name) if params is not None else self.Params()

    def tick_hz(self) -> float:
        """Rate of ``on_tick`` calls; 0 for none."""
        return 0.0

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        """Handle one decoded input; return messages to publish."""
        return ()

    def on_tick(self, now_ns: int) -> Outputs:
        """Periodic work at ``tick_hz``; return messages to publish."""
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


# -- parameters ---------------------------------------------------------------------------------

def describe_params(params_type: type[msgspec.Struct]) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, description) of each parameter, from the Struct's annotations."""
    info = msgspec.inspect.type_info(params_type)
    rows = []
    for f in info.fields:  # type: ignore[attr-defined]
        t = f.type
        description = ""
        if isinstance(t, msgspec.inspect.Metadata):
            description = (t.extra_json_schema or {}).get("description", "") or ""
            t = t.type
        default = f.default
        if default is msgspec.NODEFAULT and f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()  # msgspec stores an empty list/dict default as a factory
        rows.append((f.name, _type_name(t), default, description))
    return rows


def _type_name(t: msgspec.inspect.Type) -> str:
    return type(t).__name__.removesuffix("Type").lower()


def checked_params(params: msgspec.Struct, node: str = "node") -> msgspec.Struct:
    """``params`` with its constraints checked (``msgspec.Meta`` bounds: constructing a Struct in code,
    as the CLI commands do, does not check them). Raises ValueError naming the parameter."""
    try:
        return msgspec.convert(msgspec.to_builtins(params), type(params))
    except msgspec.ValidationError as exc:
        raise ValueError(f"node {node}: bad parameter: {_friendly(exc)}") from None


def load_params(params_type: type[msgspec.Struct], *, file: str | None = None,
                overrides: Iterable[str] = (), node: str = "node") -> msgspec.Struct:
    """Defaults, then a TOML file (top-level keys, or a ``[params]`` table), then ``key=value``
    overrides. Raises ValueError naming the parameter for an unknown key or an ill-typed value."""
    known = {name for name, *_ in describe_params(params_type)}
    raw: dict[str, Any] = {}
    if file:
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{file}: not valid TOML: {exc}") from None
        raw.update(data.get("params", data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"node {node}: --param {item!r} is not key=value")
        raw[key.strip()] = _parse_value(value.strip())
    for key in raw:
        if key not in known:
            where = f" in {file}" if file else ""
            raise ValueError(f"node {node}: unknown parameter {key!r}{where}; "
                             f"known: {', '.join(sorted(known)) or '(none)'}")
    try:
        return msgspec.convert(raw, params_type, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"node {node}: bad parameter: {_friendly(exc)}") from None


def _parse_value(text: str) -> Any:
    """A TOML literal where it parses (numbers, booleans, arrays, quoted strings), else the raw text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _friendly(exc: msgspec.ValidationError) -> str:
    msg = str(exc)
    if " - at `$." in msg:
        what, _, where = msg.partition(" - at `$.")
        return f"{where.rstrip('`')}: {what}"
    return msg


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
    names, diagnostics report the bus names."""

    def __init__(self, node: Node, *, name: str | None = None, config: BusConfig | None = None,
                 context: zmq.Context | None = None, remaps: Mapping[str, str] | None = None) -> None:
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
        self.subscribers = {t: Subscriber(self.remaps[t], delivery=d, config=self.config, context=self._context)
                            for t, d in node.subscribes.items()}

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
            try:
                msgs.append(sub.decode(frames))
            except DecodeError as exc:
                self.record_error(f"decode:{bus_topic}:{exc.kind}", str(exc))
                continue
            self._stats.count[(bus_topic, "in")] += 1
            self._stats.period_count[(bus_topic, "in")] += 1
        self._stats.dropped[(bus_topic, "in")] = sub.seq_gaps + sub.skipped
        if not msgs:
            return
        t0 = time.perf_counter()
        try:
            if len(msgs) == 1:
                outputs = list(self.node.on_message(topic, msgs[0], recv_ns) or ())
            else:
                outputs = list(self.node.on_batch(topic, msgs, recv_ns) or ())
        except Exception as exc:  # a bad input must not kill the node
            self.log.debug("handler error", exc_info=True)
            self.record_error(f"handler:{topic}:{type(exc).__name__}", str(exc))
            outputs = []
        for kind, detail in self.node.take_errors():
            self.record_error(kind, detail)
        self._stats.latency_ms.append((time.perf_counter() - t0) * 1000.0 / len(msgs))
        self._publish(outputs, recv_ns)

    def _tick(self) -> None:
        try:
            outputs = list(self.node.on_tick(time.time_ns()) or ())
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
        tick_period_s = 1.0 / tick_hz if tick_hz > 0 else None
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
            events = poller.poll(max(0, int(wait_s * 1000))) if by_socket else time.sleep(max(0.0, wait_s))
            for sock, _ in events or ():
                self._handle(*by_socket[sock])
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


def node_main(node_cls: type[Node], argv: list[str] | None = None) -> int:
    """The ``main()`` of a node process: ``python -m nodes.<module> [--name N] [--params-file F]
    [--param key=value ...]``. Exit 0 on SIGINT/SIGTERM, 2 on bad parameters."""
    parser = argparse.ArgumentParser(prog=f"python -m {node_cls.__module__}",
                                     description=(node_cls.__doc__ or "").strip().splitlines()[0]
                                     if node_cls.__doc__ else None)
    parser.add_argument("--name", default=node_cls.name, help="node instance name (default %(default)s)")
    parser.add_argument("--params-file", help="TOML file of parameters")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter (repeatable)")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM=TO",
                        help="use table topic TO (same message type) where the node declares FROM (repeatable)")
    parser.add_argument("--list-params", action="store_true", help="print parameters and exit")
    args = parser.parse_args(argv)
    if args.list_params:
        for name, type_name, default, description in describe_params(node_cls.Params):
            print(f"{name:24s} {type_name:8s} default={default!r:12s} {description}")
        return 0
    logging.basicConfig(level=os.environ.get("STREETLOC_LOG_LEVEL", "INFO"),
                        format=f"[{args.name}] %(levelname)s %(message)s", stream=sys.stderr)
    try:
        params = load_params(node_cls.Params, file=args.params_file, overrides=args.param, node=args.name)
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
    runner.install_signal_handlers()
    try:
        runner.spin()
    finally:
        runner.close()
        # deliver what is still queued (bounded by the publishers' linger) before the process exits
        zmq.Context.instance().term()
    return 0
