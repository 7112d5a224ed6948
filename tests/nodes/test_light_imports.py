"""Processes that never run a network must not pay for PyTorch (about 4 s of CPU per import here).

The launcher reads every node's Params to check a launch file, the demo and the CLI read PoseNet's
Params for their options, and the fusion/NMEA/monitor/replay nodes run without a model: importing any
of them must leave torch out of ``sys.modules``. (A top-level import of a model module in nodes/posenet.py
once doubled `streetloc demo`'s CPU time.)"""

from __future__ import annotations

import subprocess
import sys

LIGHT_MODULES = [
    "nodes.cli", "nodes.posenet", "nodes.detector", "nodes.fusion", "nodes.nmea", "nodes.monitor", "nodes.replay",
    "nodes.record", "nodes.foxglove_bridge", "nodes.segmenter",
    "nodes.launcher.graph", "nodes.launcher.supervisor", "nodes.commands.demo", "nodes.commands.replay",
    "nodes.commands.eval", "localization.metrics",
]


def test_light_processes_do_not_import_torch():
    code = ("import importlib, sys\n"
            f"for name in {LIGHT_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'torch' in sys.modules:\n"
            "        sys.exit(f'{name} imported torch')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
