"""``streetloc demo`` end to end: the launched replay graph (PoseNet, detector, segmenter, fusion, NMEA),
a lock-step replay, raw fixes and fused poses scored against GPS, the latency table, the picture.

The fast test uses a tiny untrained PoseNet on a slice of the drive, so its figures say nothing of
accuracy; they must equal what the same checkpoint gives offline, scored here independently against the
drive's GPS. The slow test runs the demo as the README's first command does (default models, every frame)."""

from __future__ import annotations

import json
import re
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


def test_demo_runs_the_whole_graph_on_a_slice_and_scores_it(tiny_checkpoint, bus_config, tmp_path):
    """A 3 s slice of the shipped drive (9 frames at 3 Hz) through every node: each frame answered by all three
    CNNs, raw PoseNet scored by eval's scorer against the GPS exactly as computed here, the picture, the
    latency of every hop."""
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--model", tiny_checkpoint, "--device", "cpu",
                          "--end-s", "3", "--out", str(tmp_path / "demo"), "--json"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    drive = str(DEFAULT_DEMO_DRIVE)
    assert figures["drive"] == drive and figures["mode"] == "lockstep"
    assert figures["frames"] == figures["frames_replayed"] == figures["fixes"] == 9
    assert figures["frames_unanswered"] == 0
    # every CNN answered every frame; fusion published poses (at each fix and on its 20 Hz tick)
    rec = figures["recorded"]
    assert rec["posenet/fix"] == rec["perception/detections"] == rec["perception/segmentation"] == 9
    assert rec["localization/pose"] >= 9

    # the raw fixes' errors against the drive's GPS at each frame's stamp, computed here with geodesics
    fixes = offline_fixes(tiny_checkpoint, drive)[:9]
    stamps = np.array([f.header.stamp_ns for f in fixes])
    with DriveReader(drive) as reader:
        truth, inside = reader.track().interpolate(stamps)
    assert inside.all()
    _, _, errors_m = pyproj.Geod(ellps="WGS84").inv([f.lon_deg for f in fixes], [f.lat_deg for f in fixes],
                                                    truth.lon_deg, truth.lat_deg)
    raw = figures["scores"]["posenet"]
    # (the untrained net answers nearly one point for every frame, about 1.6 km from the route)
    assert raw["median_m"] == pytest.approx(float(np.median(errors_m)), abs=0.05)
    assert raw["max_m"] == pytest.approx(float(np.max(errors_m)), abs=0.05)
    assert raw["median_m"] > 1000.0 and raw["samples"] == 9
    assert "fused" in figures["scores"]

    # the picture of `streetloc eval --plot`, next to the run
    assert figures["plot"] == str(tmp_path / "demo" / "run.png") and figures["run"] == str(tmp_path / "demo" / "run.mcap")
    assert (tmp_path / "demo" / "run.png").read_bytes()[:4] == b"\x89PNG"
    # the latency of every hop of the graph, one sample per frame
    hops = {r["stage"]: r for r in figures["latency"]}
    for stage in ("replay -> posenet", "posenet -> fusion", "replay -> detector", "replay -> segmenter",
                  "replay -> fusion (total)"):
        assert hops[stage]["n"] == 9 and 0 < hops[stage]["p50_ms"] <= hops[stage]["p95_ms"] < 30_000, stage


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


@pytest.mark.slow
def test_demo_as_the_readme_runs_it_prints_both_tables_and_the_picture(bus_config, tmp_path):
    """The README's first command: default drive, default models, every frame through the whole graph."""
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "demo", "--device", "cpu", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "150 frames of demo_city.mcap through PoseNet, detector, segmenter and fusion" in text
    rows = {m[1]: m[0].split() for m in re.finditer(r"^(posenet|fused|fused_at_fixes) +[\d.]+ .*$", text, re.M)}
    assert set(rows) == {"posenet", "fused", "fused_at_fixes"}
    # fused beats raw where it matters: the look-alike streets (p95, > 20 m) are gone
    assert float(rows["fused_at_fixes"][2]) < float(rows["posenet"][2])
    assert float(rows["fused_at_fixes"][4].rstrip("%")) <= float(rows["posenet"][4].rstrip("%"))
    for hop in ("replay -> posenet", "posenet -> fusion", "replay -> detector", "replay -> segmenter"):
        assert any(line.startswith(hop) and " 150 " in line for line in text.splitlines()), hop
    plot = tmp_path / "run.png"
    assert f"plot: {plot}" in text and plot.stat().st_size > 10_000
