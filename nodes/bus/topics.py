"""The one topic table, and where each topic's endpoint lies.

Every topic of the graph is listed once here with its message type, expected rate, whether the recorder
keeps it, and its endpoint. The launcher, the topic tools, the recorder, rate checks and docs read this
table; nothing else in the code spells an endpoint.

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

import msgspec

from nodes.bus.messages import (
    Detections,
    Diagnostics,
    GeoFix,
    Image,
    Odometry,
    Pose,
    Segmentation,
)


@dataclass(frozen=True)
class Topic:
    name: str
    message_type: type[msgspec.Struct]
    rate_hz: float  # expected publish rate; rate checks warn outside [0.5, 1.5] x this
    recorded: bool  # kept by `streetloc record` unless told otherwise
    port_offset: int  # tcp port = port_base + port_offset (the subscriber side for fan-in topics)
    description: str
    fan_in: bool = False  # many publishers, relayed by the forwarder
    fan_in_port_offset: int | None = None  # where publishers of a fan-in topic connect
    queue_depth: int = 10_000  # messages buffered per subscriber before the publisher drops for it

    @property
    def type_name(self) -> str:
        return self.message_type.__name__


_TOPIC_LIST = [
    Topic("camera/image", Image, 30.0, True, 0, "camera frames (BGR or JPEG) with intrinsics", queue_depth=32),
    Topic("posenet/fix", GeoFix, 30.0, True, 1, "PoseNet lat/lon + heading with learned covariance"),
    Topic("perception/detections", Detections, 30.0, True, 2, "YOLO boxes xyxy, classes, scores"),
    Topic("perception/segmentation", Segmentation, 10.0, True, 3, "PSPNet label mask and class fractions",
          queue_depth=64),
    Topic("odometry", Odometry, 50.0, True, 4, "forward speed and yaw rate from the robot or a drive"),
    Topic("gps/fix", GeoFix, 10.0, True, 5, "GPS receiver fix; ground truth in replay, never fused by default"),
    Topic("localization/pose", Pose, 20.0, True, 6, "fused pose with covariance and status"),
    Topic("diagnostics", Diagnostics, 1.0, False, 7, "per-node health at 1 Hz: rates, latency, errors",
          fan_in=True, fan_in_port_offset=8),
]

TOPICS: dict[str, Topic] = {t.name: t for t in _TOPIC_LIST}


def _check_table() -> None:
    ports: dict[int, str] = {}
    for t in _TOPIC_LIST:
        for offset in (t.port_offset, t.fan_in_port_offset):
            if offset is None:
                continue
            if offset in ports:
                raise RuntimeError(f"topic table: port offset {offset} used by {ports[offset]} and {t.name}")
            ports[offset] = t.name
        if t.fan_in != (t.fan_in_port_offset is not None):
            raise RuntimeError(f"topic table: {t.name}: fan_in needs fan_in_port_offset and vice versa")


_check_table()


def get_topic(name: str) -> Topic:
    """The table entry of ``name``; a ValueError naming the known topics otherwise."""
    try:
        return TOPICS[name]
    except KeyError:
        raise ValueError(f"unknown topic {name!r}; known topics: {', '.join(TOPICS)}") from None


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
