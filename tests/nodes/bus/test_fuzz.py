"""Fuzzing every decoder of the bus (one per message type, through ``Subscriber.decode``: the codec, the
field bounds and the stamp checks a receiver runs) with hypothesis. Whatever the bytes, a decoder either
returns a record of its topic's type whose every field is within its bounds, or raises ``DecodeError``
with one of the documented kinds; nothing else ever escapes.

Three families of input per decoder:

- ``mutated``: a valid message of the type with one place changed (a field replaced, dropped or added,
  at any depth) by a hostile value: wrong types, NaN/inf/1e308, ints at and beyond the 64-bit limits,
  long strings, and raw MessagePack spliced in: nesting 1,100 to 200,000 levels deep (arrays, maps,
  both), containers claiming 2**32 - 1 items, a valid 200,000-item list, a 1.1 MB binary (over the
  envelope limit), ext types;
- ``msgpack``: arbitrary MessagePack values as the body behind a valid envelope, and as the envelope;
- ``raw``: random bytes as frames.

The default run tries ``FAST`` inputs per family and decoder (a few hundred per decoder in all, a few
seconds); ``-m slow`` tries ``SLOW`` (>= 10^4 per decoder). ``test_fuzz_counts`` prints how many ran.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.bus.messages import (
    CameraInfo,
    Detections,
    Diagnostics,
    FixHypothesis,
    GeoFix,
    Header,
    Hop,
    Image,
    Odometry,
    Pose,
    Segmentation,
    TopicStats,
)
from nodes.bus.pubsub import Subscriber
from nodes.bus.topics import TOPICS, BusConfig
from nodes.bus.wire import Codec, DecodeError
from perception.drives.bounds import check_record

# documented kinds of DecodeError (nodes/bus/wire.py, docs/wire_format.md "Limits"): every rejection
# lands in one of these named diagnostics counters
KINDS = {"frames", "size", "topic", "envelope", "version", "type", "body", "array", "depth", "memory", "overflow",
         "internal", "non_finite", "out_of_range", "too_long", "unknown_value", "shape", "stamp_ahead",
         "stamp_backwards"}
FAST = {"mutated": 40, "msgpack": 15, "raw": 15}
SLOW = {"mutated": 6000, "msgpack": 2500, "raw": 2000}
COUNTS: Counter[tuple[str, str]] = Counter()  # (topic, family) -> inputs tried

T0 = 1_700_000_000_000_000_000
# one topic per message type
DECODERS = ["camera/image", "gps/fix", "perception/detections", "perception/segmentation", "odometry",
            "localization/pose", "diagnostics"]


def _sample(topic: str):
    """A valid message of the topic's type with every optional part filled (so every field is a target)."""
    header = Header(stamp_ns=T0, seq=3, frame_id="f", trace=[Hop("a", T0, T0 + 1), Hop("b", T0 + 2, T0 + 3)],
                    incarnation=9)
    return {
        "camera/image": lambda: Image(header, 4, 2, "bgr8", np.zeros((2, 4, 3), np.uint8),
                                      CameraInfo(4, 2, 2.0, 2.0, 2.0, 1.0, "plumb_bob", (0.1, 0.0, 0.0, 0.0, 0.0))),
        "gps/fix": lambda: GeoFix(header, 55.7, 13.2, 10.0, 90.0, (1.0, 0.0, 0.0, 1.0), 2.0, 3.0, "gps", True, "",
                                  [FixHypothesis(55.7, 13.2, 0.5, (1.0, 0.0, 0.0, 1.0), 90.0, 2.0)]),
        "perception/detections": lambda: Detections(header, np.ones((2, 4), np.float32), np.zeros(2, np.int32),
                                                    np.full(2, 0.5, np.float32), ["car"], 64, 48, "yolo", True),
        "perception/segmentation": lambda: Segmentation(header, np.zeros((3, 4), np.uint8), ["sky", "road"],
                                                        [0.5, 0.5], "psp", True),
        "odometry": lambda: Odometry(header, 3.0, 0.1, 0.1, 0.01, True),
        "localization/pose": lambda: Pose(header, 55.7, 13.2, 1.0, 10.0, 3.0, (1.0, 2.0), 0.1, (1.0, 0.0, 0.0, 1.0),
                                          5.0, 0.5, "tracking", ["posenet/fix"], True, "ok", ["odometry"]),
        "diagnostics": lambda: Diagnostics(header, "n", 12, 3.0, "ok", [TopicStats("camera/image", "in", 5, 10.0, 1)],
                                           1.0, 2.0, {"decode:x:depth": 1}, "", 0, True),
    }[topic]()


