"""Where each topic's endpoint lies. The topic table itself is `perception.drives.topics` (one table for
the bus and the drives); this module re-exports its bus topics and computes their endpoints. Nothing
else in the code spells an endpoint.

Endpoints: one publisher binds each topic's endpoint and subscribers connect to it. ``fan_in`` topics
(``diagnostics``: every node publishes) go through a forwarder: publishers connect to the topic's
``fan_in_port_offset`` endpoint, the forwarder (run by the launcher, see ``nodes.bus.forwarder``) relays
to the subscriber endpoint. Ports are explicit offsets from a configurable base, never table order.

Configuration (environment, or a ``BusConfig`` passed explicitly):
  STREETLOC_TRANSPORT   ipc | tcp                              (default ipc)
  STREETLOC_IPC_DIR     folder of ipc sockets                  (default /tmp/streetloc-<uid>)
  STREETLOC_HOST        host that subscribers connect to       (default 127.0.0.1)
  STREETLOC_BIND        interface publishers bind, tcp only    (default 127.0.0.1: localhost only)
  STREETLOC_PORT_BASE   first tcp port                         (default 47100)
  STREETLOC_TOPIC_HOSTS per-topic hosts, "camera/image=10.0.0.2,gps/fix=10.0.0.2" (graphs split
                        across machines: a subscriber connects to the host where the topic's publisher runs)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from perception.drives.topics import BUS_TOPICS, Topic

TOPICS: dict[str, Topic] = BUS_TOPICS  # the bus's view of the one table (perception.drives.topics)

__all__ = ["TOPICS", "BusConfig", "Topic", "get_topic"]


def get_topic(name: str) -> Topic:
    """The table entry of a bus topic; a ValueError naming the bus topics otherwise (drive-only channels
    such as ``camera/calibration`` have no endpoint)."""
    topic = BUS_TOPICS.get(name)
    if topic is None:
        raise ValueError(f"unknown topic {name!r}; known topics: {', '.join(BUS_TOPICS)}")
    return topic


@dataclass(frozen=True)
class BusConfig:
    transport: str = "ipc"
    ipc_dir: str = field(default_factory=lambda: f"/tmp/streetloc-{os.getuid()}")
    host: str = "127.0.0.1"
    bind: str = "127.0.0.1"
    port_base: int = 47100
    topic_hosts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.transport not in ("ipc", "tcp"):
            raise ValueError(f"bus transport {self.transport!r} is not 'ipc' or 'tcp'")
        if not (1024 <= self.port_base <= 65000):
            raise ValueError(f"bus port base {self.port_base} is outside [1024, 65000]")
        for name in self.topic_hosts:
            get_topic(name)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BusConfig:
        env = os.environ if env is None else env
        kwargs: dict = {}
        if "STREETLOC_TRANSPORT" in env:
            kwargs["transport"] = env["STREETLOC_TRANSPORT"]
        if "STREETLOC_IPC_DIR" in env:
            kwargs["ipc_dir"] = env["STREETLOC_IPC_DIR"]
        if "STREETLOC_HOST" in env:
            kwargs["host"] = env["STREETLOC_HOST"]
        if "STREETLOC_BIND" in env:
            kwargs["bind"] = env["STREETLOC_BIND"]
        if "STREETLOC_PORT_BASE" in env:
            try:
                kwargs["port_base"] = int(env["STREETLOC_PORT_BASE"])
            except ValueError:
                raise ValueError(f"STREETLOC_PORT_BASE={env['STREETLOC_PORT_BASE']!r} is not an integer") from None
        if env.get("STREETLOC_TOPIC_HOSTS"):
            hosts = {}
            for item in env["STREETLOC_TOPIC_HOSTS"].split(","):
                name, sep, host = item.strip().partition("=")
                if not sep or not host:
                    raise ValueError(f"STREETLOC_TOPIC_HOSTS entry {item!r} is not topic=host")
                hosts[name] = host
            kwargs["topic_hosts"] = hosts
        return cls(**kwargs)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce this config in a child process."""
        env = {
            "STREETLOC_TRANSPORT": self.transport,
            "STREETLOC_IPC_DIR": self.ipc_dir,
            "STREETLOC_HOST": self.host,
            "STREETLOC_BIND": self.bind,
            "STREETLOC_PORT_BASE": str(self.port_base),
        }
        if self.topic_hosts:
            env["STREETLOC_TOPIC_HOSTS"] = ",".join(f"{k}={v}" for k, v in self.topic_hosts.items())
        return env

    def with_(self, **changes) -> BusConfig:
        return replace(self, **changes)

    # -- endpoints -------------------------------------------------------------------------------
    def _ipc(self, topic: Topic, suffix: str = "") -> str:
        return f"ipc://{self.ipc_dir}/{topic.name.replace('/', '.')}{suffix}.sock"

    def _tcp(self, host: str, offset: int) -> str:
        return f"tcp://{host}:{self.port_base + offset}"

    def publisher_endpoint(self, topic: Topic) -> tuple[str, bool]:
        """(endpoint, bind?) for a publisher of ``topic``."""
        if topic.fan_in:
            return self.forwarder_in_endpoint(topic, connect=True), False
        if self.transport == "ipc":
            return self._ipc(topic), True
        return self._tcp(self.bind, topic.port_offset), True

    def subscriber_endpoint(self, topic: Topic) -> str:
        """Endpoint a subscriber of ``topic`` connects to."""
        if self.transport == "ipc":
            return self._ipc(topic)
        return self._tcp(self.topic_hosts.get(topic.name, self.host), topic.port_offset)

    def forwarder_in_endpoint(self, topic: Topic, connect: bool = False) -> str:
        """Where publishers of a fan-in topic connect (``connect``) or the forwarder binds."""
        assert topic.fan_in_port_offset is not None
        if self.transport == "ipc":
            return self._ipc(topic, ".in")
        host = self.topic_hosts.get(topic.name, self.host) if connect else self.bind
        return self._tcp(host, topic.fan_in_port_offset)

    def forwarder_out_endpoint(self, topic: Topic) -> str:
        if self.transport == "ipc":
            return self._ipc(topic)
        return self._tcp(self.bind, topic.port_offset)

    def display_endpoint(self, topic: Topic) -> str:
        return self.subscriber_endpoint(topic)
