"""Publish / subscribe over ZeroMQ with the topic table's endpoints and the wire codec.

A publisher is an XPUB socket (a PUB that also hears subscriptions, so it can tell who is listening).
ZeroMQ gives every subscriber its own queue and a PUB socket drops for a subscriber whose queue is full
instead of blocking, so a slow subscriber never stalls the publisher or the other subscribers.

Each subscription says how it wants messages (``Delivery``):
- ``EVERY``: a deep queue, each message in order (recording, lock-step replay, fusion);
- ``LATEST``: a short queue, and ``recv`` drains it and returns only the newest message (live
  perception: a CNN slower than the camera works on the freshest frame, never on a backlog);
- ``BUFFERED``: every message, drained from the socket by a background thread into an unbounded
  in-process queue, so that a handler that stalls (a recorder waiting on the disk) never lets the
  socket queue overflow; memory, not messages, absorbs the burst.
"""

from __future__ import annotations

import enum
import itertools
import os
import socket as pysocket
import threading
import time
from collections import deque
from typing import Any

import msgspec
import zmq

from nodes.bus import security
from nodes.bus.messages import Hop
from nodes.bus.topics import BusConfig, Topic, get_topic, private_dir
from nodes.bus.wire import FIRST_ARRAY_FRAME, Codec, DecodeError
from perception.drives.bounds import STAMP_MAX_AHEAD_NS

_LATEST_QUEUE_DEPTH = 2
# How long a closed publisher keeps delivering what is still queued (a replay's last frames); bounded
# so that a subscriber that stopped reading cannot hold up shutdown.
PUBLISHER_LINGER_MS = 500
_DRAIN_NAMES = itertools.count()
_BURST_PROBE_EVERY = 16
# Publishers (node name, incarnation) a subscriber keeps the last seq and stamp of; beyond this the least
# recently heard is forgotten, so that a flood of spoofed names cannot grow a subscriber's memory.
MAX_TRACKED_PUBLISHERS = 256


def new_incarnation() -> int:
    """A random publisher incarnation in [1, 2**32 - 1] (0 means unknown on the wire)."""
    return int.from_bytes(os.urandom(4), "little") or 1


class Delivery(enum.Enum):
    EVERY = "every"
    LATEST = "latest"
    BUFFERED = "buffered"


