"""The client API for other software: decoded messages from a host and a topic name.

    from nodes.bus import POSE_TOPIC, subscribe, next_message     # topic names: `streetloc topic list`
    pose = next_message(POSE_TOPIC, host="192.168.1.20", timeout_s=2.0)  # None on timeout
    with subscribe(POSE_TOPIC, host="192.168.1.20") as poses:
        for pose in poses:                  # malformed messages are skipped and counted (poses.rejected)
            ...

With ``host`` given the client speaks tcp to that machine (the graph must run with
STREETLOC_TRANSPORT=tcp and STREETLOC_BIND set to an interface the client can reach); without it,
the local bus configuration from the environment applies. A graph with CurveZMQ keys needs
``keys_dir`` (or STREETLOC_KEYS_DIR): a folder with the graph's ``server.key`` and an allow-listed
client's secret key (docs/wire_format.md, "Security: tcp").
"""

from __future__ import annotations

from nodes.bus.pubsub import Delivery, Subscriber
from nodes.bus.topics import BusConfig


def _config(host: str | None, port_base: int | None, keys_dir: str | None = None) -> BusConfig:
    config = BusConfig.from_env()
    if keys_dir is not None:
        config = config.with_(keys_dir=keys_dir)
    if host is not None:
        config = config.with_(transport="tcp", host=host, topic_hosts={})
    if port_base is not None:
        config = config.with_(port_base=port_base)
    return config


def subscribe(topic: str, *, host: str | None = None, port_base: int | None = None,
              latest_only: bool = False, keys_dir: str | None = None) -> Subscriber:
    """A subscriber to ``topic``: iterate it, or call ``recv(timeout_s)``; use it as a context manager."""
    delivery = Delivery.LATEST if latest_only else Delivery.EVERY
    return Subscriber(topic, delivery=delivery, config=_config(host, port_base, keys_dir))


def next_message(topic: str, *, host: str | None = None, port_base: int | None = None,
                 timeout_s: float = 5.0, keys_dir: str | None = None):
    """The next well-formed message on ``topic``, or None if none arrives within ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    with subscribe(topic, host=host, port_base=port_base, keys_dir=keys_dir) as sub:
        while (left := deadline - time.monotonic()) > 0:
            msg = sub.recv(timeout_s=left)  # rejected messages are skipped and counted by the subscriber
            if msg is not None:
                return msg
    return None
