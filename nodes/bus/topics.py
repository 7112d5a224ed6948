"""Where each topic's endpoint lies. The topic table itself is `perception.drives.topics` (one table for
the bus and the drives); this module re-exports its bus topics and computes their endpoints. Nothing
else in the code spells an endpoint.

Endpoints: one publisher binds each topic's endpoint and subscribers connect to it. ``fan_in`` topics
(``diagnostics``: every node publishes) go through a forwarder: publishers connect to the topic's
``fan_in_port_offset`` endpoint, the forwarder (run by the launcher, see ``nodes.bus.forwarder``) relays
to the subscriber endpoint. Ports are explicit offsets from a configurable base, never table order.

Configuration (environment, or a ``BusConfig`` passed explicitly):
  STREETLOC_TRANSPORT   ipc | tcp                              (default ipc)
  STREETLOC_IPC_DIR     folder of ipc sockets and launcher state files (default $XDG_RUNTIME_DIR/streetloc
                        when XDG_RUNTIME_DIR is set, else /tmp/streetloc-<uid>)
  STREETLOC_HOST        host that subscribers connect to       (default 127.0.0.1)
  STREETLOC_BIND        interface publishers bind, tcp only    (default 127.0.0.1: localhost only)
  STREETLOC_PORT_BASE   first tcp port                         (default 47100)
  STREETLOC_TOPIC_HOSTS per-topic hosts, "camera/image=10.0.0.2,gps/fix=10.0.0.2" (graphs split
                        across machines: a subscriber connects to the host where the topic's publisher runs)
  STREETLOC_KEYS_DIR    CurveZMQ keys folder (``streetloc keys generate``): tcp sockets authenticate and
                        encrypt, binding ones accept only its allow-list (nodes/bus/security.py)
  STREETLOC_INSECURE    1: allow binding tcp beyond loopback without keys (refused otherwise)

The ipc folder is private (``private_dir``): created 0700 when missing, and before any socket is bound
or connected in it, checked as ssh checks ``~/.ssh`` -- a real folder (not a symlink), owned by this user,
no group/other permission bits -- or refused with one line naming the folder and what is wrong. A folder
another local user created first (``/tmp/streetloc-<uid>`` is a predictable name) could otherwise let them
squat a topic's socket, delete ours, or plant symlinks.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace

from nodes.bus.security import insecure_bind_refusal, is_local_bind
from perception.drives.topics import BUS_TOPICS, Topic

TOPICS: dict[str, Topic] = BUS_TOPICS  # the bus's view of the one table (perception.drives.topics)

__all__ = ["TOPICS", "BusConfig", "IpcDirError", "Topic", "default_ipc_dir", "get_topic", "private_dir"]

IPC_DIR_MODE = 0o700  # the ipc folder: this user only


class IpcDirError(OSError):
    """The ipc folder is not private to this user (or cannot be made); the message is one line naming the
    folder and what is wrong."""


def default_ipc_dir(env: dict[str, str] | None = None) -> str:
    """``$XDG_RUNTIME_DIR/streetloc`` when the session has a runtime folder (per-user, 0700, on tmpfs,
    removed at logout: systemd-logind) and it exists, else ``/tmp/streetloc-<uid>``."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, "streetloc")
    return f"/tmp/streetloc-{os.getuid()}"


def private_dir(path: str | os.PathLike[str], *, create: bool = True) -> str:
    """``path`` after making sure that only this user can use it: created with mode 0700 when missing
    (``create``; its parents as ``mkdir -p``), then checked with ``os.lstat`` (a symlink is not followed):
    a folder, owned by the effective uid, no group/other permission bits. IpcDirError otherwise, one line
    naming the folder, what is wrong and what to do, as ssh refuses a ``~/.ssh`` others can write."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return path
        try:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            os.mkdir(path, IPC_DIR_MODE)
            # mkdir's mode goes through the umask: set it exactly, on the folder just made (no symlink)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                if os.fstat(fd).st_uid == os.geteuid():
                    os.fchmod(fd, IPC_DIR_MODE)
            finally:
                os.close(fd)
        except FileExistsError:
            pass  # created meanwhile (another of our processes, or someone else): checked below
        except OSError as exc:
            raise IpcDirError(f"ipc folder {path}: cannot create it: {exc.strerror or exc}") from None
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise IpcDirError(f"ipc folder {path}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise IpcDirError(f"ipc folder {path}: {exc.strerror or exc}") from None
    problem = ""
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a folder"
    elif st.st_uid != os.geteuid():
        problem = f"is owned by {_user(st.st_uid)}, not by you ({_user(os.geteuid())})"
    elif st.st_mode & 0o077:
        problem = (f"has mode {stat.S_IMODE(st.st_mode):03o}: other users may use it "
                   f"(chmod 700 {path}, if it is yours)")
    if problem:
        raise IpcDirError(f"ipc folder {path} {problem}; refusing to use it "
                          "(set STREETLOC_IPC_DIR to a folder of your own)")
    return path


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


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
    ipc_dir: str = field(default_factory=default_ipc_dir)
    host: str = "127.0.0.1"
    bind: str = "127.0.0.1"
    port_base: int = 47100
    topic_hosts: dict[str, str] = field(default_factory=dict)
    keys_dir: str = ""  # CurveZMQ keys folder; "" = no authentication (nodes/bus/security.py)
    insecure: bool = False  # opt-in: bind tcp beyond loopback without keys

    def __post_init__(self) -> None:
        if self.transport not in ("ipc", "tcp"):
            raise ValueError(f"bus transport {self.transport!r} is not 'ipc' or 'tcp'")
        if self.transport == "tcp" and not self.keys_dir and not self.insecure and not is_local_bind(self.bind):
            raise ValueError(insecure_bind_refusal(self.bind))
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
        if env.get("STREETLOC_IPC_DIR"):
            kwargs["ipc_dir"] = env["STREETLOC_IPC_DIR"]
        else:
            kwargs["ipc_dir"] = default_ipc_dir(env)
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
        if env.get("STREETLOC_KEYS_DIR"):
            kwargs["keys_dir"] = env["STREETLOC_KEYS_DIR"]
        kwargs["insecure"] = cls.insecure_from_env(env)
        return cls(**kwargs)

    @staticmethod
    def insecure_from_env(env: dict[str, str] | None = None) -> bool:
        """STREETLOC_INSECURE as a bool (unset: False); ValueError naming it if not 0/1."""
        env = os.environ if env is None else env
        value = env.get("STREETLOC_INSECURE", "").strip().lower()
        if value not in ("", "0", "1", "true", "false", "yes", "no"):
            raise ValueError(f"STREETLOC_INSECURE={env['STREETLOC_INSECURE']!r} is not 0 or 1")
        return value in ("1", "true", "yes")

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
        if self.keys_dir:
            env["STREETLOC_KEYS_DIR"] = os.path.abspath(self.keys_dir)
        if self.insecure:
            env["STREETLOC_INSECURE"] = "1"
        return env

    def with_(self, **changes) -> BusConfig:
        return replace(self, **changes)

    # -- endpoints -------------------------------------------------------------------------------
    def _ipc(self, topic: Topic, suffix: str = "", *, check: bool = True) -> str:
        """The ipc endpoint of ``topic``; with ``check``, for a socket about to be bound or connected,
        the folder is created or checked first (``private_dir``: IpcDirError if not private)."""
        if check:
            private_dir(self.ipc_dir)
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
        """The subscriber endpoint as text, for listings (the folder is neither created nor checked)."""
        if self.transport == "ipc":
            return self._ipc(topic, check=False)
        return self.subscriber_endpoint(topic)