def bind_exclusive(socket: zmq.Socket, endpoint: str) -> None:
    """Bind ``endpoint``; OSError if another process serves it. ZeroMQ's ipc bind would silently take
    over a live socket file, so ipc endpoints are probed first."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        private_dir(os.path.dirname(path) or ".")  # created 0700, or refused if another user's
        if os.path.exists(path):
            probe = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
            try:
                probe.connect(path)
                in_use = True
            except OSError:
                in_use = False  # a stale file left by a killed process: safe to take over
            finally:
                probe.close()
            if in_use:
                raise OSError(f"bind {endpoint} failed: address in use")
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        raise OSError(f"bind {endpoint} failed: {exc}") from None
    if endpoint.startswith("ipc://"):  # the socket file's mode follows the umask (000: world-writable)
        os.chmod(endpoint[len("ipc://"):], 0o600)


def _context(context: zmq.Context | None) -> zmq.Context:
    return context if context is not None else zmq.Context.instance()


def secure_bind(socket: zmq.Socket, endpoint: str, config: BusConfig, context: zmq.Context) -> None:
    """Before binding ``endpoint``: on tcp with keys, make ``socket`` a CURVE server that accepts only
    the allow-list (``nodes.bus.security``); without keys beyond loopback, warn (the config was let through
    only with ``insecure``)."""
    if not endpoint.startswith("tcp://"):
        return
    if config.keys_dir:
        security.secure_server(socket, config.keys_dir, context)
    elif not security.is_local_bind(config.bind):
        security.warn_insecure(config.bind)


def secure_connect(socket: zmq.Socket, endpoint: str, config: BusConfig) -> None:
    """Before connecting ``endpoint``: on tcp with keys, make ``socket`` a CURVE client."""
    if endpoint.startswith("tcp://") and config.keys_dir:
        security.secure_client(socket, config.keys_dir)


class Publisher:
    """Publishes one topic. ``publish`` stamps the header's ``seq`` and appends this node's hop to the
    trace; arrays are sent without copying, so do not modify them after publishing."""

    def __init__(self, topic: str | Topic, *, node: str = "", config: BusConfig | None = None,
                 context: zmq.Context | None = None) -> None:
        self.topic = topic if isinstance(topic, Topic) else get_topic(topic)
        self.node = node or f"pid{os.getpid()}"
        self.config = config or BusConfig.from_env()
        self.codec = Codec(self.topic)
        self.seq = 0
        self.incarnation = new_incarnation()
        self._subscriptions = 0
        endpoint, bind = self.config.publisher_endpoint(self.topic)
        self.endpoint = endpoint
        if bind:
            self.socket = _context(context).socket(zmq.XPUB)
            self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        else:  # fan-in topic: connect to the forwarder; subscriptions are the forwarder's business
            self.socket = _context(context).socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, self.topic.queue_depth)
        self.socket.setsockopt(zmq.LINGER, PUBLISHER_LINGER_MS)
        try:
            if bind:
                secure_bind(self.socket, endpoint, self.config, _context(context))
            else:
                secure_connect(self.socket, endpoint, self.config)
        except ValueError:
            self.socket.close(0)
            raise
        if bind:
            try:
                bind_exclusive(self.socket, endpoint)
            except OSError as exc:
                self.socket.close(0)
                raise OSError(f"cannot publish {self.topic.name}: {exc}; "
                              "is another publisher of this topic running?") from None
        else:
            self.socket.connect(endpoint)
        self._bound = bind

    def publish(self, msg: msgspec.Struct, *, recv_ns: int | None = None) -> None:
        """Send ``msg``. ``recv_ns``: when the input that produced it arrived (defaults to now)."""
        now_ns = time.time_ns()
        header = msg.header  # type: ignore[attr-defined]
        header.seq = self.seq
        header.incarnation = self.incarnation
        header.trace = [*header.trace, Hop(self.node, now_ns if recv_ns is None else recv_ns, now_ns)]
        self.seq += 1
        frames = self.codec.encode(msg)
        # Frame by frame rather than send_multipart: the small frames are copied (cheaper than zero-copy
        # bookkeeping), arrays go zero-copy; this saves microseconds per message (BENCHMARKS.md, bus).
        socket, last = self.socket, len(frames) - 1
        for index, frame in enumerate(frames):
            socket.send(frame, zmq.SNDMORE if index < last else 0, copy=index < FIRST_ARRAY_FRAME)

    def restart_stream(self) -> None:
        """Start a new incarnation (seq from 0): what follows is a new stream whose stamps may start
        earlier than the last ones (a replay starting over), not a gap or a clock going back."""
        self.incarnation = new_incarnation()
        self.seq = 0

    def subscriber_count(self) -> int:
        """How many subscriptions are live on this topic now (bound publishers only)."""
        if not self._bound:
            return 0
        while self.socket.poll(0, zmq.POLLIN):
            event = self.socket.recv()
            if event[:1] == b"\x01":
                self._subscriptions += 1
            elif event[:1] == b"\x00":
                self._subscriptions = max(0, self._subscriptions - 1)
        return self._subscriptions

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Block until ``count`` subscribers listen (PUB/SUB drops what is sent before they connect)."""
        deadline = time.monotonic() + timeout_s
        while self.subscriber_count() < count:
            if time.monotonic() > deadline:
                return False
            self.socket.poll(20, zmq.POLLIN)
        return True

    def close(self) -> None:
        """Close; messages still queued keep flowing for up to PUBLISHER_LINGER_MS."""
        self.socket.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Subscriber:
    """Subscribes to one topic. ``recv`` returns the next well-formed message or None on timeout; a
    malformed or out-of-bounds one is skipped and counted (``rejected``: kind -> count, ``decode_errors``,
    ``last_rejected``), never raised, so that no sender can stop a receive loop. ``recv_frames`` +
    ``decode`` are the two halves for a receiver that handles rejections itself (``decode`` raises
    ``DecodeError``, counted the same). ``socket`` can be registered in a ``zmq.Poller``: it becomes
    readable when ``recv_frames`` has something to return.

    LATEST delivery drains the topic continuously in a background thread that keeps only the newest
    message, so that neither this process nor the publisher ever holds a backlog of stale frames;
    BUFFERED delivery drains it the same way but keeps every message, in order."""

    def __init__(self, topic: str | Topic, *, delivery: Delivery = Delivery.EVERY,
                 config: BusConfig | None = None, context: zmq.Context | None = None,
                 endpoint: str | None = None) -> None:
        self.topic = topic if isinstance(topic, Topic) else get_topic(topic)
        self.delivery = delivery
        self.config = config or BusConfig.from_env()
        self.codec = Codec(self.topic)
        self.endpoint = endpoint or self.config.subscriber_endpoint(self.topic)
        self.received = 0  # messages taken off the socket
        self.skipped = 0  # older messages dropped by LATEST delivery's drain thread (part of seq_gaps)
        self.decode_errors = 0  # messages rejected by decode (malformed, out of bounds, bad stamp)
        self.rejected: dict[str, int] = {}  # DecodeError kind -> count
        self.last_rejected = ""  # the last rejection, one line
        # messages of a publisher never handed over, from the gaps in the seq of those that were (after the
        # first): queue overflow, and for LATEST the older frames skipped in the drain thread or dropped
        # at its 2-deep socket queue while the thread waited for the GIL (``skipped`` alone misses those)
        self.seq_gaps = 0
        self.restarts = 0  # publishers seen starting a new incarnation (a respawned node, a replay loop)
        # (node, incarnation) -> (last seq, last stamp_ns), least recently heard first
        self._publishers: dict[tuple[str, int], tuple[int, int]] = {}
        self._incarnations: dict[str, int] = {}  # node -> its latest incarnation
        ctx = _context(context)
        self._sub = ctx.socket(zmq.SUB)
        depth = _LATEST_QUEUE_DEPTH if delivery is Delivery.LATEST else self.topic.queue_depth
        self._sub.setsockopt(zmq.RCVHWM, depth)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.SUBSCRIBE, self.topic.name.encode())
        try:
            secure_connect(self._sub, self.endpoint, self.config)
        except ValueError:
            self._sub.close(0)
            raise
        self._sub.connect(self.endpoint)
        self._poller = zmq.Poller()  # one, reused: Socket.poll builds a new one per call
        self._poller.register(self._sub, zmq.POLLIN)
        self._burst = False  # the last receive found a message waiting
        self._thread: threading.Thread | None = None
        if delivery is Delivery.EVERY:
            self.socket = self._sub
            return
        # LATEST/BUFFERED: the drain thread owns self._sub; it signals over an inproc PAIR whose
        # main-thread end is self.socket (pollable like any socket).
        # a fresh name each time: id(self) can be reused before ZeroMQ has released a closed socket's name
        address = f"inproc://streetloc-drain-{next(_DRAIN_NAMES)}"
        self.socket = ctx.socket(zmq.PAIR)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self._signal = ctx.socket(zmq.PAIR)
        self._signal.setsockopt(zmq.LINGER, 0)
        self._signal.connect(address)
        self._lock = threading.Lock()
        self._latest: list[Any] | None = None
        self._buffer: deque[list[Any]] = deque()
        self._pending = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"drain:{self.topic.name}", daemon=True)
        self._thread.start()

    def _recv_rest(self, frames: list[Any]) -> list[Any]:
        """``frames`` (a message's first frame) completed with the rest of the message: envelope frames
        as bytes, array frames as zero-copy ``zmq.Frame``s (cheaper than ``recv_multipart``, which makes
        a Frame of every part)."""
        socket = self._sub
        while socket.getsockopt(zmq.RCVMORE):  # the rest of a multipart message is there already
            frames.append(socket.recv(copy=len(frames) < FIRST_ARRAY_FRAME))
        return frames

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._poller.poll(100):
                    continue
                while self._poller.poll(0):
                    frames = self._recv_rest([self._sub.recv()])
                    with self._lock:
                        self.received += 1
                        if self.delivery is Delivery.BUFFERED:
                            self._buffer.append(frames)
                        else:
                            if self._latest is not None:
                                self.skipped += 1
                            self._latest = frames
                        notify = not self._pending
                        self._pending = True
                    if notify:
                        self._signal.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                return

    def recv_frames(self, timeout_s: float | None = None) -> list[Any] | None:
        """The raw frames of the next message (or the newest, for LATEST), None on timeout."""
        timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000))
        if self._thread is None:
            # While messages queue up (a burst), the next one is usually there: take it without a poll.
            # Otherwise poll first: a non-blocking receive that finds nothing raises zmq.Again, which
            # costs more than the poll (BENCHMARKS.md, bus). After a miss, a burst is looked for again
            # every _BURST_PROBE_EVERY messages.
            frames = None
            if self._burst or self.received % _BURST_PROBE_EVERY == 0:
                try:
                    frames = [self._sub.recv(zmq.NOBLOCK)]
                except zmq.Again:
                    self._burst = False
            if frames is None:
                if not self._poller.poll(timeout_ms):
                    return None
                frames = [self._sub.recv()]
            else:
                self._burst = True
            self.received += 1
            return self._recv_rest(frames)
        if not self.socket.poll(timeout_ms, zmq.POLLIN):
            return None
        with self._lock:
            if self.delivery is Delivery.BUFFERED:
                frames = self._buffer.popleft() if self._buffer else None
                if not self._buffer:
                    self.socket.recv()  # consume the signal only once the buffer is empty
                    self._pending = False
                return frames
            self.socket.recv()
            frames, self._latest, self._pending = self._latest, None, False
        return frames

    @property
    def backlog(self) -> int:
        """Messages waiting in the BUFFERED queue."""
        return len(self._buffer) if self._thread is not None else 0

    def decode(self, frames: list[Any], now_ns: int | None = None) -> msgspec.Struct:
        """Decode frames from ``recv_frames``. Raises DecodeError (and nothing else) for a message that
        is malformed, has a field out of bounds (`perception.drives.bounds`), is stamped more than
        STAMP_MAX_AHEAD_NS after ``now_ns`` (default: the wall clock) or earlier than the previous
        message of the same publisher incarnation. Counts sequence gaps and publisher restarts."""
        try:
            return self._decode(frames, now_ns)
        except DecodeError as exc:
            self.decode_errors += 1
            self.rejected[exc.kind] = self.rejected.get(exc.kind, 0) + 1
            self.last_rejected = str(exc)
            raise

    def _decode(self, frames: list[Any], now_ns: int | None) -> msgspec.Struct:
        msg = self.codec.decode(frames)
        header = msg.header  # type: ignore[attr-defined]
        stamp_ns = header.stamp_ns
        now_ns = time.time_ns() if now_ns is None else now_ns
        if stamp_ns > now_ns + STAMP_MAX_AHEAD_NS:
            raise DecodeError("stamp_ahead", f"{self.topic.name}: header.stamp_ns={stamp_ns} is "
                              f"{(stamp_ns - now_ns) / 1e9:.3g} s ahead of this machine's clock "
                              f"(at most {STAMP_MAX_AHEAD_NS / 1e9:g} s)")
        node = header.trace[-1].node if header.trace else ""
        key = (node, header.incarnation)
        last = self._publishers.pop(key, None)
        if last is None:
            previous = self._incarnations.get(node)
            if previous is not None and previous != header.incarnation:
                self.restarts += 1
            self._incarnations[node] = header.incarnation
            if len(self._incarnations) > MAX_TRACKED_PUBLISHERS:
                del self._incarnations[next(iter(self._incarnations))]
        else:
            last_seq, last_stamp_ns = last
            if stamp_ns < last_stamp_ns:
                self._publishers[key] = last  # the stream goes on from the last good message
                raise DecodeError("stamp_backwards", f"{self.topic.name}: header.stamp_ns={stamp_ns} from "
                                  f"{node or 'a publisher'} is {(last_stamp_ns - stamp_ns) / 1e9:.3g} s before "
                                  f"its previous message's")
            if header.seq > last_seq + 1:
                self.seq_gaps += header.seq - last_seq - 1
        self._publishers[key] = (header.seq, stamp_ns)
        if len(self._publishers) > MAX_TRACKED_PUBLISHERS:
            del self._publishers[next(iter(self._publishers))]
        return msg

    def recv(self, timeout_s: float | None = None) -> msgspec.Struct | None:
        """The next well-formed message, None when none came within ``timeout_s`` (None: wait forever).
        Rejected messages are skipped and counted (see the class docstring)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            frames = self.recv_frames(left)
            if frames is None:
                return None
            try:
                return self.decode(frames)
            except DecodeError:
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
            self._signal.close(0)
            self.socket.close(0)
        self._sub.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self):
        """Messages forever, skipping (and counting) rejected ones."""
        while True:
            msg = self.recv()
            if msg is not None:
                yield msg
