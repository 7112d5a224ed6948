"""`streetloc eval`: the figures a user reads off a recorded run, on runs whose errors are known, and the
record + lock-step replay path that makes a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from localization.geodesy import GeoOrigin, LocalFrame
from nodes.bus.messages import GeoFix, Header, Pose
from nodes.cli import main
from perception.drives import DriveMetadata, DriveReader, DriveWriter
from perception.drives.topics import GPS_TOPIC, POSE_TOPIC, POSENET_TOPIC
from sim_data import DEFAULT_DEMO_DRIVE

REPO = Path(__file__).resolve().parents[3]
T0_NS = 1_718_987_400_000_000_000
ORIGIN = GeoOrigin()
FRAME = LocalFrame(ORIGIN)


def geo(e: float, n: float) -> tuple[float, float]:
    lat, lon, _ = FRAME.to_geodetic(e, n)
    return float(lat), float(lon)


def write_run(path: Path, *, kidnap_at: int | None = None, truth: bool = True) -> None:
    """20 s at 5 Hz going north at 10 m/s. Fixes: 1 m east of the truth, every other one 100 m east (a
    look-alike). Poses at 10 Hz: 3 m east, std 2 m, TRACKING after 1 s (INITIALIZING before). A kidnap
    moves the truth 300 m east; the poses follow 2 s later, LOST in between."""
    with DriveWriter(str(path), DriveMetadata(source="test", geo_origin=ORIGIN)) as w:
        for k in range(200):
            t_ns = T0_NS + k * 100_000_000
            e, n = 0.0, 1.0 * k
            moved = kidnap_at is not None and k >= kidnap_at
            te = e + (300.0 if moved else 0.0)
            if k % 2 == 0:
                if truth:
                    w.write(GPS_TOPIC, GeoFix(Header(t_ns), *geo(te, n), heading_deg=0.0, speed_mps=10.0))
                off = 1.0 if k % 4 == 0 else 100.0
                w.write(POSENET_TOPIC, GeoFix(Header(t_ns), *geo(te + off, n), heading_deg=10.0,
                                              cov_enu_m2=(4.0, 0.0, 0.0, 4.0), heading_std_deg=5.0))
            status = "initializing" if k < 10 else "tracking"
            pe = e + 3.0
            if kidnap_at is not None and k >= kidnap_at:
                status = "lost" if k < kidnap_at + 20 else "tracking"
                pe = e + 3.0 + (300.0 if status == "tracking" else 0.0)
            w.write(POSE_TOPIC, Pose(Header(t_ns), *geo(pe, n), heading_deg=0.0, speed_mps=10.0,
                                     cov_enu_m2=(4.0, 0.0, 0.0, 4.0), heading_std_deg=3.0, status=status,
                                     valid=status == "tracking"))


def eval_json(capsys, *argv: str) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_figures_of_a_run_with_known_errors(tmp_path, capsys):
    run = tmp_path / "run.mcap"
    write_run(run)
    r = eval_json(capsys, str(run))
    fused, raw, at_fixes = r["fused"], r["posenet"], r["fused_at_fixes"]
    assert fused["median_m"] == pytest.approx(3.0, abs=0.01) and fused["p95_m"] == pytest.approx(3.0, abs=0.01)
    assert fused["over_20m"] == 0.0 and fused["in_95_ellipse"] == 1.0  # 3 m at std 2 m: inside 95 %
    assert fused["availability"] == pytest.approx(189 / 199, abs=0.01)  # the truth ends at 19.8 s
    assert fused["first_fix_s"] == pytest.approx(1.0) and fused["heading_median_deg"] == pytest.approx(0.0)
    assert at_fixes["samples"] == 100
    assert raw["median_m"] == pytest.approx(50.5, abs=0.1) and raw["over_20m"] == pytest.approx(0.5)
    assert raw["in_95_ellipse"] == pytest.approx(0.5) and raw["availability"] == 1.0
    assert raw["heading_median_deg"] == pytest.approx(10.0, abs=0.01)
    assert "kidnaps" not in fused


def test_kidnap_is_found_in_the_truth_and_scored(tmp_path, capsys):
    run = tmp_path / "kidnap.mcap"
    write_run(run, kidnap_at=100)
    kid = eval_json(capsys, str(run))["fused"]["kidnaps"]
    assert len(kid) == 1 and kid[0]["stamp_ns"] == T0_NS + 100 * 100_000_000
    assert kid[0]["lost_reported"] and kid[0]["recover_s"] == pytest.approx(2.0)


def test_truth_from_the_drive_and_the_plot(tmp_path, capsys):
    run, drive, png = tmp_path / "run.mcap", tmp_path / "drive.mcap", tmp_path / "run.png"
    write_run(run, truth=False)
    write_run(drive)
    assert main(["eval", str(run), "--drive", str(drive), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["fused", "3.0"] and f"plot: {png}" in out
    img = cv2.imread(str(png))
    assert img.shape == (900, 1800, 3) and (img < 250).any()


def test_a_run_without_truth_is_one_clear_error(tmp_path, capsys):
    run = tmp_path / "run.mcap"
    write_run(run, truth=False)
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "gps/fix" in err and "--drive" in err


@pytest.mark.slow
def test_lockstep_replay_records_a_run_that_eval_scores(tmp_path):
    """The user's path: a drive replayed lock-step through launch/replay.toml (the default PoseNet), the
    graph's topics recorded by ``--record``; one fix per frame, none lost while PoseNet loads."""
    env = {**os.environ, "STREETLOC_TRANSPORT": "ipc", "STREETLOC_IPC_DIR": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    run = tmp_path / "run.mcap"
    cli = [sys.executable, "-m", "nodes.cli"]
    # the default model's city (demo_320.mcap lies outside it: every fix would be flagged out of area)
    subprocess.run([*cli, "replay", str(DEFAULT_DEMO_DRIVE), "--lockstep", "--end-s", "10",
                    "--launch", "launch/replay.toml", "--arg", "monitor=false", "--record", str(run)],
                   env=env, cwd=REPO, check=True, timeout=240)
    with DriveReader(DEFAULT_DEMO_DRIVE) as drive:
        frames = [s for s in drive.image_stamps() if s < drive.start_ns + 10_000_000_000]
    out = subprocess.run([*cli, "eval", str(run), "--json"], env=env, cwd=REPO, check=True, capture_output=True,
                         text=True).stdout
    r = json.loads(out)
    assert r["posenet"]["samples"] == len(frames) >= 25 and r["fused"]["samples"] > r["posenet"]["samples"]
