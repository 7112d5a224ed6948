"""benchmarks/ablation.py: a row recorded through the real graph, and the same row re-scored offline with
this tree's fusion node (--offline), give the same figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sim_data.drive import SimConfig, write_drive

REPO = Path(__file__).resolve().parents[2]


def _ablation(*args: str) -> dict:
    out = subprocess.run([sys.executable, "benchmarks/ablation.py", *args, "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_offline_rescoring_reproduces_the_graph(tmp_path):
    drive = tmp_path / "heldout.mcap"
    write_drive(SimConfig(route="random", route_seed=71, frames=40, fps=5.0), drive)
    runs = tmp_path / "runs"
    graph = _ablation(str(drive), "--out", str(runs), "--rows", "fusion")
    assert (runs / "fusion__heldout.mcap").exists()
    offline = _ablation(str(drive), "--out", str(runs), "--rows", "fusion", "--offline")
    assert graph["fusion"]["median_m"] is not None
    assert offline["fusion"] == graph["fusion"] and offline["raw_posenet"] == graph["raw_posenet"]


def test_offline_needs_a_recorded_run(tmp_path):
    drive = tmp_path / "d.mcap"
    write_drive(SimConfig(route="random", route_seed=72, frames=5, fps=5.0), drive)
    out = subprocess.run([sys.executable, "benchmarks/ablation.py", str(drive), "--out", str(tmp_path / "runs"),
                          "--rows", "fusion", "--offline"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "has not been recorded" in out.stderr
