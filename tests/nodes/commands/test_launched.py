"""``nodes.commands.launched``: the one launch-then-stop of the command layer (replay --launch, demo)."""

from __future__ import annotations

import subprocess

from nodes.bus.pubsub import Subscriber
from nodes.commands import launched

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
