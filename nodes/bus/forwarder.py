"""The forwarder of fan-in topics (``diagnostics``): many publishers connect in, subscribers connect out.

The launcher runs one in a thread; ``streetloc topic`` tools start one when none is running, so that a
single node's diagnostics can be watched without a launcher.

With CurveZMQ keys on tcp (``nodes.bus.security``) the in-endpoint is a CURVE server: the ZAP handler
admits only allow-listed client keys, and each relayed message carries the ZAP User-Id of its sender
(the key file's name) as a frame property. Messages without one are dropped (``unauthenticated``), and
``senders`` counts messages per User-Id, so what reaches ``streetloc node list`` came from this graph.
"""

from __future__ import annotations

import threading

import zmq

from nodes.bus.pubsub import bind_exclusive, secure_bind
from nodes.bus.topics import TOPICS, BusConfig, Topic


class Forwarder:
    """Relays every fan-in topic of the table from its in-endpoint to its out-endpoint (XSUB -> XPUB)."""

    def __init__(self, config: BusConfig | None = None, context: zmq.Context | None = None) -> None:
        self.config = config or BusConfig.from_env()
        self._context = context or zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.topics: list[Topic] = [t for t in TOPICS.values() if t.fan_in]
        self._pairs: list[tuple[zmq.Socket, zmq.Socket]] = []
        self._authenticated = bool(self.config.keys_dir) and self.config.transport == "tcp"
        self.senders: dict[str, int] = {}  # ZAP User-Id -> messages relayed (keys configured only)
        self.unauthenticated = 0  # messages dropped for want of a User-Id (keys configured only)

    def start(self) -> Forwarder:
        """Bind all endpoints (OSError if another forwarder holds them) and relay in a daemon thread."""
        for topic in self.topics:
            frontend = self._context.socket(zmq.XSUB)
            backend = self._context.socket(zmq.XPUB)
            for sock in (frontend, backend):
                sock.setsockopt(zmq.LINGER, 0)
            in_ep = self.config.forwarder_in_endpoint(topic)
            out_ep = self.config.forwarder_out_endpoint(topic)
            try:
                secure_bind(frontend, in_ep, self.config, self._context)
                secure_bind(backend, out_ep, self.config, self._context)
                bind_exclusive(frontend, in_ep)
                bind_exclusive(backend, out_ep)
            except (OSError, ValueError) as exc:
                frontend.close(0)
                backend.close(0)
                self.close()
                raise OSError(f"forwarder for {topic.name}: {exc}") from None
            self._pairs.append((frontend, backend))
        self._thread = threading.Thread(target=self._run, name="streetloc-forwarder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        poller = zmq.Poller()
        peer: dict[zmq.Socket, zmq.Socket] = {}
        frontends = {frontend for frontend, _ in self._pairs}
        for frontend, backend in self._pairs:
            poller.register(frontend, zmq.POLLIN)
            poller.register(backend, zmq.POLLIN)
            peer[frontend] = backend
            peer[backend] = frontend
        while not self._stop.is_set():
            try:
                events = dict(poller.poll(100))
            except zmq.ZMQError:
                return
            for sock in events:
                # subscriptions flow backend -> frontend, messages frontend -> backend
                while sock.poll(0, zmq.POLLIN):
                    frames = sock.recv_multipart(copy=False)
                    if self._authenticated and sock in frontends and not self._sender(frames[0]):
                        continue
                    peer[sock].send_multipart(frames, copy=False)

    def _sender(self, frame: zmq.Frame) -> str:
        """The ZAP User-Id of the peer that sent ``frame`` ("" if none), counted in ``senders``."""
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            user = ""
        if not user:
            self.unauthenticated += 1
            return ""
        self.senders[user] = self.senders.get(user, 0) + 1
        return user

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for frontend, backend in self._pairs:
            frontend.close(0)
            backend.close(0)
        self._pairs = []

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
