"""The forwarder of fan-in topics (``diagnostics``): many publishers connect in, subscribers connect out.

The launcher runs one in a thread; ``streetloc topic`` tools start one when none is running, so that a
single node's diagnostics can be watched without a launcher.
"""

from __future__ import annotations

import threading

import zmq

from nodes.bus.pubsub import bind_exclusive
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
                bind_exclusive(frontend, in_ep)
                bind_exclusive(backend, out_ep)
            except OSError as exc:
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
                    peer[sock].send_multipart(sock.recv_multipart(copy=False), copy=False)

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
