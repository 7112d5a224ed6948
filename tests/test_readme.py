"""Every command of the README is run by a test, so that none can go stale.

The README's ``bash`` blocks hold its commands, one a line. Each one is listed in ``HOW`` below with how
it is run: here in the default run (fast, in this process), here under ``-m slow`` (the ones that train or
replay through the graph, in order, in a scratch folder), or by another test named there (the two that
need a camera or gpsd, the install lines that CI runs). A README command missing from ``HOW``, an entry of
``HOW`` no longer in the README, or a test named there that does not exist fails here. The Python block
runs against a live bus; every ``streetloc ...`` in the prose must name a real subcommand and options.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_TEST = "tests/nodes/commands/test_demo.py::test_demo_as_the_readme_runs_it_prints_both_tables_and_the_picture"

FAST, SLOW = "fast", "slow"
HOW: dict[str, str] = {
    # the first command: the install CI runs (.ci/run), the demo as the slow demo test runs it
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/streetloc demo": DEMO_TEST,
    # the second: exactly CI's (test_ci_runs_the_readme_test_command)
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/ruff check . && .venv/bin/pytest -q":
        "tests/test_readme.py::test_ci_runs_the_readme_test_command",
    "streetloc launch launch/robot.toml --check": FAST,
    "streetloc launch launch/robot.toml --arg camera=/dev/video0":
        "tests/test_readme.py::test_readme_robot_graph_runs_live_from_a_video",
    "streetloc node list": "tests/test_readme.py::test_readme_robot_graph_runs_live_from_a_video",
    "streetloc node params nodes.fusion": FAST,
    "streetloc replay sim_data/drives/test_small.mcap --lockstep --launch launch/replay.toml --arg detector=true "
    "--arg segmenter=true --record run.mcap": SLOW,
    "streetloc eval run.mcap --plot run.png": SLOW,
    "streetloc topic latency localization/pose perception/detections perception/segmentation --run run.mcap": SLOW,
    "streetloc info sim_data/drives/test_small.mcap": FAST,
    "gpsd -N -n tcp://127.0.0.1:10110":
        "tests/nodes/test_fusion_nmea.py::test_tcp_clients_read_every_epoch_at_the_configured_rate",
    "streetloc topic list": FAST,
    "streetloc topic info localization/pose": FAST,
    "streetloc train posenet --data sim_data/drives/train_small.mcap --val-data sim_data/drives/test_small.mcap "
    "--epochs 1 --out runs/area": SLOW,
    "streetloc evaluate posenet --model runs/area/model.pt --data sim_data/drives/test_small.mcap": SLOW,
    "streetloc replay sim_data/drives/test_small.mcap --lockstep --launch launch/replay.toml "
    "--arg model=runs/area/model.pt --record area_run.mcap": SLOW,
}


def blocks(lang: str) -> list[str]:
    """The README's fenced code blocks of ``lang``."""
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def readme_commands() -> list[str]:
    """The commands of the bash blocks, comments stripped, whitespace normalised, in README order."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(" ".join(shlex.quote(w) if w != "&&" else w for w in words))
    return out


def _test_exists(test_id: str) -> bool:
    path, _, name = test_id.partition("::")
    file = ROOT / path
    return file.exists() and re.search(rf"^def {re.escape(name)}\(", file.read_text(), flags=re.M) is not None


def test_every_readme_command_is_run_by_a_test():
    commands = readme_commands()
    assert len(commands) >= 10  # the blocks were found
    missing = [c for c in commands if c not in HOW]
    assert not missing, f"README commands no test runs (add each to HOW in {__file__}): {missing}"
    stale = [c for c in HOW if c not in commands]
    assert not stale, f"HOW lists commands the README no longer has: {stale}"
    named = {how for how in HOW.values() if how not in (FAST, SLOW)}
    assert all(_test_exists(t) for t in named), [t for t in named if not _test_exists(t)]


def _parser_of(words: list[str]):
    """(subcommand parser, the words after the subcommand path) of a ``streetloc`` command line."""
    import argparse

    from nodes.cli import build_parser

    parser = build_parser(words[0])
    rest = list(words)
    while rest:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or rest[0] not in sub.choices:
            break
        parser = sub.choices[rest.pop(0)]
    return parser, rest


def test_every_streetloc_of_the_prose_names_a_real_command_and_options():
    """`streetloc X ... --opt` in the text: X a subcommand and, where options are named, the words before them
    a subcommand path and the options its own (only then is the parser built: `train`'s imports torch)."""
    from nodes.cli import COMMANDS

    text = README.read_text()
    spans = re.findall(r"`streetloc ([^`]+)`", text)
    assert spans
    for span in spans:
        words = span.replace("|", " ").split()
        assert words[0] in COMMANDS, span
        if "--" not in span:
            continue
        parser, rest = _parser_of(words)
        options = {o for a in parser._actions for o in a.option_strings}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"README `streetloc {span}`: no option {word}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in blocks("bash")[0]


@pytest.mark.parametrize("command", [c for c, how in HOW.items() if how == FAST])
def test_readme_fast_command(command, capsys, bus_config):
    """Run in this process (the CLI's imports are shared: fast), in the repository."""
    from nodes.cli import main

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = main(shlex.split(command)[1:])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    assert code == 0, out.err[-1000:]
    assert out.out.strip()


def test_readme_python_subscriber_prints_poses(bus_config):
    """The Python block, as written, against poses published on this test's bus."""
    from nodes.bus.messages import Header, Pose
    from nodes.bus.pubsub import Publisher
    from perception.drives.topics import POSE_TOPIC

    [code] = blocks("python")
    pub = Publisher(POSE_TOPIC, node="fusion", config=bus_config)
    stop = threading.Event()

    def publish() -> None:
        k = 0
        while not stop.is_set():
            pub.publish(Pose(Header(stamp_ns=time.time_ns()), 34.05 + k * 1e-6, -118.24, status="tracking",
                             valid=True))
            k += 1
            time.sleep(0.05)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # next_message's, then two of the loop's
    finally:
        proc.kill()
        stop.set()
        thread.join()
        pub.socket.close(0)
        err = proc.stderr.read()
        proc.wait()
    assert all("tracking" in line for line in lines), (lines, err[-1000:])
    assert lines[0].startswith("34.05")


def _scratch(tmp_path: Path) -> Path:
    """A folder in which the README's relative paths (launch/, sim_data/) resolve and outputs land."""
    for name in ("launch", "sim_data"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _run(command: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    assert words[0] == "streetloc"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "nodes.cli", *words[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def _slow_group(first: str, last: str) -> list[str]:
    commands = [c for c in readme_commands() if HOW.get(c) == SLOW]
    i = next(k for k, c in enumerate(commands) if c.startswith(first))
    j = next(k for k, c in enumerate(commands) if c.startswith(last))
    return commands[i:j + 1]


@pytest.mark.slow
def test_readme_replay_eval_and_latency(bus_config, tmp_path):
    cwd = _scratch(tmp_path)
    group = _slow_group("streetloc replay sim_data/drives/test_small.mcap --lockstep --launch launch/replay.toml "
                        "--arg detector", "streetloc topic latency")
    assert len(group) == 3
    for command in group:
        out = _run(command, cwd)
        assert out.returncode == 0, (command, out.stderr[-2000:])
    assert (cwd / "run.png").stat().st_size > 10_000
    assert "replay -> detector" in out.stdout and "posenet -> fusion" in out.stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_train_evaluate_and_replay_a_new_area(bus_config, tmp_path):
    cwd = _scratch(tmp_path)
    group = _slow_group("streetloc train posenet", "streetloc replay sim_data/drives/test_small.mcap --lockstep "
                        "--launch launch/replay.toml --arg model=")
    assert len(group) == 3
    for command in group:
        out = _run(command, cwd, timeout_s=1200)
        assert out.returncode == 0, (command, out.stderr[-2000:])
    assert (cwd / "area_run.mcap").stat().st_size > 0


def _video_of(drive: str, path: Path, fps: float = 10.0) -> str:
    import cv2

    from perception.drives import DriveReader

    writer = None
    with DriveReader(drive) as reader:
        for image in reader.images():
            bgr = image.to_bgr()
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, bgr.shape[1::-1])
            writer.write(bgr)
    writer.release()
    return str(path)


@pytest.mark.slow
def test_readme_robot_graph_runs_live_from_a_video(bus_config, tmp_path, processes):
    """`streetloc launch launch/robot.toml --arg camera=...` with a video file standing in for /dev/video0:
    the whole graph up, poses on localization/pose, `streetloc node list` listing the nodes, Ctrl-C stops."""
    import signal

    from nodes.bus.pubsub import Delivery, Subscriber
    from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC

    [command] = [c for c in HOW if c.startswith("streetloc launch launch/robot.toml --arg camera=")]
    video = _video_of(str(ROOT / "sim_data/drives/test_small.mcap"), tmp_path / "drive.mp4")
    args = [w.replace("/dev/video0", video) for w in shlex.split(command)[1:]]
    launcher = processes.start("-m", "nodes.cli", *args, cwd=ROOT)
    with Subscriber(POSENET_TOPIC, delivery=Delivery.EVERY, config=bus_config) as fixes, \
            Subscriber(POSE_TOPIC, delivery=Delivery.EVERY, config=bus_config) as poses:
        deadline = time.monotonic() + 180
        got_fix = got_pose = None
        while time.monotonic() < deadline and not (got_fix and got_pose) and launcher.poll() is None:
            got_fix = got_fix or fixes.recv(timeout_s=0.2)
            got_pose = got_pose or poses.recv(timeout_s=0.2)
        listed = _run("streetloc node list", ROOT, timeout_s=60)
    launcher.send_signal(signal.SIGINT)
    launcher.wait(timeout=60)
    assert got_fix is not None, launcher.stderr.read()[-2000:]
    assert got_pose is not None
    assert listed.returncode == 0 and "posenet" in listed.stdout and "fusion" in listed.stdout, listed.stderr
