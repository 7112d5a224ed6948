"""``streetloc demo``: the main job end to end, on a drive shipped in ``sim_data/drives``.

Launches the whole replay graph of ``launch/replay.toml`` (PoseNet, the detector, the PSPNet segmenter,
fusion with odometry, NMEA on a free port) on a bus of its own, replays the drive lock-step (every frame
through every CNN: the replay waits for ``posenet/fix``, ``perception/detections`` and
``perception/segmentation`` of each frame), records what the graph publishes into ``OUT/run.mcap`` and
prints

* raw PoseNet beside fused, scored against the drive's GPS by the scorer of ``streetloc eval``
  (``nodes.commands.eval.score_run``: median, p95, > 20 m, 95 % ellipse coverage, availability);
* the latency of every hop from the header traces (``nodes.latency``, as ``streetloc topic latency``);
* the path of the ``streetloc eval --plot`` picture, ``OUT/run.png``.

``--realtime`` plays at the drive's speed instead, letting frames drop as on a robot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from nodes.commands import launched, non_negative_float, wait_until_ready
from nodes.params import add_params_arguments, params_from_args
from nodes.posenet import PoseNetParams
from perception.drives.topics import DETECTIONS_TOPIC, POSE_TOPIC, POSENET_TOPIC, SEGMENTATION_TOPIC

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "replay.toml"
# what a frame is done with in lock-step: every CNN answered it (the fused pose at its stamp follows the fix)
LOCKSTEP_TOPICS = [POSENET_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC]
# the topics whose traces make the latency table: the pose carries the fix's chain, the CNNs beside it theirs
LATENCY_TOPICS = [POSE_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC]


def default_drive() -> Path:
    from sim_data import DEFAULT_DEMO_DRIVE

    return Path(DEFAULT_DEMO_DRIVE)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole graph (PoseNet, detector, segmenter, fusion, NMEA) on a shipped drive, scored",
        description="Replay a drive lock-step through every node of launch/replay.toml, record the run, and "
                    "print raw PoseNet beside fused (as `streetloc eval`), the latency of every hop, and the "
                    "path of the picture.")
    p.add_argument("--drive", help="drive to replay (default: the shipped sim_data/drives/demo_city.mcap)")
    # the PoseNet node's own parameters, passed to the launch file as arguments
    add_params_arguments(p, PoseNetParams, dest="posenet", only=("model", "device"))
    p.add_argument("--detector-model", default="", metavar="CKPT",
                   help="detector checkpoint or weights name (default: the default model)")
    p.add_argument("--segmenter-model", default="", metavar="CKPT",
                   help="segmenter checkpoint or weights name (default: the default model)")
    p.add_argument("--out", default="streetloc-demo", metavar="DIR",
                   help="folder for the run's recording (run.mcap) and picture (run.png) (default %(default)s)")
    p.add_argument("--start-s", type=non_negative_float, default=0.0, metavar="S",
                   help="skip this much of the drive's start, s")
    p.add_argument("--end-s", type=non_negative_float, default=0.0, metavar="S",
                   help="stop this far into the drive, s (0: its end)")
    p.add_argument("--realtime", action="store_true", help="play at the drive's speed instead of lock-step")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment for a ``with`` block: the in-process recorder and replay
    find the demo's own bus there (``BusConfig.from_env``)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(args: argparse.Namespace) -> int:
    from nodes.bus.topics import BusConfig
    from nodes.clock import USE_SIM_TIME_ENV
    from nodes.commands.eval import score_run, table
    from nodes.commands.replay import Recording, default_run_topics
    from nodes.latency import format_rows, latency_rows, rows_as_dicts, traces_of_run
    from nodes.replay import Replay, ReplayParams
    from nodes.runtime import NodeRunner
    from perception.drives import DriveReader

    t_start = time.monotonic()
    drive = Path(args.drive) if args.drive else default_drive()
    if not drive.exists():
        raise ValueError(f"{drive}: no such drive file")
    with DriveReader(drive) as reader:  # a bad drive is reported before the graph is launched
        if not reader.image_stamps():
            raise ValueError(f"{drive}: the drive has no camera frames to localize")
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out_dir}: cannot make the folder ({exc.strerror})") from None
    run_path, plot_path = out_dir / "run.mcap", out_dir / "run.png"
    posenet = params_from_args(args, PoseNetParams, dest="posenet", node="posenet")
    replay_params = ReplayParams(drive=str(drive), rate=1.0, lockstep=not args.realtime, start_s=args.start_s,
                                 end_s=args.end_s, lockstep_topics=list(LOCKSTEP_TOPICS),
                                 lockstep_timeout_s=10.0, start_delay_s=0.5)
    replay = Replay(replay_params)  # a bad slice (end before start) is reported before anything starts
    # the frames of the slice (end exclusive, as the replay reads it)
    total = sum(replay.first_ns <= s and (replay.last_ns is None or s < replay.last_ns)
                for s in replay.reader.image_stamps())
    launch_args = {"model": posenet.model, "device": posenet.device, "monitor": "false", "detector": "true",
                   "segmenter": "true", "detector_model": args.detector_model,
                   "segmenter_model": args.segmenter_model, "nmea": "true", "nmea_port": "0"}
    with tempfile.TemporaryDirectory(prefix="streetloc-demo-") as ipc_dir:
        # a bus of the demo's own (and NMEA on a free port): it never collides with a graph running here
        config = BusConfig(ipc_dir=ipc_dir)
        bus_env = config.to_env()
        # the graph runs on the drive's time (nodes.clock)
        env = {**os.environ, **bus_env, "STREETLOC_LOG_LEVEL": "WARNING", USE_SIM_TIME_ENV: "1"}
        with _environment(bus_env), launched(LAUNCH_FILE, launch_args=launch_args,
                                             options=["--log-dir", os.path.join(ipc_dir, "logs")], env=env,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                             text=True) as launcher:
            print(f"demo: launched {LAUNCH_FILE.relative_to(ROOT)} (PoseNet, detector, segmenter, fusion, NMEA); "
                  f"replaying {total} frames of {drive.name} {'in real time' if args.realtime else 'lock-step'}",
                  file=sys.stderr)
            # subscribed before the replay starts: the recording misses nothing the graph publishes
            recording = Recording(str(run_path), default_run_topics(), f"streetloc demo {drive}")
            try:
                try:
                    wait_until_ready(launcher, LAUNCH_FILE, launch_args=launch_args, config=config, timeout_s=180.0)
                except OSError as exc:
                    err = launcher.stderr.read() if launcher.poll() is not None else ""
                    raise OSError(f"{exc}{': ' + err.strip()[-500:] if err else ''}") from None
                ready_s = time.monotonic() - t_start
                # in a thread, not through the process shell: this process also reports progress
                runner = NodeRunner(replay, config=config)
                thread = threading.Thread(target=runner.spin, daemon=True)
                t0 = time.monotonic()
                thread.start()
                while thread.is_alive():
                    thread.join(timeout=5.0)
                    if thread.is_alive():
                        print(f"demo: {replay.frames_published}/{total} frames", file=sys.stderr)
                replay_s = time.monotonic() - t0 - replay_params.start_delay_s
                runner.close()
                recording.settle()  # the fused pose after the last fix may still be on its way
            finally:
                recording.close()  # an indexed file, before the graph stops
    scores = score_run(str(run_path), str(drive), plot=str(plot_path), title=f"streetloc demo: {drive.name}")
    latency = latency_rows(traces_of_run(str(run_path), LATENCY_TOPICS))
    fixes = recording.recorder.written.get(POSENET_TOPIC, 0)
    figures = {
        "drive": str(drive), "mode": "realtime" if args.realtime else "lockstep",
        "frames": total, "frames_replayed": replay.frames_published, "frames_unanswered": replay.lockstep_gave_up,
        "fixes": fixes, "recorded": dict(recording.recorder.written),
        "frames_per_s": round(replay.frames_published / replay_s, 2) if replay_s > 0 else None,
        "ready_s": round(ready_s, 1), "replay_s": round(replay_s, 1),
        "wall_s": round(time.monotonic() - t_start, 1),
        "scores": scores, "latency": rows_as_dicts(latency), "run": str(run_path), "plot": str(plot_path),
    }
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"\nstreetloc demo: {figures['frames_replayed']} frames of {drive.name} through PoseNet, detector, "
          f"segmenter and fusion ({figures['mode']}, {figures['frames_per_s']} frames/s; graph ready after "
          f"{figures['ready_s']} s, {figures['wall_s']} s in all)")
    if replay.lockstep_gave_up:
        print(f"  warning: {replay.lockstep_gave_up} frames got no answer from every CNN")
    print("\nposition against the drive's GPS (posenet: raw fixes; fused: every pose; fused_at_fixes: at the fixes)")
    print(table(scores))
    print("\nlatency per hop (wall clock; A -> B: A's publish to B's; in node: B's own receive to publish)")
    print(format_rows(latency))
    print(f"\nrun: {run_path}  (streetloc eval {run_path}; streetloc topic latency {POSE_TOPIC} --run {run_path})")
    print(f"plot: {plot_path}")
    return 0
