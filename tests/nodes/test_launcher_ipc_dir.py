"""The ipc folder is private (issue 16 item 2): under $XDG_RUNTIME_DIR when set, else /tmp/streetloc-<uid>,
created 0700 and checked (owner, mode, not a symlink) before a socket or a state file is made in it; a
folder another user made first is refused with one line. Where the tests run as root, the other user is
real (``nobody`` creates the folder); the ownership check is also driven directly for any user."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.bus.pubsub import Publisher, Subscriber
from nodes.bus.topics import BusConfig, IpcDirError, default_ipc_dir, private_dir
from nodes.launcher.state import LauncherState, read_states, state_path, write_state
from perception.drives.topics import CAMERA_TOPIC

REPO = Path(__file__).resolve().parents[2]


def _other_user() -> pwd.struct_passwd | None:
    """A second local user this process can act as: ``nobody`` when running as root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A world-writable sticky folder like /tmp, where another user can create folders (pytest's tmp_path
    is 0700: no other user gets in)."""
    root = Path(tempfile.mkdtemp(prefix="streetloc-ipc-test-", dir="/tmp"))
    root.chmod(0o1777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _state(path: Path) -> LauncherState:
    return LauncherState(launcher_pid=os.getpid(), file="x.toml", started_ns=1, updated_ns=2, log_dir="/nowhere",
                         bus={})


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60, env={**os.environ, **env})


# -- where the folder is -------------------------------------------------------------------------------

def test_default_folder_is_under_xdg_runtime_dir_when_the_session_has_one(tmp_path):
    assert default_ipc_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == str(tmp_path / "streetloc")
    assert BusConfig.from_env({"XDG_RUNTIME_DIR": str(tmp_path)}).ipc_dir == str(tmp_path / "streetloc")
    assert default_ipc_dir({}) == f"/tmp/streetloc-{os.getuid()}"
    assert default_ipc_dir({"XDG_RUNTIME_DIR": str(tmp_path / "gone")}) == f"/tmp/streetloc-{os.getuid()}"
    # STREETLOC_IPC_DIR wins, and children get it (to_env) whatever their own XDG_RUNTIME_DIR
    config = BusConfig.from_env({"XDG_RUNTIME_DIR": str(tmp_path), "STREETLOC_IPC_DIR": str(tmp_path / "mine")})
    assert config.ipc_dir == str(tmp_path / "mine") and config.to_env()["STREETLOC_IPC_DIR"] == config.ipc_dir


# -- creating and checking -----------------------------------------------------------------------------

def test_folder_is_created_0700_and_sockets_0600_even_with_umask_000(tmp_path):
    ipc = tmp_path / "deep" / "ipc"
    with _umask(0):
        config = BusConfig(ipc_dir=str(ipc))
        with Publisher(CAMERA_TOPIC, config=config) as pub:
            sock = Path(pub.endpoint.removeprefix("ipc://"))
            assert stat.S_IMODE(ipc.stat().st_mode) == 0o700
            assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        write_state(state_path(str(ipc)), _state(ipc))
    assert stat.S_IMODE(state_path(str(ipc)).stat().st_mode) == 0o600


@pytest.mark.parametrize("what", ["group-writable", "world-readable", "symlink", "file"])
def test_a_folder_that_is_not_private_is_refused_in_one_line(tmp_path, what):
    ipc = tmp_path / "ipc"
    if what == "symlink":  # even to a private folder of ours: the link could be changed under us
        (tmp_path / "real").mkdir(mode=0o700)
        ipc.symlink_to(tmp_path / "real")
    elif what == "file":
        ipc.write_text("")
    else:
        ipc.mkdir()
        ipc.chmod(0o770 if what == "group-writable" else 0o704)
    expected = {"group-writable": "has mode 770", "world-readable": "has mode 704",
                "symlink": "is a symbolic link", "file": "is not a folder"}[what]
    with pytest.raises(IpcDirError, match=f"^ipc folder {ipc} {expected}") as err:
        private_dir(ipc)
    assert "\n" not in str(err.value) and "STREETLOC_IPC_DIR" in str(err.value)
    config = BusConfig(ipc_dir=str(ipc))
    with pytest.raises(IpcDirError):
        Publisher(CAMERA_TOPIC, config=config)
    with pytest.raises(IpcDirError):
        Subscriber(CAMERA_TOPIC, config=config)  # a squatter's socket is not connected to either
    with pytest.raises(IpcDirError):
        write_state(ipc / "launch-1.json", _state(ipc))


def test_ownership_check_driven_directly(tmp_path, monkeypatch):
    """Any user: the folder's owner compared with the effective uid (as if another user had made it)."""
    ipc = tmp_path / "ipc"
    private_dir(ipc)
    monkeypatch.setattr(os, "geteuid", lambda: ipc.stat().st_uid + 4242)
    with pytest.raises(IpcDirError, match=r"is owned by .*not by you \(uid "):
        private_dir(ipc)


