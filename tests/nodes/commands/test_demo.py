"""``streetloc demo`` end to end: a launched PoseNet node, a lock-step replay, fixes scored against GPS.

Uses a tiny untrained checkpoint: this checks the plumbing and the figures' presence, not accuracy
(accuracy of the default model is measured by `streetloc evaluate posenet`, see BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim_data import DEFAULT_DEMO_DRIVE
from tests.conftest import save_tiny_posenet


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    origin = {"lat_deg": 34.0522, "lon_deg": -118.2437, "alt_m": 90.0}
    return save_tiny_posenet(tmp_path_factory.mktemp("ckpt") / "tiny.pt", origin=origin, anchor_spacing_m=10.0,
                             scale_m=100.0, position_cov_scale=1.0)


def test_demo_localizes_every_frame_and_scores_it(tiny_checkpoint, bus_config):
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--model", tiny_checkpoint, "--device", "cpu",
                          "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    assert figures["drive"] == str(DEFAULT_DEMO_DRIVE) and figures["mode"] == "lockstep"
    assert figures["fixes"] == figures["frames_replayed"] > 0
    for key in ("position_error_m_median", "position_error_m_p95", "within_95_ellipse", "latency_ms_median"):
        assert key in figures
    assert figures["position_error_m_median"] >= 0


def test_demo_rejects_a_missing_drive(bus_config):
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--drive", "/nonexistent.mcap"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no such drive" in out.stderr and "Traceback" not in out.stderr


def test_demo_rejects_a_file_that_is_not_a_drive_before_launching(bus_config, tmp_path):
    bad = tmp_path / "notes.mcap"
    bad.write_text("not a drive")
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--drive", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not an MCAP drive" in out.stderr and "Traceback" not in out.stderr
    assert "launched" not in out.stderr  # nothing was started for a drive that cannot be played
