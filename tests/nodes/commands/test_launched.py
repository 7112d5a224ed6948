"""``nodes.commands.launched``: the one launch-then-stop of the command layer (replay --launch, demo), and
``wait_until_ready``: the one wait for the launched graph."""

from __future__ import annotations

import subprocess

import pytest

from nodes.bus.pubsub import Subscriber
from nodes.commands import launched, wait_until_ready

GRAPH = """
[nodes.camera]
module = "nodes.test_pattern"
params = { rate_hz = "${fps}", width_px = 32, height_px = 24 }

[args.fps]
default = 20.0
description = "frame rate, Hz"
"""


def test_the_graph_runs_inside_the_block_and_stops_cleanly_after(bus_config, tmp_path):
    file = tmp_path / "graph.toml"
    file.write_text(GRAPH)
    with launched(file, launch_args={"fps": "25"}, options=["--log-dir", str(tmp_path / "logs")],
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        with Subscriber("camera/image", config=bus_config) as sub:
            msg = sub.recv(timeout_s=30)
        assert msg is not None and (msg.width_px, msg.height_px) == (32, 24)
        assert proc.poll() is None
    assert proc.returncode == 0, proc.stderr.read()[-2000:]  # stopped as Ctrl-C stops it, not killed


def test_a_launcher_that_failed_is_left_as_it_ended(bus_config, tmp_path):
    with launched(tmp_path / "missing.toml", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                  text=True) as proc:
        proc.wait(timeout=30)
    assert proc.returncode == 2 and "missing.toml not found" in proc.stderr.read()


WAITING_GRAPH = 'external_topics = ["posenet/fix"]  # a replay would publish it\n' + GRAPH + """
[nodes.monitor]
module = "nodes.monitor"
wait_for_topics = ["posenet/fix"]  # nobody here publishes it: started only once a replay's graph would
params = { topics = ["camera/image"] }

[nodes.monitor2]
module = "nodes.monitor"
wait_for_ready = ["monitor"]       # waits on a node that waits for a topic
params = { topics = ["camera/image"] }
"""


def test_wait_until_ready_waits_for_the_nodes_that_start_on_their_own(bus_config, tmp_path):
    file = tmp_path / "graph.toml"
    file.write_text(WAITING_GRAPH)
    with launched(file, options=["--log-dir", str(tmp_path / "logs")], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL) as proc:
        assert wait_until_ready(proc, file, timeout_s=60) == ["camera"]
        with Subscriber("camera/image", config=bus_config) as sub:  # it runs
            assert sub.recv(timeout_s=10) is not None


def test_wait_until_ready_names_the_nodes_not_ready_and_a_launcher_that_ended(bus_config, tmp_path):
    file = tmp_path / "graph.toml"
    file.write_text(GRAPH)
    with launched(file, options=["--log-dir", str(tmp_path / "logs")], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL) as proc:
        with pytest.raises(OSError, match=r"not ready after 0.01 s: camera \(no diagnostics\)"):
            wait_until_ready(proc, file, timeout_s=0.01)
        proc.terminate()
        proc.wait(timeout=30)
        with pytest.raises(OSError, match="the launcher exited"):
            wait_until_ready(proc, file, timeout_s=10)
