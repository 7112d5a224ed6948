"""Per-hop latency from header traces: the one computation behind ``streetloc topic latency`` and the
latency table of ``streetloc demo``.

Every message carries ``header.trace``, one ``Hop(node, recv_ns, pub_ns)`` per node it went through
(wall clock, ns; ``perception/drives/messages.py``). A trace is one or more *chains* that each start at
the source (camera or replay) followed by the message's own publisher::

    posenet/fix         [replay, posenet]
    localization/pose   [replay, posenet, fusion]                          (fusion: the fix's chain)
    localization/pose   [replay, detector, replay, posenet, fusion]        (an input joined from a side topic)

A node that fuses several camera-derived inputs joins their chains with `join_traces` (oldest first, the
one that caused the message last); `split_chains` takes them apart again at each source hop. From those:

* ``capture -> SOURCE``: the source's publish time minus the frame's ``stamp_ns``. A replay keeps the drive's
  capture stamps, so there it is not a latency: samples outside 0..``MAX_CAPTURE_S`` are left out (and a
  replay's row is then absent);
* ``A -> B``: publish of A to publish of B (transport, queueing, B's work), with ``in B``: B's own
  publish minus receive (its work and any wait for other inputs);
* ``SOURCE -> LAST (total)``: from the source's publish to the message's.

Each hop is counted once however many messages repeat it: a fusion pose published on its 20 Hz tick
carries the same fix chain as the pose published at the fix, and only the first pose after a fix (the
one the fix caused) counts for ``posenet -> fusion``. Traces of several topics (``localization/pose``,
``perception/detections``, ``perception/segmentation``) may be mixed: the shared ``replay -> posenet``
of a fix and of its pose is one sample.

Pure: no sockets, no files (`traces_of_run` reads a recording's traces, `nodes/record.py` writes them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from perception.drives.messages import Hop

MAX_CAPTURE_S = 10.0  # capture -> source beyond this (or negative): the stamps are not live (a replay)
TRACES_RECORD = "streetloc.traces"  # the metadata record of a recording holding its messages' traces


@dataclass(frozen=True)
class Traced:
    """One message's trace: ``topic``, ``stamp_ns`` (capture time of its data), ``trace`` (hops in order)."""

    topic: str
    stamp_ns: int
    trace: tuple[Hop, ...]


@dataclass(frozen=True)
class LatencyRow:
    """One stage: ``stage`` name, ``n`` samples, p50/p95 of its latency in ms, and of the time inside its
    last node (publish minus receive; None for capture and totals)."""

    stage: str
    n: int
    p50_ms: float
    p95_ms: float
    in_node_p50_ms: float | None = None
    in_node_p95_ms: float | None = None


def join_traces(chains: Sequence[Sequence[Hop]]) -> list[Hop]:
    """The trace of a message made from several inputs: their chains one after the other, the chain of the
    input that caused the message last (so ``trace[-1]`` is still its newest upstream hop). Empty chains are
    left out; the result never exceeds the wire limit of 64 hops (the oldest chains go first)."""
    out: list[Hop] = []
    for chain in reversed([c for c in chains if c]):
        if len(out) + len(chain) > 63:  # one hop left for the publisher (perception/drives/bounds.py)
            break
        out = [*chain, *out]
    return out


def split_chains(trace: Sequence[Hop]) -> tuple[list[list[Hop]], Hop | None]:
    """(chains, consumer) of a trace: ``consumer`` is its last hop (the message's publisher), the chains
    the hops before it, cut wherever the source node (``trace[0].node``) appears again. A one-hop trace
    (a source's own message) is one chain and no consumer."""
    if len(trace) < 2:
        return [list(trace)], None
    source = trace[0].node
    chains: list[list[Hop]] = []
    for hop in trace[:-1]:
        if hop.node == source or not chains:
            chains.append([hop])
        else:
            chains[-1].append(hop)
    return chains, trace[-1]


def _key(hop: Hop) -> tuple[str, int, int]:
    return (hop.node, hop.recv_ns, hop.pub_ns)