GOOD = {t: [bytes(f) for f in Codec(TOPICS[t]).encode(_sample(t))] for t in DECODERS}


def _paths(value, prefix=()) -> list[tuple]:
    """Every place in a MessagePack body: (path to a container, key or index)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


BODIES = {t: msgpack.unpackb(GOOD[t][1], strict_map_key=False)[2] for t in DECODERS}
PATHS = {t: _paths(BODIES[t]) for t in DECODERS}

_N = 200_000
RAW_VALUES = [
    b"\x91" * 1_100 + b"\xc0",  # just past the interpreter's recursion limit
    b"\x91" * _N + b"\xc0",  # the 200 kB value
    b"\x81\xa1k" * 50_000 + b"\xc0",  # maps
    b"\x91\x81\xa1k" * 40_000 + b"\xc0",  # both
    b"\xdd\xff\xff\xff\xff",  # an array claiming 2**32 - 1 items (and the rest of the message as them)
    b"\xdf\xff\xff\xff\xff",  # a map claiming as many
    b"\xc6\xff\xff\xff\xff",  # a bin claiming 4 GB
    b"\xdd" + _N.to_bytes(4, "big") + b"\xa0" * _N,  # a valid 200,000-item list of strings
    b"\xdc\xff\xff" + b"\x00" * 0xFFFF,  # 65,535 ints
    b"\xc6" + (1_100_000).to_bytes(4, "big") + b"\x00" * 1_100_000,  # over the envelope limit
    b"\xd4\x01\x00",  # ext type 1
    b"\xd6\xff\x00\x00\x00\x00",  # the timestamp ext
    b"\xcb" + np.float64(np.nan).tobytes()[::-1],  # a NaN double
    b"\xc1",  # the never-used byte
]
_MARK = "\ue000raw"

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63), -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 95.0, -400.0, 361.0, 5e-324]),
    st.text(max_size=20), st.sampled_from(["x" * 5000, "tracking", "bgr8", "in", "ok"]), st.binary(max_size=20),
)
hostile_values = st.one_of(
    hostile_scalars,
    st.lists(hostile_scalars, max_size=5),
    st.dictionaries(st.text(max_size=8), hostile_scalars, max_size=4),
    st.integers(0, len(RAW_VALUES) - 1).map(lambda i: f"{_MARK}{i}"),  # raw MessagePack spliced in
)


def _pack(value) -> bytes:
    """MessagePack of ``value`` with the raw markers replaced by their bytes."""
    data = msgpack.packb(value, use_bin_type=True)
    for i, raw in enumerate(RAW_VALUES):
        marker = msgpack.packb(f"{_MARK}{i}")
        if marker in data:
            data = data.replace(marker, raw)
    return data


def _envelope(topic: str, body_bytes: bytes) -> bytes:
    return b"\x93" + msgpack.packb(2) + msgpack.packb(TOPICS[topic].type_name) + body_bytes


@st.composite
def mutated(draw, topic: str) -> list[bytes]:
    import copy

    body = copy.deepcopy(BODIES[topic])
    action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "body"]))
    value = draw(hostile_values)
    if action == "body":
        body = value
    else:
        *parent_path, key = draw(st.sampled_from(PATHS[topic]))
        parent = body
        for k in parent_path:
            parent = parent[k]
        if action == "replace":
            parent[key] = value
        elif action == "drop":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["x", "stamp_ns", "lat_deg", "frame"]))] = value
        else:
            parent.append(value)
    extra = draw(st.lists(st.binary(max_size=64), max_size=2))
    frames = [topic.encode(), _envelope(topic, _pack(body)), *GOOD[topic][2:], *extra]
    if draw(st.integers(0, 9)) == 0:  # sometimes the array frames are missing or wrong
        frames = frames[:2] + [b"\x00" * draw(st.integers(0, 64))] * draw(st.integers(0, 3))
    return frames


msgpack_values = st.recursive(
    hostile_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


@st.composite
def structured(draw, topic: str) -> list[bytes]:
    value = draw(msgpack_values)
    if draw(st.booleans()):
        payload = _envelope(topic, _pack(value))  # behind a valid envelope
    else:
        payload = _pack(value)  # as the envelope
    return [topic.encode(), payload, *draw(st.lists(st.binary(max_size=64), max_size=3))]


@st.composite
def raw(draw, topic: str) -> list[bytes]:
    frames = draw(st.lists(st.binary(max_size=300), min_size=0, max_size=5))
    if frames and draw(st.booleans()):
        frames[0] = topic.encode()  # past the topic check, into the decoder
    return frames


@pytest.fixture(scope="module")
def subscribers():
    """One subscriber per decoder (sockets of a private bus; nothing is sent on them)."""
    with tempfile.TemporaryDirectory(prefix="streetloc-fuzz-") as ipc_dir:
        config = BusConfig(transport="ipc", ipc_dir=ipc_dir)
        subs = {t: Subscriber(t, config=config) for t in DECODERS}
        yield subs
        for sub in subs.values():
            sub.close()


def _decode(sub: Subscriber, topic: str, family: str, frames: list[bytes]) -> None:
    COUNTS[(topic, family)] += 1
    try:
        msg = sub.decode(frames)
    except DecodeError as exc:
        assert exc.kind in KINDS, exc
        assert len(str(exc)) < 400
        return
    assert type(msg) is TOPICS[topic].message_type
    check_record(msg)  # anything accepted is within the bounds


def _run(family: str, strategy, examples: int, topic: str, subs) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(frames=strategy(topic))
    def fuzz(frames):
        _decode(subs[topic], topic, family, frames)

    fuzz()


FAMILIES = {"mutated": mutated, "msgpack": structured, "raw": raw}


@pytest.mark.parametrize("topic", DECODERS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_decoders(subscribers, topic, family):
    _run(family, FAMILIES[family], FAST[family], topic, subscribers)


@pytest.mark.slow
@pytest.mark.parametrize("topic", DECODERS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_decoders_slow(subscribers, topic, family):
    _run(family, FAMILIES[family], SLOW[family], topic, subscribers)


def test_every_raw_value_is_rejected_in_every_place_it_can_go(subscribers):
    """Each spliced value in each place of each message type: the deterministic core of the fuzz."""
    for topic in DECODERS:
        for path in PATHS[topic][:: max(1, len(PATHS[topic]) // 4)]:
            for i in range(len(RAW_VALUES)):
                import copy

                body = copy.deepcopy(BODIES[topic])
                parent = body
                for k in path[:-1]:
                    parent = parent[k]
                parent[path[-1]] = f"{_MARK}{i}"
                _decode(subscribers[topic], topic, "spliced", [topic.encode(), _envelope(topic, _pack(body)),
                                                               *GOOD[topic][2:]])


def test_fuzz_counts():
    """Runs last in this module: print (``-s``) how many inputs each decoder was given."""
    per_topic = Counter()
    for (topic, _family), n in COUNTS.items():
        per_topic[topic] += n
    lines = [f"{t}: {per_topic[t]} inputs ({', '.join(f'{f} {COUNTS[(t, f)]}' for f in [*FAMILIES, 'spliced'])})"
             for t in DECODERS]
    print("\nfuzz inputs per decoder:\n  " + "\n  ".join(lines))
    if os.environ.get("STREETLOC_FUZZ_COUNTS"):
        with open(os.environ["STREETLOC_FUZZ_COUNTS"], "w") as fh:
            fh.write("\n".join(lines) + "\n")
