"""``streetloc topic list|echo|hz|info|latency``: look at the bus (or a recorded run) from a terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections import deque
from typing import Any

import msgspec
import numpy as np

from nodes.bus.forwarder import Forwarder
from nodes.bus.messages import SCHEMA_VERSION
from nodes.bus.pubsub import Delivery, Subscriber
from nodes.bus.topics import TOPICS, BusConfig, Topic, get_topic
from nodes.bus.wire import DecodeError
from nodes.commands import positive_float


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("topic", help="inspect bus topics: list, echo, hz, info, latency")
    sub = p.add_subparsers(dest="topic_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="the topic table: name, type, rate, endpoint").set_defaults(func=cmd_list)

    e = sub.add_parser("echo", help="print decoded messages (arrays summarised by shape and dtype)")
    e.add_argument("topic")
    e.add_argument("-n", "--count", type=int, default=0, help="stop after N messages (0: never)")
    e.add_argument("--timeout", type=float, default=0.0, help="give up after S seconds without a message")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.set_defaults(func=cmd_echo)

    h = sub.add_parser("hz", help="rate and jitter of a topic, from the messages' stamp_ns")
    h.add_argument("topic")
    h.add_argument("--window", type=int, default=100, help="messages in the moving window")
    h.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: never)")
    h.set_defaults(func=cmd_hz)

    i = sub.add_parser("info", help="a topic's type, rate, endpoint and message fields")
    i.add_argument("topic")
    i.set_defaults(func=cmd_info)

    la = sub.add_parser("latency", help="p50/p95 latency of every hop to a topic, from the header traces",
                        description="Time every hop of the messages' header traces (capture -> camera/replay "
                                    "-> PoseNet -> fusion, detector, segmenter): live from the bus, or from a "
                                    "recorded run (--run RUN.mcap, made by `streetloc replay --record` or "
                                    "`streetloc demo`).",
                        epilog="e.g. streetloc topic latency localization/pose perception/detections "
                               "perception/segmentation --run streetloc-demo/run.mcap")
    la.add_argument("topics", nargs="+", metavar="TOPIC",
                    help="topics whose traces to time (several: hops shared by them count once)")
    la.add_argument("--run", metavar="RUN.mcap", help="read the traces a recording kept instead of the bus")
    la.add_argument("--duration", type=positive_float, default=10.0, metavar="S",
                    help="live: listen this long, s (default %(default)s; Ctrl-C stops early)")
    la.add_argument("--json", action="store_true", help="print the rows as JSON")
    la.set_defaults(func=cmd_latency)


def cmd_list(args: argparse.Namespace) -> int:
    config = BusConfig.from_env()
    rows = [("TOPIC", "TYPE", "RATE_HZ", "RECORDED", "ENDPOINT")]
    for t in TOPICS.values():
        rows.append((t.name, t.type_name, f"{t.rate_hz:g}", "yes" if t.recorded else "no",
                     config.display_endpoint(t) + (" (fan-in)" if t.fan_in else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def summarize(value: Any) -> Any:
    """Builtins for printing: arrays become '<uint8 [480, 640, 3]>' (plus a few values if small)."""
    def hook(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            text = f"<{obj.dtype} {list(obj.shape)}>"
            if obj.size and obj.size <= 8:
                text += f" {obj.tolist()}"
            return text
        raise TypeError(type(obj).__name__)

    return msgspec.to_builtins(value, enc_hook=hook)


@contextlib.contextmanager
def _subscription(topic: Topic, delivery: Delivery):
    """A subscriber; for fan-in topics also a forwarder when no launcher runs one."""
    forwarder = None
    if topic.fan_in:
        with contextlib.suppress(OSError):  # in use: a launcher already forwards
            forwarder = Forwarder().start()
    sub = Subscriber(topic, delivery=delivery)
    try:
        yield sub
    finally:
        sub.close()
        if forwarder is not None:
            forwarder.close()


def _print_yaml(value: Any, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                print(f"{pad}{k}:")
                _print_yaml(v, indent + 1)
            else:
                print(f"{pad}{k}: {v!r}" if isinstance(v, str) and v == "" else f"{pad}{k}: {v}")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict):
                first = True
                for k, item in v.items():
                    print(f"{pad}{'- ' if first else '  '}{k}: {item}")
                    first = False
            else:
                print(f"{pad}- {v}")


def cmd_echo(args: argparse.Namespace) -> int:
    topic = get_topic(args.topic)
    shown = 0
    with _subscription(topic, Delivery.EVERY) as sub:
        last = time.monotonic()
        while args.count <= 0 or shown < args.count:
            frames = sub.recv_frames(0.2)
            msg = None
            if frames is not None:
                try:
                    msg = sub.decode(frames)
                except DecodeError as exc:  # the only error decode raises, whatever the bytes
                    _say_rejected(topic, sub, exc)
                    continue
            if msg is None:
                if args.timeout and time.monotonic() - last > args.timeout:
                    print(f"no message on {topic.name} within {args.timeout:g} s "
                          f"(endpoint {sub.endpoint})", file=sys.stderr)
                    return 1
                continue
            last = time.monotonic()
            data = summarize(msg)
            if args.json:
                print(msgspec.json.encode(data).decode(), flush=True)
            else:
                _print_yaml(data)
                print("---", flush=True)
            shown += 1
    return 0


_REJECTED_SHOWN = 10  # rejections echo prints one by one; after that one line per 100


def _say_rejected(topic: Topic, sub: Subscriber, exc: DecodeError) -> None:
    """One line on stderr per rejected message, then (a flood) one per hundred with the counts."""
    n = sub.decode_errors
    if n <= _REJECTED_SHOWN:
        print(f"# rejected message on {topic.name}: {exc}", file=sys.stderr)
    elif n % 100 == 0:
        print(f"# {n} messages rejected on {topic.name}: {_counts(sub.rejected)}", file=sys.stderr)


def _counts(rejected: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(rejected.items()))


def rate_stats(stamps_ns: list[int]) -> dict[str, float]:
    """Rate and jitter from capture stamps: rate_hz, period mean/min/max/std in ms."""
    periods_ms = [(b - a) / 1e6 for a, b in zip(stamps_ns, stamps_ns[1:], strict=False)]
    periods_ms = [p for p in periods_ms if p > 0]
    if not periods_ms:
        return {}
    mean = statistics.fmean(periods_ms)
    return {"rate_hz": 1000.0 / mean, "mean_ms": mean, "min_ms": min(periods_ms), "max_ms": max(periods_ms),
            "std_ms": statistics.pstdev(periods_ms)}


def cmd_hz(args: argparse.Namespace) -> int:
    topic = get_topic(args.topic)
    stamps: deque[int] = deque(maxlen=max(3, args.window))
    start = time.monotonic()
    next_report = start + 1.0
    with _subscription(topic, Delivery.EVERY) as sub:
        while not args.duration or time.monotonic() - start < args.duration:
            msg = sub.recv(timeout_s=0.1)  # rejected messages are skipped and counted (sub.rejected)
            if msg is not None:
                stamps.append(msg.header.stamp_ns)  # type: ignore[attr-defined]
            if time.monotonic() >= next_report:
                next_report += 1.0
                st = rate_stats(sorted(stamps))
                rejected = f"  rejected {sub.decode_errors} ({_counts(sub.rejected)})" if sub.decode_errors else ""
                if not st:
                    print(f"{topic.name}: no messages yet{rejected}", flush=True)
                    continue
                print(f"{topic.name}: average rate {st['rate_hz']:.3f} Hz (expected {topic.rate_hz:g})  "
                      f"period min {st['min_ms']:.1f} ms max {st['max_ms']:.1f} ms "
                      f"std dev {st['std_ms']:.2f} ms  window {len(stamps)}{rejected}", flush=True)
    return 0


def _field_lines(struct_type: type, indent: int = 1) -> list[str]:
    lines = []
    info = msgspec.inspect.type_info(struct_type)
    for f in info.fields:  # type: ignore[attr-defined]
        lines.append(f"{'  ' * indent}{f.name}: {_type_text(f.type)}")
        inner = f.type
        if isinstance(inner, msgspec.inspect.StructType) and indent < 3:
            lines.extend(_field_lines(inner.cls, indent + 1))
    return lines


def _type_text(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.StructType):
        return t.cls.__name__
    if isinstance(t, msgspec.inspect.CustomType):
        return "ndarray (separate frame)"
    if isinstance(t, msgspec.inspect.UnionType):
        return " | ".join(_type_text(x) for x in t.types)
    if isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.VarTupleType)):
        return f"list[{_type_text(t.item_type)}]"
    if isinstance(t, msgspec.inspect.TupleType):
        return f"tuple[{', '.join(_type_text(x) for x in t.item_types)}]"
    if isinstance(t, msgspec.inspect.DictType):
        return f"dict[{_type_text(t.key_type)}, {_type_text(t.value_type)}]"
    if isinstance(t, msgspec.inspect.Metadata):
        return _type_text(t.type)
    return type(t).__name__.removesuffix("Type").lower()


def cmd_info(args: argparse.Namespace) -> int:
    topic = get_topic(args.topic)
    config = BusConfig.from_env()
    print(f"topic: {topic.name}")
    print(f"description: {topic.description}")
    print(f"type: {topic.type_name} (schema version {SCHEMA_VERSION})")
    print(f"expected rate: {topic.rate_hz:g} Hz")
    print(f"recorded: {'yes' if topic.recorded else 'no'}")
    print(f"endpoint: {config.subscriber_endpoint(topic)}")
    if topic.fan_in:
        print(f"publishers connect to: {config.forwarder_in_endpoint(topic, connect=True)} (fan-in)")
    print(f"queue depth per subscriber: {topic.queue_depth} messages")
    print("fields:")
    print("\n".join(_field_lines(topic.message_type)))
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    from nodes.latency import Traced, format_rows, latency_rows, rows_as_dicts, traces_of_run

    topics = [get_topic(t) for t in args.topics]  # an unknown name: one line naming it
    if args.run:
        traced = traces_of_run(args.run, [t.name for t in topics])
        where = args.run
    else:
        traced = []
        with contextlib.ExitStack() as stack:
            subs = [stack.enter_context(_subscription(t, Delivery.BUFFERED)) for t in topics]
            deadline = time.monotonic() + args.duration
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the table of what came so far
                while time.monotonic() < deadline:
                    for sub in subs:
                        msg = sub.recv(timeout_s=0.02)
                        if msg is not None:
                            h = msg.header  # type: ignore[attr-defined]
                            traced.append(Traced(sub.topic.name, h.stamp_ns, tuple(h.trace)))
        where = f"the bus, {args.duration:g} s"
    if not traced:
        print(f"no traced message on {', '.join(t.name for t in topics)} ({where})", file=sys.stderr)
        return 1
    rows = latency_rows(traced)
    if args.json:
        print(json.dumps(rows_as_dicts(rows), indent=1))
        return 0
    print(f"{len(traced)} messages of {', '.join(t.name for t in topics)} ({where}); wall clock, ms")
    print(format_rows(rows))
    return 0
