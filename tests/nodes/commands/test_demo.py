"""``streetloc demo`` end to end: a launched PoseNet node, a lock-step replay, fixes scored against GPS.

Uses a tiny untrained checkpoint, so the figures say nothing of accuracy (that of the default model is
measured by `streetloc evaluate posenet`, see BENCHMARKS.md); they must equal what the same checkpoint
gives offline on every frame of the drive, scored here independently against the drive's GPS."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyproj
import pytest

from nodes.posenet import PoseNetNode, PoseNetParams
from perception.drives import DriveReader
from perception.drives.topics import CAMERA_TOPIC
from sim_data import DEFAULT_DEMO_DRIVE
from tests.conftest import save_tiny_posenet


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    origin = {"lat_deg": 34.0522, "lon_deg": -118.2437, "alt_m": 90.0}
    return save_tiny_posenet(tmp_path_factory.mktemp("ckpt") / "tiny.pt", origin=origin, anchor_spacing_m=10.0,
                             scale_m=100.0, position_cov_scale=1.0)


def offline_fixes(checkpoint: str, drive: str) -> list:
    """The checkpoint's fix for every camera frame of ``drive``, computed in this process."""
    node = PoseNetNode(PoseNetParams(model=checkpoint, device="cpu"))
    fixes = []
    with DriveReader(drive) as reader:
        for image in reader.images():
            [(_, fix)] = node.on_message(CAMERA_TOPIC, image, 0)
            fixes.append(fix)
    return fixes


def test_demo_localizes_every_frame_and_scores_it(tiny_checkpoint, bus_config):
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--model", tiny_checkpoint, "--device", "cpu",
                          "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    drive = str(DEFAULT_DEMO_DRIVE)
    assert figures["drive"] == drive and figures["mode"] == "lockstep"

    # every frame of the drive got a fix (150 in the shipped demo drive), all scored
    fixes = offline_fixes(tiny_checkpoint, drive)
    assert figures["fixes"] == figures["frames_replayed"] == figures["frames"] == len(fixes) == 150
    assert figures["model_id"] == fixes[0].source

    # the errors against the drive's GPS at each frame's stamp, computed here with geodesics
    stamps = np.array([f.header.stamp_ns for f in fixes])
    with DriveReader(drive) as reader:
        truth, inside = reader.track().interpolate(stamps)
    assert inside.all()
    _, _, errors_m = pyproj.Geod(ellps="WGS84").inv([f.lon_deg for f in fixes], [f.lat_deg for f in fixes],
                                                    truth.lon_deg, truth.lat_deg)
    # (the untrained net answers nearly one point for every frame, about 1.6 km from the route)
    assert figures["position_error_m_median"] == pytest.approx(float(np.median(errors_m)), abs=0.05)
    assert figures["position_error_m_max"] == pytest.approx(float(np.max(errors_m)), abs=0.05)
    assert figures["position_error_m_p95"] == pytest.approx(float(np.percentile(errors_m, 95)), abs=0.05)
    assert figures["position_error_m_median"] > 1000.0  # not a zero error from scoring a fix against itself
    assert 0 <= figures["within_95_ellipse"] <= 1 and figures["latency_ms_median"] > 0


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
