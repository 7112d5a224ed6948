"""``streetloc replay --lockstep --launch FILE --record RUN.mcap``: the replay starts once the launched graph
is ready (no frame lost while PoseNet loads), the run is recorded by the recorder node and
``streetloc eval`` scores it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perception.drives import DriveReader
from perception.drives.topics import CAMERA_TOPIC, GPS_TOPIC, POSE_TOPIC, POSENET_TOPIC
from sim_data import DEFAULT_DEMO_DRIVE
from tests.conftest import save_tiny_posenet

REPO = Path(__file__).resolve().parents[3]
END_S = 4.0  # replay the drive's first seconds: a dozen frames


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    origin = {"lat_deg": 34.0522, "lon_deg": -118.2437, "alt_m": 90.0}
    return save_tiny_posenet(tmp_path_factory.mktemp("ckpt") / "tiny.pt", origin=origin, anchor_spacing_m=10.0,
                             scale_m=100.0, position_cov_scale=1.0)


def cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout_s)


def test_lockstep_replay_through_a_launched_graph_records_a_fix_for_every_frame(tiny_checkpoint, bus_config,
                                                                                  tmp_path):
    run = tmp_path / "run.mcap"
    # PoseNet takes seconds to import torch and load: far more than the 2 s a frame is retried here
    # (--lockstep-timeout-s 0.5, 3 retries) and the 1 s start delay. Started on a guess, frame 0 is lost.
    out = cli("replay", str(DEFAULT_DEMO_DRIVE), "--lockstep", "--lockstep-timeout-s", "0.5", "--end-s", str(END_S),
              "--launch", "launch/replay.toml", "--arg", f"model={tiny_checkpoint}", "--arg", "device=cpu",
              "--arg", "monitor=false", "--record", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "unanswered" not in out.stderr
    assert "fusion, posenet ready after" in out.stderr

    with DriveReader(DEFAULT_DEMO_DRIVE) as drive:
        start_ns = drive.start_ns
        frames = [s for s in drive.image_stamps() if s < start_ns + END_S * 1e9]
    assert len(frames) >= 10
    with DriveReader(run) as recorded:  # an indexed, readable drive
        assert CAMERA_TOPIC not in recorded.topics  # the drive holds the frames already
        fixes = [raw.stamp_ns for raw in recorded.messages([POSENET_TOPIC])]
        truth = list(recorded.messages([GPS_TOPIC]))
        poses = list(recorded.messages([POSE_TOPIC]))
    assert sorted(fixes) == frames  # one fix per frame, the first ones included
    assert truth and len(poses) > len(fixes)

    scored = cli("eval", str(run), "--json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    figures = json.loads(scored.stdout)
    assert figures["posenet"]["samples"] == len(frames)
    assert figures["fused"]["samples"] > len(frames)  # the 20 Hz stream between fixes
    assert figures["posenet"]["median_m"] > 1000  # scored against the truth (the untrained net is far off)


def test_a_graph_that_is_not_ready_in_time_is_one_clear_error(tiny_checkpoint, bus_config, tmp_path):
    out = cli("replay", str(DEFAULT_DEMO_DRIVE), "--lockstep", "--launch", "launch/replay.toml",
              "--arg", f"model={tiny_checkpoint}", "--arg", "device=cpu", "--arg", "monitor=false",
              "--ready-timeout-s", "0.2", "--record", str(tmp_path / "run.mcap"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "not ready after 0.2 s" in out.stderr and "posenet (no diagnostics)" in out.stderr
    with DriveReader(tmp_path / "run.mcap") as recorded:  # closed as an indexed file all the same
        assert not list(recorded.messages([POSENET_TOPIC]))


def test_record_topics_need_record(bus_config):
    out = cli("replay", str(DEFAULT_DEMO_DRIVE), "--record-topics", "posenet/fix")
    assert out.returncode == 2 and "--record-topics: only with --record" in out.stderr
