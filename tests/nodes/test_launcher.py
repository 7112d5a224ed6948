"""``streetloc launch`` with real node processes: respawn, crash loops, clean stops, no orphans, and a
graph split across two launchers over tcp on loopback.

Every test has a bus of its own (a fresh STREETLOC_IPC_DIR, a random tcp port base) and a marker in
the environment of every process it starts; processes are counted by that marker, and whatever still
carries it at the end of a test is killed, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodes.cli import main
from nodes.launcher.description import NodeEntry
from nodes.launcher.state import LauncherState, read_states
from nodes.launcher.supervisor import restart_delay_s, should_restart

REPO = Path(__file__).resolve().parents[2]
MARK = "STREETLOC_LAUNCH_TEST"  # the launcher passes its environment on to the nodes


def marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries ``MARK=mark`` (launchers and the nodes they started)."""
    needle = f"{MARK}={mark}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as fh:
                zombie = fh.read().rpartition(")")[2].split()[0] == "Z"
        except OSError:
            continue
        if needle in env and not zombie:
            pids.append(int(entry))
    return pids


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


class Launch:
    """One ``streetloc launch`` process, its console output in a file."""

    def __init__(self, proc: subprocess.Popen, out: Path, ipc_dir: Path, log_dir: Path) -> None:
        self.proc, self.out, self.ipc_dir, self.log_dir = proc, out, ipc_dir, log_dir

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def state(self) -> LauncherState | None:
        states = [s for s in read_states(str(self.ipc_dir)) if s.launcher_pid == self.proc.pid]
        return states[0] if states else None

    def nodes(self) -> dict[str, dict]:
        state = self.state()
        return {n.name: {"state": n.state, "pid": n.pid, "restarts": n.restarts} for n in state.nodes} if state else {}

    def running(self, *names: str) -> dict[str, dict] | None:
        nodes = self.nodes()
        ok = all(nodes.get(n, {}).get("state") == "running" for n in names)
        return nodes if ok else None

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 5.0) -> tuple[int, float]:
        """Signal the launcher; (exit code, seconds it took to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s + 5)
        return code, time.monotonic() - t0


class Bus:
    """The test's bus and process marker; starts launchers in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mark = uuid.uuid4().hex
        self.launches: list[Launch] = []

    def env(self, name: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREETLOC_")}
        env.update({MARK: self.mark, "STREETLOC_IPC_DIR": str(self.root / f"ipc-{name}"), "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def launch(self, file: str | Path, *args: str, name: str = "a", env: dict[str, str] | None = None) -> Launch:
        out = self.root / f"console-{name}.txt"
        log_dir = self.root / f"logs-{name}"
        env = env or self.env(name)
        with open(out, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "nodes.cli", "launch", str(file), "--log-dir", str(log_dir),
                                     *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        launch = Launch(proc, out, Path(env["STREETLOC_IPC_DIR"]), log_dir)
        self.launches.append(launch)
        return launch

    def cleanup(self) -> None:
        for launch in self.launches:
            if launch.proc.poll() is None:
                launch.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                launch.proc.wait(timeout=5)
        for pid in marked_pids(self.mark):  # nodes a broken launcher may have left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    b = Bus(tmp_path)
    try:
        yield b
    finally:
        b.cleanup()


def node_list(monkeypatch, capsys, launch: Launch) -> dict[str, dict]:
    """``streetloc node list --json`` against ``launch``'s bus, by node name."""
    monkeypatch.setenv("STREETLOC_IPC_DIR", str(launch.ipc_dir))
    capsys.readouterr()
    assert main(["node", "list", "--json", "--duration", "2.5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {r["name"]: r for r in rows}


def rate(row: dict, topic: str, direction: str) -> float:
    return next((t["rate_hz"] for t in row["topics"] if t["topic"] == topic and t["direction"] == direction), 0.0)


def test_bringup_survives_a_killed_node_and_stops_cleanly(bus, monkeypatch, capsys):
    launch = bus.launch(REPO / "launch/bringup.toml")
    nodes = wait_for(lambda: launch.running("camera", "monitor"), 20, "camera and monitor running")
    camera_pid, monitor_pid = nodes["camera"]["pid"], nodes["monitor"]["pid"]
    assert len(marked_pids(bus.mark)) == 3  # the launcher and two nodes

    # `streetloc node list`: pid, restarts and rates from the diagnostics
    rows = wait_for(lambda: (r := node_list(monkeypatch, capsys, launch)) and rate(r["monitor"], "camera/image", "in") > 0
                    and r, 15, "camera/image flowing to the monitor")
    assert rows["camera"]["pid"] == camera_pid and rows["camera"]["restarts"] == 0
    assert rate(rows["camera"], "camera/image", "out") > 0
    assert main(["node", "list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["NODE", "STATE", "PID", "UPTIME", "RESTARTS", "READY", "STATUS", "RATES"]
    assert f"camera   running  {camera_pid}" in table

    # the monitor started only once the camera published
    out = launch.output()
    assert "monitor: waiting for topic camera/image" in out
    assert out.index("monitor: waiting") < out.index("monitor: starting after")

    os.kill(camera_pid, signal.SIGKILL)
    nodes = wait_for(lambda: (n := launch.running("camera")) and n["camera"]["pid"] != camera_pid and n,
                     20, "the camera respawned")
    assert nodes["camera"]["restarts"] == 1
    assert nodes["monitor"]["pid"] == monitor_pid  # the rest of the graph was left alone
    assert "camera: killed by SIGKILL" in launch.output()


    # Ctrl-C with a hung node (stopped, so it cannot act on SIGTERM): SIGKILL after its stop_timeout_s
    # (3 s by default), and still everything down within 5 s
    os.kill(monitor_pid, signal.SIGSTOP)
    code, took_s = launch.stop(signal.SIGINT)
    out = launch.output()
    assert code == 0, out
    assert took_s < 5.0
    assert "stopping: SIGINT received" in out
    assert "monitor: still running 3 s after SIGTERM; SIGKILL" in out
    assert marked_pids(bus.mark) == []
    assert list(launch.ipc_dir.glob("launch-*.json")) == []  # node list will not show a dead launcher
    assert {"camera.log", "monitor.log", "launch.log"} <= {p.name for p in launch.log_dir.iterdir()}
    assert "start #2" in (launch.log_dir / "camera.log").read_text()


@pytest.mark.parametrize("respawn, exit_code, restarted", [
    ("on-failure", 0, False), ("on-failure", 1, True), ("on-failure", -9, True),
    ("always", 0, True), ("always", 2, True), ("never", 1, False), ("never", -9, False), ("never", 0, False),
])
def test_respawn_policy(respawn, exit_code, restarted):
    assert should_restart(respawn, exit_code) is restarted


def test_respawn_delay_backs_off_exponentially_up_to_its_cap():
    entry = NodeEntry(module="nodes.test_pattern", respawn_delay_s=0.5, respawn_backoff=2.0, respawn_max_delay_s=5.0)
    assert [restart_delay_s(entry, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    flat = NodeEntry(module="nodes.test_pattern", respawn_delay_s=0.5, respawn_backoff=1.0)
    assert {restart_delay_s(flat, n) for n in range(1, 5)} == {0.5}


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def test_crash_loop_is_reported_and_given_up(bus, tmp_path):
    # A real failure: another process holds camera/image, so every start of the camera exits with code 2.
    from nodes.bus.pubsub import Publisher
    from nodes.bus.topics import BusConfig

    file = write(tmp_path, "crash.toml", """
        [nodes.camera]
        module = "nodes.test_pattern"
        respawn_delay_s = 0.1
        max_restarts = 2
        restart_window_s = 30
        """)
    env = bus.env("a")
    squatter = Publisher("camera/image", config=BusConfig(ipc_dir=env["STREETLOC_IPC_DIR"]))
    try:
        launch = bus.launch(file, env=env)
        code = launch.proc.wait(timeout=30)  # no node left running: the launcher ends by itself
    finally:
        squatter.close()
    out = launch.output()
    assert code == 1, out
    assert out.count("camera: exited with code 2") == 3  # started, restarted twice, given up
    assert "camera: crash loop: ended 3 times within 30 s (last: exited with code 2); not restarted" in out
    # exponential backoff: 0.1 s, then twice that
    assert "camera: restart in 0.1 s (1 of at most 2 within 30 s)" in out
    assert "camera: restart in 0.2 s (2 of at most 2 within 30 s)" in out
    # the node's own output, prefixed with its name, and repeated in the report
    assert "[camera] error: cannot publish camera/image" in out
    assert "[launch]     error: cannot publish camera/image" in out
    assert "address in use" in (launch.log_dir / "camera.log").read_text()
    assert marked_pids(bus.mark) == []


def test_sigkill_of_the_launcher_leaves_no_process(bus):
    from nodes.bus.topics import BusConfig
    from nodes.commands.node import collect_diagnostics

    launch = bus.launch(REPO / "launch/bringup.toml")
    wait_for(lambda: launch.running("camera", "monitor"), 20, "camera and monitor running")
    config = BusConfig.from_env(launch.state().bus)
    wait_for(lambda: {"camera", "monitor"} <= set(collect_diagnostics([config], 1.5)), 15, "both nodes up")
    assert len(marked_pids(bus.mark)) == 3
    launch.proc.kill()
    launch.proc.wait(timeout=5)
    wait_for(lambda: marked_pids(bus.mark) == [], 5, "the nodes to die with their launcher")


def test_wait_for_ready_and_required_node(bus, tmp_path):
    file = write(tmp_path, "required.toml", """
        [nodes.camera]
        module = "nodes.test_pattern"
        respawn = "on-failure"
        required = true
        [nodes.monitor]
        module = "nodes.monitor"
        params = { topics = ["camera/image"] }
        wait_for_ready = ["camera"]
        """)
    launch = bus.launch(file)
    nodes = wait_for(lambda: launch.running("camera", "monitor"), 20, "both running")
    assert "monitor: starting after" in launch.output() and "waiting for node camera ready" in launch.output()
    # SIGTERM: the node stops and exits 0, which on-failure does not restart; required, so the graph stops
    os.kill(nodes["camera"]["pid"], signal.SIGTERM)
    code = launch.proc.wait(timeout=10)
    out = launch.output()
    assert code == 0, out
    assert "camera: exited with code 0" in out
    assert "stopping: required node camera ended" in out and "camera: restart" not in out
    assert marked_pids(bus.mark) == []


def test_graph_split_across_two_launchers_over_tcp(bus):
    """launch/split.toml on loopback: the robot part (camera) on 127.0.0.1, the box part (monitor) on
    127.0.0.2, as two machines would run it."""
    port_base = random.randrange(20000, 60000, 10)
    common = {"STREETLOC_PORT_BASE": str(port_base)}
    robot = bus.launch(REPO / "launch/split.toml", "--machine", "robot", name="robot", env=bus.env("robot", **common))
    box = bus.launch(REPO / "launch/split.toml", "--machine", "box", name="box", env=bus.env("box", **common))
    wait_for(lambda: robot.running("camera"), 20, "the camera on the robot")
    wait_for(lambda: box.running("monitor"), 20, "the monitor on the box (after camera/image is seen over tcp)")
    assert set(robot.nodes()) == {"camera"} and set(box.nodes()) == {"monitor"}
    assert box.state().bus["STREETLOC_TOPIC_HOSTS"] == "camera/image=127.0.0.1"

    from nodes.bus.topics import BusConfig
    from nodes.commands.node import collect_diagnostics

    box_bus = BusConfig.from_env(box.state().bus)
    diags = wait_for(lambda: (d := collect_diagnostics([box_bus], 1.5)).get("monitor")
                     and any(t.topic == "camera/image" and t.rate_hz > 0 for t in d["monitor"].topics) and d,
                     15, "frames reaching the box's monitor")
    assert "camera" not in diags  # each machine forwards its own nodes' diagnostics

    for launch in (box, robot):
        code, took_s = launch.stop(signal.SIGTERM)
        assert code == 0, launch.output()
        assert took_s < 5.0
    assert marked_pids(bus.mark) == []


def test_sigkill_of_replay_with_launch_leaves_no_process(bus, tmp_path):
    """`streetloc replay DRIVE --launch FILE` starts the graph's launcher; if the replay is killed outright
    the launcher is told (SIGTERM) and takes its graph down with it."""
    file = write(tmp_path, "graph.toml", """
        external_topics = ["camera/image"]
        [nodes.monitor]
        module = "nodes.monitor"
        params = { topics = ["camera/image"] }
        """)
    drive = REPO / "sim_data/drives/test_small.mcap"
    out = tmp_path / "replay-console.txt"
    with open(out, "wb") as fh:
        replay = subprocess.Popen([sys.executable, "-m", "nodes.cli", "replay", str(drive), "--loop",
                                   "--launch", str(file)], stdout=fh, stderr=subprocess.STDOUT,
                                  env=bus.env("replay"), cwd=REPO)
    try:
        # replay, its launcher and the monitor node
        wait_for(lambda: len(marked_pids(bus.mark)) >= 3, 30, "the replay, its launcher and the node")
        replay.kill()
        replay.wait(timeout=5)
        wait_for(lambda: marked_pids(bus.mark) == [], 15, "the launched graph to stop after the replay died")
    finally:
        if replay.poll() is None:
            replay.kill()
    assert "[launch]" in out.read_text(errors="replace")
