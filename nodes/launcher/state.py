"""The launcher's view of its nodes, in a small JSON file that ``streetloc node list`` reads.

Each running launcher keeps ``<STREETLOC_IPC_DIR>/launch-<launcher pid>.json`` up to date (rewritten
atomically about once a second and on every change, removed when it exits). Diagnostics on the bus say
how each node is doing (rates, errors, readiness); only the launcher knows how often it restarted a node
and which nodes are waiting, backing off or given up, so that goes here. The file also records the bus
the launcher runs, so that ``node list`` finds its diagnostics whatever the transport.

The folder is the bus's private ipc folder (``nodes.bus.topics.private_dir``: checked before use); the
file and its temporary are created with mode 0600 whatever the umask, and never through a symlink.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

from nodes.bus.topics import private_dir

STATE_GLOB = "launch-*.json"


class NodeState(msgspec.Struct, kw_only=True):
    """One supervised node as its launcher sees it."""

    name: str
    module: str
    machine: str = ""
    state: str  # waiting, running, backoff, exited, failed, crash-loop, stopping, stopped
    pid: int | None = None
    restarts: int = 0  # since the launcher started
    started_ns: int | None = None  # wall clock of the current (or last) start
    exit_code: int | None = None  # of the last exit; negative: killed by that signal
    detail: str = ""  # what it waits for, when it restarts, why it was given up


class LauncherState(msgspec.Struct, kw_only=True):
    launcher_pid: int
    file: str
    machine: str = ""
    started_ns: int
    updated_ns: int
    log_dir: str
    bus: dict[str, str]  # BusConfig.to_env() of the launcher's bus
    nodes: list[NodeState] = []


def state_path(ipc_dir: str, pid: int | None = None) -> Path:
    return Path(ipc_dir) / f"launch-{os.getpid() if pid is None else pid}.json"


def write_state(path: Path, state: LauncherState) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file. The folder is checked private
    first (IpcDirError otherwise); the temporary file is made afresh (O_EXCL, O_NOFOLLOW, mode 0600), so
    whatever lies at its name (a symlink planted to make this process overwrite another file, a stale
    temporary) is removed, never written through; ``os.replace`` then swaps the name itself."""
    private_dir(path.parent)
    tmp = path.with_suffix(".json.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # unlink removes a symlink itself, not its target
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the open mode went through the umask
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(msgspec.json.encode(state))
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    try:  # a killed launcher whose parent has not reaped it yet is a zombie: dead all the same
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_states(ipc_dir: str) -> list[LauncherState]:
    """The state of every live launcher using ``ipc_dir``; files of dead launchers (killed with SIGKILL,
    so they could not clean up) are removed."""
    states = []
    private_dir(ipc_dir, create=False)  # another user's folder could hold made-up states
    for path in sorted(Path(ipc_dir).glob(STATE_GLOB)):
        try:
            state = msgspec.json.decode(path.read_bytes(), type=LauncherState)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
        if _alive(state.launcher_pid):
            states.append(state)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return states