# -- a real second user --------------------------------------------------------------------------------

def _as_user(user: pwd.struct_passwd, *cmd: str) -> None:
    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)

    subprocess.run(cmd, check=True, preexec_fn=drop, timeout=10)


@pytest.mark.skipif(_other_user() is None, reason="needs root to act as a second local user (nobody)")
def test_a_folder_precreated_by_another_user_is_refused(shared_tmp):
    other = _other_user()
    assert other is not None
    ipc = shared_tmp / f"streetloc-{os.getuid()}"  # the predictable name, taken first by the other user
    _as_user(other, "/bin/mkdir", "-m", "777", str(ipc))
    assert ipc.stat().st_uid == other.pw_uid

    with pytest.raises(IpcDirError, match=f"ipc folder {ipc} is owned by {other.pw_name}"):
        Publisher(CAMERA_TOPIC, config=BusConfig(ipc_dir=str(ipc)))
    assert list(ipc.iterdir()) == []  # no socket made there

    env = {"STREETLOC_IPC_DIR": str(ipc), "STREETLOC_LOG_DIR": str(shared_tmp / "logs")}
    out = cli("launch", "launch/bringup.toml", "--arg", "monitor=false", env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith(f"streetloc launch: error: ipc folder {ipc} is owned by {other.pw_name}")
    assert list(ipc.iterdir()) == []  # nothing started: no socket, no state file

    # the other user's made-up launcher state is not read either
    out = cli("node", "list", env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "is owned by" in out.stderr


@pytest.mark.skipif(_other_user() is None, reason="needs root to act as a second local user (nobody)")
def test_our_own_folder_keeps_another_user_out(tmp_path, shared_tmp):
    other = _other_user()
    assert other is not None
    ipc = shared_tmp / "ours"
    with Publisher(CAMERA_TOPIC, config=BusConfig(ipc_dir=str(ipc))):
        probe = subprocess.run(["/usr/bin/test", "-x", str(ipc)], preexec_fn=lambda: os.setuid(other.pw_uid),
                               timeout=10)
        assert probe.returncode != 0  # cannot even enter it, so cannot connect, squat or delete


# -- the state file ------------------------------------------------------------------------------------

def test_a_symlink_planted_at_the_state_temporary_is_not_followed(tmp_path):
    ipc = tmp_path / "ipc"
    private_dir(ipc)
    victim = tmp_path / "precious.conf"
    victim.write_text("do not overwrite\n")
    path = state_path(str(ipc))
    tmp = path.with_suffix(".json.tmp")
    tmp.symlink_to(victim)  # what a squatter of the folder planted

    write_state(path, _state(ipc))

    assert victim.read_text() == "do not overwrite\n"
    assert not tmp.exists() and not tmp.is_symlink()
    assert path.is_file() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [s.launcher_pid for s in read_states(str(ipc))] == [os.getpid()]


def test_a_stale_temporary_is_replaced(tmp_path):
    ipc = tmp_path / "ipc"
    private_dir(ipc)
    path = state_path(str(ipc))
    path.with_suffix(".json.tmp").write_text("half a file from a killed launcher")
    write_state(path, _state(ipc))
    assert read_states(str(ipc))[0].file == "x.toml"
