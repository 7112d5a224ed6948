"""SIGKILL of the process that owns a graph (issue 16 item 5): no node is left running, and every node
is stopped by SIGTERM and exits cleanly (exit code 0), never SIGKILLed.

- ``streetloc replay --launch`` killed: its launcher sees the end of the parent pipe (``--parent-fd``) and
  stops the graph once, as on one Ctrl-C. (With ``PR_SET_PDEATHSIG`` on the launcher the kernel could
  send it two SIGTERMs as the replay's threads died, and the second one meant "SIGKILL the nodes".)
- ``streetloc launch`` killed: each node gets ``PR_SET_PDEATHSIG`` SIGTERM and stops as on Ctrl-C.

A harness process made a child subreaper (``PR_SET_CHILD_SUBREAPER``) runs the command: the processes
orphaned by the kill become its children, so it can collect their exit status — which a test cannot see
for a grandchild otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVE = REPO / "sim_data/drives/test_small.mcap"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")

GRAPH = """
external_topics = ["camera/image", "gps/fix", "odometry", "posenet/fix"]
[nodes.fusion]
module = "nodes.fusion"
params = { tick_hz = 5.0 }
[nodes.monitor]
module = "nodes.monitor"
params = { topics = ["camera/image", "localization/pose"] }
"""

# argv: mode (replay | launch), launch file, ipc dir, log dir. Prints one JSON line.
HARNESS = r"""
import ctypes, glob, json, os, signal, subprocess, sys, time
from nodes.bus.topics import BusConfig
from nodes.commands.node import collect_diagnostics
from nodes.launcher.state import read_states
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come to us
mode, file, ipc_dir, log_dir = sys.argv[1:5]
if mode == "replay":
    cmd = ["replay", DRIVE, "--loop", "--launch", file]
else:
    cmd = ["launch", file, "--log-dir", log_dir]
top = subprocess.Popen([sys.executable, "-m", "nodes.cli", *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 60
nodes, launcher_pid = {}, None
while time.monotonic() < deadline:  # every node running and ready (its signal handlers installed)
    states = read_states(ipc_dir)
    if states and states[0].nodes and all(n.state == "running" for n in states[0].nodes):
        diagnostics = collect_diagnostics([BusConfig.from_env(states[0].bus)], 1.0)
        if all(n.name in diagnostics and diagnostics[n.name].ready for n in states[0].nodes):
            nodes = {n.name: n.pid for n in states[0].nodes}
            launcher_pid = states[0].launcher_pid
            break
    time.sleep(0.2)
else:
    top.kill()
    sys.exit("the graph never ran")
time.sleep(1.0)  # the replay plays frames to the graph
top.send_signal(signal.SIGKILL)
top.wait()
t_kill = time.monotonic()
reaped = {}
while time.monotonic() < t_kill + 20:
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid:
        reaped[pid] = os.waitstatus_to_exitcode(status)
    else:
        time.sleep(0.05)
left = [p for p in [launcher_pid, *nodes.values()] if os.path.exists(f"/proc/{p}")]
for p in left:
    os.kill(p, signal.SIGKILL)
print(json.dumps({"nodes": nodes, "launcher": launcher_pid, "reaped": reaped, "left": left,
                  "elapsed_s": time.monotonic() - t_kill}))
""".replace("DRIVE", repr(str(DRIVE)))


def run_harness(tmp_path: Path, mode: str) -> tuple[dict, Path]:
    file = tmp_path / "graph.toml"
    file.write_text(textwrap.dedent(GRAPH))
    ipc_dir, log_root = tmp_path / "ipc", tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETLOC_")}
    env.update({"STREETLOC_IPC_DIR": str(ipc_dir), "STREETLOC_LOG_DIR": str(log_root), "PYTHONPATH": str(REPO)})
    out = subprocess.run([sys.executable, "-c", HARNESS, mode, str(file), str(ipc_dir), str(log_root / "run")],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    launch_logs = sorted(log_root.glob("**/launch.log"))
    assert launch_logs, f"no launch.log under {log_root}"
    return result, launch_logs[-1].parent


@pytest.mark.slow
def test_sigkill_of_replay_stops_the_graph_once_with_sigterm(tmp_path):
    result, logs = run_harness(tmp_path, "replay")
    assert result["left"] == [], f"still running after the replay was killed: {result}"
    # the launcher came to the harness and exited on its own, cleanly
    assert result["reaped"].get(str(result["launcher"])) == 0, result
    log = (logs / "launch.log").read_text()
    assert log.count("stopping: the process that started this launcher") == 1, log
    assert "SIGKILL" not in log, log  # neither "second stop request" nor "still running ... SIGKILL"
    for name in result["nodes"]:
        assert f"{name}: stopped, exited with code 0" in log, log


@pytest.mark.slow
def test_sigkill_of_launch_stops_every_node_with_sigterm(tmp_path):
    result, _ = run_harness(tmp_path, "launch")
    assert result["left"] == [], f"nodes still running after their launcher was killed: {result}"
    for name, pid in result["nodes"].items():
        # orphaned, the node came to the harness: exit 0 is a clean stop (SIGKILL would be -9)
        assert result["reaped"].get(str(pid)) == 0, f"{name}: {result}"
    assert result["elapsed_s"] < 10