def hop_samples(messages: Iterable[Traced]) -> dict[str, dict[str, list[float]]]:
    """Latency samples in ms by stage: ``{stage: {"ms": [...], "in_node_ms": [...]}}`` (see the module
    docstring for the stages), stages in the order first seen along the traces."""
    # (stage, upstream hop) -> (downstream hop): the earliest downstream for one upstream (a tick pose
    # repeating a fix's chain is not a second sample of the fix's latency)
    edges: dict[tuple[str, tuple], Hop] = {}
    upstream_of: dict[tuple[str, tuple], Hop] = {}
    captures: dict[tuple, float] = {}
    totals: dict[tuple[str, tuple], Hop] = {}
    order: list[str] = []

    def note(stage: str, up: Hop, down: Hop, table: dict) -> None:
        key = (stage, _key(up))
        if stage not in order:
            order.append(stage)
        if key not in table or down.pub_ns < table[key].pub_ns:
            table[key] = down
            upstream_of[key] = up

    for msg in messages:
        trace = msg.trace
        if not trace:
            continue
        chains, consumer = split_chains(trace)
        for chain in chains:
            src = chain[0]
            capture_s = (src.pub_ns - msg.stamp_ns) * 1e-9
            stage = f"capture -> {src.node}"
            if 0.0 <= capture_s <= MAX_CAPTURE_S and _key(src) not in captures:
                captures[_key(src)] = capture_s * 1e3
                if stage not in order:
                    order.append(stage)
            path = [*chain, consumer] if consumer is not None else chain
            for up, down in zip(path, path[1:], strict=False):
                note(f"{up.node} -> {down.node}", up, down, edges)
        if consumer is not None and len(chains[-1]) > 1:
            # from the source of the chain that caused the message (the last one) to the message itself
            src = chains[-1][0]
            note(f"{src.node} -> {consumer.node} (total)", src, consumer, totals)
    out: dict[str, dict[str, list[float]]] = {s: {"ms": [], "in_node_ms": []} for s in order}
    for key_src, ms in captures.items():
        out[f"capture -> {key_src[0]}"]["ms"].append(ms)
    for table, in_node in ((edges, True), (totals, False)):
        for key, down in table.items():
            up = upstream_of[key]
            out[key[0]]["ms"].append((down.pub_ns - up.pub_ns) / 1e6)
            if in_node:
                out[key[0]]["in_node_ms"].append((down.pub_ns - down.recv_ns) / 1e6)
    return {s: v for s, v in out.items() if v["ms"]}


def latency_rows(messages: Iterable[Traced]) -> list[LatencyRow]:
    """p50/p95 of every stage of ``messages``' traces (`hop_samples`), in path order."""
    rows = []
    for stage, s in hop_samples(messages).items():
        ms = np.asarray(s["ms"])
        inn = np.asarray(s["in_node_ms"])
        rows.append(LatencyRow(stage, len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 95)),
                               float(np.percentile(inn, 50)) if len(inn) else None,
                               float(np.percentile(inn, 95)) if len(inn) else None))
    return rows


def format_rows(rows: Sequence[LatencyRow]) -> str:
    """The rows as a text table (ms)."""
    if not rows:
        return "no traced messages"
    width = max(24, *(len(r.stage) for r in rows))
    lines = [f"{'hop':{width}s}{'n':>6s}{'p50 ms':>9s}{'p95 ms':>9s}{'in node p50':>13s}{'p95':>8s}"]
    for r in rows:
        inn = "" if r.in_node_p50_ms is None else f"{r.in_node_p50_ms:13.1f}{r.in_node_p95_ms:8.1f}"
        lines.append(f"{r.stage:{width}s}{r.n:6d}{r.p50_ms:9.1f}{r.p95_ms:9.1f}{inn}")
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[LatencyRow]) -> list[dict]:
    """JSON-ready rows (ms rounded to 0.01)."""
    return [{"stage": r.stage, "n": r.n, "p50_ms": round(r.p50_ms, 2), "p95_ms": round(r.p95_ms, 2),
             "in_node_p50_ms": None if r.in_node_p50_ms is None else round(r.in_node_p50_ms, 2),
             "in_node_p95_ms": None if r.in_node_p95_ms is None else round(r.in_node_p95_ms, 2)} for r in rows]


def encode_traces(messages: Iterable[Traced]) -> dict[str, str]:
    """The traces as the string -> string map of a recording's ``TRACES_RECORD`` metadata record: per topic
    a JSON list of ``[stamp_ns, [[node, recv_ns, pub_ns], ...]]``."""
    by_topic: dict[str, list] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append([m.stamp_ns, [[h.node, h.recv_ns, h.pub_ns] for h in m.trace]])
    return {topic: json.dumps(items, separators=(",", ":")) for topic, items in by_topic.items()}


def decode_traces(record: dict[str, str], *, source: str = "") -> list[Traced]:
    """`encode_traces` inverted; ValueError naming ``source`` and the topic for a malformed entry."""
    out = []
    for topic, text in record.items():
        try:
            for stamp_ns, hops in json.loads(text):
                out.append(Traced(topic, int(stamp_ns), tuple(Hop(str(n), int(r), int(p)) for n, r, p in hops)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{source}: metadata {TRACES_RECORD!r}, topic {topic!r}: malformed traces ({exc})") from None
    return out


def traces_of_run(path: str, topics: Sequence[str] | None = None) -> list[Traced]:
    """The traces a recording holds (written by the recorder, ``nodes/record.py``), of ``topics`` (all: None)
    in that order of topics.
    ValueError when the file holds none (recorded before traces were kept, or cut off before its end)."""
    from perception.drives import DriveReader

    with DriveReader(path) as reader:
        record = reader.metadata_record(TRACES_RECORD)
    if record is None:
        raise ValueError(f"{path}: no header traces recorded (metadata {TRACES_RECORD!r} missing: recorded "
                         "by an older streetloc, or the recording was cut off)")
    traced = decode_traces(record, source=path)
    if topics is None:
        return traced
    order = {t: k for k, t in enumerate(topics)}  # the stages then come in the order of the topics asked for
    return sorted((t for t in traced if t.topic in order), key=lambda t: order[t.topic])
