"""Every bad argument and file of issue 16 item 4 is one line naming it (a warning with counts for a
drive that is truncated or partly corrupt) and a non-zero exit where the command cannot do what was asked;
never a traceback. In-process where no socket or model is involved, as a subprocess otherwise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nodes.cli import main
from nodes.params import ParamError, load_params
from nodes.replay import ReplayParams
from nodes.test_pattern import TestPatternCamera
from perception.drives import DriveReader, DriveWriter
from perception.drives.reader import MAX_STAMP_NS
from perception.drives.topics import CAMERA_TOPIC, GPS_TOPIC
from sim_data import DEFAULT_DEMO_DRIVE
from tests.conftest import save_tiny_posenet

REPO = Path(__file__).resolve().parents[3]
SMALL = REPO / "sim_data" / "drives" / "test_small.mcap"  # 160 frames 160x120 at 2 fps, GPS; origin below
ORIGIN = {"lat_deg": 34.0522, "lon_deg": -118.2437, "alt_m": 90.0}
EXTRANEOUS_EVERY, CUT_EVERY = 10, 25  # frames with bytes before the JPEG end (still decode) / cut in half


def run_main(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def cli(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodes.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout_s)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    """test_small rewritten in small chunks with some damaged JPEGs (``intact``), and the same cut off in
    the middle as a killed recorder leaves it (``cut``)."""
    root = tmp_path_factory.mktemp("damaged")
    with DriveReader(SMALL) as reader:
        meta = reader.metadata
        records = sorted(((m.header.stamp_ns, t, m) for t in (CAMERA_TOPIC, GPS_TOPIC) for m in reader.read(t)),
                         key=lambda r: (r[0], r[1]))
    intact = root / "damaged.mcap"
    with DriveWriter(intact, meta, chunk_size_bytes=16 * 1024) as writer:
        frame = 0
        for _, topic, msg in records:
            if topic == CAMERA_TOPIC:
                data = np.asarray(msg.data, np.uint8).reshape(-1)
                if frame % EXTRANEOUS_EVERY == 1:  # libjpeg: "Corrupt JPEG data: 6 extraneous bytes ..."
                    msg.data = np.concatenate([data[:-2], np.zeros(6, np.uint8), data[-2:]])
                elif frame % CUT_EVERY == 2:  # does not decode at all: skipped
                    msg.data = data[: len(data) // 2].copy()
                frame += 1
            writer.write(topic, msg)
    cut = root / "cut.mcap"
    data = intact.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return {"intact": intact, "cut": cut, "root": root}


# -- launch files --------------------------------------------------------------------------------------

def test_a_binary_launch_file_is_named(tmp_path, capsys):
    path = tmp_path / "graph.toml"
    path.write_bytes(bytes(range(256))[::-1] * 4)
    code, err = run_main(capsys, "launch", str(path), "--check")
    assert code == 2
    assert f"{path}: not a TOML text file: byte 0xff at offset 0 is not UTF-8" in err


def test_a_missing_required_argument_is_reported_once(tmp_path, capsys):
    path = tmp_path / "graph.toml"
    path.write_text(textwrap.dedent("""
        [args.rate]
        description = "frame rate, Hz"
        [nodes.camera]
        module = "nodes.test_pattern"
        params = { rate_hz = "${rate}" }
    """))
    code, err = run_main(capsys, "launch", str(path), "--check")
    assert code == 2
    assert "args.rate: required argument: pass --arg rate=VALUE" in err
    assert "no such argument" not in err  # the argument exists; it only lacks a value


def test_every_bad_value_of_a_node_is_reported(tmp_path, capsys):
    path = tmp_path / "graph.toml"
    path.write_text(textwrap.dedent("""
        [nodes.camera]
        module = "nodes.test_pattern"
        params = { rate_hz = -5, width_px = "big", height_px = 0, encoding = "png", hfov_deg = 500 }
    """))
    code, err = run_main(capsys, "launch", str(path), "--check")
    assert code == 2
    for key in ("rate_hz", "width_px", "height_px", "encoding", "hfov_deg"):
        assert f"node camera: params.{key}: bad parameter" in err, key
    assert "5 problems" in err


def test_non_finite_numbers_are_bad_parameters():
    """msgspec's bounds let inf pass ``ge=0`` (``replay --rate inf`` played at full speed, ``start_s =
    inf`` overflowed); no parameter means inf or nan."""
    with pytest.raises(ParamError) as err:
        load_params(ReplayParams, overrides=["drive='d.mcap'", "rate=inf", "start_s=nan"], node="replay")
    assert sorted(key for key, _ in err.value.problems) == ["rate", "start_s"]
    assert "rate: inf is not a finite number" in str(err.value)


def test_a_node_process_names_every_bad_parameter_on_one_line():
    with pytest.raises(ParamError) as err:
        load_params(TestPatternCamera.Params, overrides=["rate_hz=-5", "colour=red", "width_px=big"], node="cam")
    assert [key for key, _ in err.value.problems] == ["colour", "rate_hz", "width_px"]
    assert "\n" not in str(err.value) and str(err.value).startswith("node cam: 3 bad parameters: ")


def test_replay_checks_its_launch_file_before_playing(capsys):
    code, err = run_main(capsys, "replay", str(DEFAULT_DEMO_DRIVE), "--launch", "missing.toml", "--rate", "0")
    assert code == 2
    assert one_line(err) == ("streetloc replay: error: 1 problem in launch file missing.toml: "
                             "missing.toml: launch file missing.toml not found")


# -- numbers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["record", "-o", "x.mcap", "--duration", "-1"], "streetloc record: error: argument --duration: '-1' is not a "
                                                     "number >= 0"),
    (["record", "-o", "x.mcap", "--duration", "nan"], "argument --duration: 'nan' is not a number >= 0"),
    (["replay", "d.mcap", "--rate", "inf"], "streetloc replay: error: argument --rate: 'inf' is not a finite number"),
    (["replay", "d.mcap", "--start", "nan"], "argument --start-s/--start: 'nan' is not a finite number"),
    (["evaluate", "posenet", "--data", "d.mcap", "--batch-size", "0"],
     "streetloc evaluate posenet: error: argument --batch-size: 0 is out of range: must be >= 1"),
    (["evaluate", "posenet", "--data", "d.mcap", "--device", "banana"],
     "streetloc evaluate posenet: error: argument --device: 'banana' does not match"),
])
def test_bad_numbers_and_names_are_one_line(argv, message, capsys):
    code, err = run_main(capsys, *argv)
    assert code == 2
    assert message in one_line(err)


def test_replay_start_past_the_end_is_refused(capsys):
    code, err = run_main(capsys, "replay", str(SMALL), "--start", "1000")
    assert code == 2
    assert one_line(err) == (f"streetloc replay: error: replay: start_s=1000 is past the end of {SMALL} "
                             "(79.5 s long)")


# -- damaged drives ------------------------------------------------------------------------------------

def test_replay_of_a_truncated_drive_warns_with_counts(damaged, bus_config):
    out = cli("replay", str(damaged["cut"]), "--rate", "0", timeout_s=60)
    assert out.returncode == 0, out.stderr
    with DriveReader(damaged["cut"]) as reader:
        frames = reader.channels[CAMERA_TOPIC].message_count
        messages = reader.message_count
    assert 0 < frames < 160
    warning = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warning == [f"replay: warning: {damaged['cut']}: truncated (cut off mid-write): {messages} messages "
                       f"({frames} frames, {(frames - 1) / 2:.1f} s) read up to its last complete chunk"]


def test_evaluate_of_a_damaged_truncated_drive_warns_in_one_line_each_and_counts(damaged):
    ckpt = save_tiny_posenet(damaged["root"] / "tiny.pt", origin=ORIGIN)
    out = cli("evaluate", "posenet", "--model", ckpt, "--data", str(damaged["cut"]), "--device", "cpu",
              "--allow-out-of-area", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Corrupt JPEG" not in out.stderr  # libjpeg's own lines are counted, not shown
    warnings = [line for line in out.stderr.splitlines() if line.startswith("streetloc evaluate: warning:")]
    with DriveReader(damaged["cut"]) as reader:
        frames = reader.channels[CAMERA_TOPIC].message_count
    extraneous = len([i for i in range(frames) if i % EXTRANEOUS_EVERY == 1])
    cut = len([i for i in range(frames) if i % CUT_EVERY == 2 and i % EXTRANEOUS_EVERY != 1])
    assert len(warnings) == 2, out.stderr
    assert f"{damaged['cut']}: truncated (cut off mid-write)" in warnings[0] and f"({frames} frames" in warnings[0]
    assert f"{cut} frames skipped (corrupt)" in warnings[1]
    # one per damaged frame decoded (frames without a GPS fix around them are skipped before decoding)
    libjpeg = re.search(r"; (\d+) libjpeg warnings on damaged frames that still decoded$", warnings[1])
    assert libjpeg and 0 < int(libjpeg.group(1)) <= extraneous
    figures = json.loads(out.stdout)
    assert figures["skipped"]["corrupt"] == cut


def test_a_stamp_beyond_int64_is_skipped_and_counted(tmp_path, capsys):
    path = tmp_path / "huge.mcap"
    with DriveReader(SMALL) as reader:
        meta, fixes = reader.metadata, list(reader.read(GPS_TOPIC))[:6]
    fixes[-1].header.stamp_ns = 2**64 - 1  # what a broken clock or a hostile publisher sent
    with DriveWriter(path, meta) as writer:
        for fix in fixes:
            writer.write(GPS_TOPIC, fix)

    with DriveReader(path) as reader:
        assert [f.header.stamp_ns for f in reader.read(GPS_TOPIC)] == [f.header.stamp_ns for f in fixes[:5]]
        assert reader.errors.undecodable_messages == 1 and reader.end_ns <= MAX_STAMP_NS
        assert reader.end_ns == fixes[4].header.stamp_ns

    code = main(["info", str(path)])
    assert code == 0 and "damage:    1 undecodable message(s) skipped" in capsys.readouterr().out
    code = main(["info", str(path), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["undecodable_messages"] == 1 and info["end_ns"] == fixes[4].header.stamp_ns
    code, _ = run_main(capsys, "export", str(path), "-o", str(tmp_path / "track.gpx"))
    assert code == 0 and (tmp_path / "track.gpx").read_text().count("<trkpt") == 5
