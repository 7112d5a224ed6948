"""The C and Node.js subscribers of examples/ (written from docs/wire_format.md only) decode the poses of a
live graph: a lock-step replay of the demo drive through PoseNet (the shipped model) and the fusion node.

Skipped, with the reason, where a toolchain is missing: gcc + libzmq3-dev + libmsgpack-dev for C, node +
``npm ci`` in examples/node for Node.js (.ci/run installs both where it can)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perception.drives import DriveReader
from perception.drives.topics import GPS_TOPIC, POSE_TOPIC
from sim_data import DEFAULT_DEMO_DRIVE

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
END_S = 3.0  # seconds of the drive replayed: ~9 frames, ~60 poses at the fusion node's 20 Hz
EARTH_M_PER_DEG = 111_320.0


def _build_c(out_dir: Path) -> tuple[list[str] | None, str]:
    """(command, "") or (None, why it cannot be built here)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or shutil.which("pkg-config") is None:
        return None, "no C compiler or pkg-config"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libzmq", "msgpack"], capture_output=True, text=True)
    if flags.returncode != 0:
        missing = [line.split("'")[1] for line in flags.stderr.splitlines() if line.startswith("Package '")]
        return None, (f"pkg-config finds no {', '.join(missing) or 'libzmq/msgpack'} "
                      "(apt-get install libzmq3-dev libmsgpack-dev)")
    binary = out_dir / "pose_subscriber"
    build = subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-o", str(binary),
                            str(EXAMPLES / "c" / "pose_subscriber.c"), *flags.stdout.split()],
                           capture_output=True, text=True)
    assert build.returncode == 0, f"examples/c/pose_subscriber.c does not build:\n{build.stderr}"
    return [str(binary)], ""


def _node_command() -> tuple[list[str] | None, str]:
    node = shutil.which("node")
    if node is None:
        return None, "no node on PATH"
    folder = EXAMPLES / "node"
    for package in ("zeromq", "@msgpack/msgpack"):
        if not (folder / "node_modules" / package / "package.json").exists():
            return None, f"npm package {package} not installed (run `npm ci` in examples/node)"
    probe = subprocess.run([node, "-e", "import('zeromq')"], cwd=folder, capture_output=True, text=True)
    if probe.returncode != 0:
        return None, f"npm zeromq does not load here: {probe.stderr.strip()[-300:]}"
    return [node, str(folder / "pose_subscriber.mjs")], ""


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict:
    """Both subscribers (those buildable here) listening while a lock-step replay runs through a launched
    graph that records its poses. Returns {"skip": {client: why}, "lines": {client: [stdout lines]},
    "recorded": [Pose], "truth": [GeoFix], "frames": n}."""
    from nodes.bus import BusConfig

    tmp = tmp_path_factory.mktemp("interop")
    commands, skip = {}, {}
    for name, (cmd, why) in {"c": _build_c(tmp), "node": _node_command()}.items():
        if cmd is None:
            skip[name] = why
        else:
            commands[name] = cmd
    if not commands:
        return {"skip": skip}
    ipc_dir = tmp / "ipc"
    ipc_dir.mkdir(mode=0o700)
    env = {**os.environ, **BusConfig(transport="ipc", ipc_dir=str(ipc_dir)).to_env()}
    assert env["STREETLOC_IPC_DIR"] == str(ipc_dir)  # what the clients read, per docs/wire_format.md
    # The clients connect first (ZeroMQ retries until the fusion node binds): no slow-joiner loss.
    clients = {name: subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, cmd in commands.items()}
    run = tmp / "run.mcap"
    try:
        replay = subprocess.run(
            [sys.executable, "-m", "nodes.cli", "replay", str(DEFAULT_DEMO_DRIVE), "--lockstep", "--end-s", str(END_S),
             "--launch", "launch/replay.toml", "--arg", "device=cpu", "--arg", "monitor=false",
             "--record", str(run), "--record-topics", POSE_TOPIC],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        assert replay.returncode == 0, replay.stderr[-3000:]
    finally:
        outputs = {}
        for name, proc in clients.items():
            proc.terminate()  # they print until stopped (COUNT 0)
            out, err = proc.communicate(timeout=10)
            outputs[name] = (out, err, proc.returncode)
    with DriveReader(run) as recorded:
        poses = list(recorded.read(POSE_TOPIC))
    with DriveReader(DEFAULT_DEMO_DRIVE) as drive:
        truth = list(drive.read(GPS_TOPIC, end_ns=drive.start_ns + int(END_S * 1e9) + 10**9))
    for name, (_, err, _) in outputs.items():
        assert "skipped" not in err, f"{name} client: {err}"
    return {"skip": skip, "lines": {n: o.splitlines() for n, (o, _, _) in outputs.items()},
            "recorded": poses, "truth": truth}


def _nearest_truth_m(truth, stamp_ns: int, lat_deg: float, lon_deg: float) -> float:
    fix = min(truth, key=lambda f: abs(f.header.stamp_ns - stamp_ns))
    north_m = (lat_deg - fix.lat_deg) * EARTH_M_PER_DEG
    east_m = (lon_deg - fix.lon_deg) * EARTH_M_PER_DEG * math.cos(math.radians(fix.lat_deg))
    return math.hypot(north_m, east_m)


@pytest.mark.parametrize("client", ["c", "node"])
def test_example_subscriber_decodes_every_pose_of_a_live_replay(replayed, client):
    if client in replayed["skip"]:
        pytest.skip(f"{client} example: {replayed['skip'][client]}")
    lines = replayed["lines"][client]
    recorded = replayed["recorded"]
    assert len(recorded) >= 20, "the graph published too few poses to test with"
    decoded = []
    for line in lines:
        stamp_ns, seq, incarnation, lat_deg, lon_deg, heading_deg, status = line.split()
        decoded.append((int(stamp_ns), int(seq), int(incarnation), float(lat_deg), float(lon_deg),
                        float(heading_deg), status))
    # every pose the recorder (our own decoder) got, in order; the client, connected before the graph
    # started, may hold one more at either end (the recorder starts and stops on its own)
    first = [d[0] for d in decoded].index(recorded[0].header.stamp_ns)
    assert first <= 1 and len(decoded) - first - len(recorded) in (0, 1), (first, len(decoded), len(recorded))
    assert [d[0] for d in decoded[first:first + len(recorded)]] == [p.header.stamp_ns for p in recorded]
    for (_, _, _, lat_deg, lon_deg, heading_deg, status), pose in zip(decoded[first:], recorded, strict=False):
        assert status == pose.status  # (a recording keeps no seq/incarnation: checked below)
        assert lat_deg == pytest.approx(pose.lat_deg, abs=1e-9) and lon_deg == pytest.approx(pose.lon_deg, abs=1e-9)
        assert heading_deg == pytest.approx(pose.heading_deg, abs=1e-3)
    stamps = [d[0] for d in decoded]
    assert stamps == sorted(stamps)  # increasing stamps on the drive's clock
    assert [d[1] for d in decoded] == list(range(len(decoded)))  # seq from 0, no gap: nothing lost
    assert len({d[2] for d in decoded}) == 1 and decoded[0][2] > 0  # one publisher incarnation, known
    # where the drive went: the shipped model + fusion track the truth within tens of metres
    errors_m = sorted(_nearest_truth_m(replayed["truth"], d[0], d[3], d[4]) for d in decoded)
    assert errors_m[len(errors_m) // 2] < 50.0, errors_m
