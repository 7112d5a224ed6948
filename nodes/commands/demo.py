"""``streetloc demo``: the main job end to end on the embedded default.

Replays a drive through the synthetic city (shipped in ``sim_data/drives``) over the bus into the
PoseNet node, launched from ``launch/replay.toml`` with the default checkpoint, and scores every fix
against the drive's ground-truth GPS: position and heading errors, whether the truth lies inside the
predicted 95% ellipse, throughput and camera-to-fix latency. Lock-step by default (every frame,
deterministic); ``--realtime`` plays at the drive's speed and lets frames drop as on a robot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nodes.commands import launched, wait_until_ready
from nodes.params import add_params_arguments, params_from_args
from nodes.posenet import PoseNetParams
from perception.drives.topics import POSENET_TOPIC

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "replay.toml"


def default_drive() -> Path:
    from sim_data import DEFAULT_DEMO_DRIVE

    return Path(DEFAULT_DEMO_DRIVE)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="localize along a shipped synthetic drive with the default PoseNet")
    p.add_argument("--drive", help="drive to replay (default: the shipped synthetic test drive)")
    # the PoseNet node's own parameters, passed to the launch file as arguments
    add_params_arguments(p, PoseNetParams, dest="posenet", only=("model", "device"))
    p.add_argument("--realtime", action="store_true", help="play at the drive's speed instead of lock-step")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def score(drive: str, fixes: list) -> dict:
    """Errors of ``fixes`` (GeoFix messages) against the drive's GPS at their stamps."""
    from localization.geodesy import LocalFrame
    from localization.metrics import pose_errors, summarize_pose_errors
    from perception.drives import DriveReader

    reader = DriveReader(drive)
    truth = {f.stamp_ns: f.gps for f in reader.frames(gps="interpolate") if f.gps is not None}
    pairs = [(f, truth[f.header.stamp_ns]) for f in fixes if f.header.stamp_ns in truth]
    if not pairs:
        raise ValueError(f"{drive}: no fix matched a frame with GPS; nothing to score")
    origin = reader.metadata.geo_origin
    frame = LocalFrame(origin) if origin is not None else None
    if frame is None:
        from localization.geodesy import GeoOrigin

        frame = LocalFrame(GeoOrigin(pairs[0][1].lat_deg, pairs[0][1].lon_deg))
    est_e, est_n, _ = frame.to_enu([f.lat_deg for f, _ in pairs], [f.lon_deg for f, _ in pairs])
    true_e, true_n, _ = frame.to_enu([g.lat_deg for _, g in pairs], [g.lon_deg for _, g in pairs])
    est = SimpleNamespace(
        east_m=np.asarray(est_e), north_m=np.asarray(est_n),
        cov_enu_m2=np.array([np.reshape(f.cov_enu_m2, (2, 2)) for f, _ in pairs]),
        heading_deg=np.array([np.nan if f.heading_deg is None else f.heading_deg for f, _ in pairs]),
        heading_std_deg=np.array([180.0 if f.heading_std_deg is None else f.heading_std_deg for f, _ in pairs]),
    )
    true_heading = np.array([np.nan if g.heading_deg is None else g.heading_deg for _, g in pairs])
    out = summarize_pose_errors(pose_errors(est, np.asarray(true_e), np.asarray(true_n), true_heading))
    latencies_ms = [(f.header.trace[-1].pub_ns - f.header.trace[0].pub_ns) / 1e6 for f, _ in pairs
                    if len(f.header.trace) >= 2]
    if latencies_ms:
        out["latency_ms_median"] = float(np.median(latencies_ms))
        out["latency_ms_p95"] = float(np.percentile(latencies_ms, 95))
    out["model_id"] = pairs[0][0].source
    return out


def run(args: argparse.Namespace) -> int:
    from nodes.bus.pubsub import Delivery, Subscriber
    from nodes.bus.topics import BusConfig
    from nodes.clock import USE_SIM_TIME_ENV
    from nodes.replay import Replay, ReplayParams
    from nodes.runtime import NodeRunner
    from perception.drives import DriveReader

    drive = Path(args.drive) if args.drive else default_drive()
    with DriveReader(drive) as reader:  # a bad drive is reported before the graph is launched
        if not reader.image_stamps():
            raise ValueError(f"{drive}: the drive has no camera frames to localize")
    posenet = params_from_args(args, PoseNetParams, dest="posenet", node="posenet")
    with tempfile.TemporaryDirectory(prefix="streetloc-demo-") as ipc_dir:
        # a bus of the demo's own, so that it never collides with a graph already running here
        config = BusConfig(ipc_dir=ipc_dir)
        # the graph runs on the drive's time (nodes.clock)
        env = {**os.environ, **config.to_env(), "STREETLOC_LOG_LEVEL": "WARNING", USE_SIM_TIME_ENV: "1"}
        launch_args = {"model": posenet.model, "device": posenet.device, "monitor": "false"}
        with launched(LAUNCH_FILE, launch_args=launch_args,
                      options=["--log-dir", os.path.join(ipc_dir, "logs")],
                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as launcher:
            print(f"demo: launched {LAUNCH_FILE.relative_to(ROOT)} (PoseNet {posenet.model or 'default model'}); "
                  f"replaying {drive.name} {'in real time' if args.realtime else 'lock-step'}", file=sys.stderr)
            try:
                wait_until_ready(launcher, LAUNCH_FILE, launch_args=launch_args, config=config, timeout_s=120.0)
            except OSError as exc:
                err = launcher.stderr.read() if launcher.poll() is not None else ""
                raise OSError(f"{exc}{': ' + err.strip()[-500:] if err else ''}") from None
            fixes_sub = Subscriber(POSENET_TOPIC, delivery=Delivery.BUFFERED, config=config)
            params = ReplayParams(drive=str(drive), rate=1.0, lockstep=not args.realtime,
                                  lockstep_topics=[POSENET_TOPIC], lockstep_timeout_s=10.0, start_delay_s=0.5)
            replay = Replay(params)
            # in a thread, not through the process shell: this process also reads the fixes and reports progress
            runner = NodeRunner(replay, config=config)
            thread = threading.Thread(target=runner.spin, daemon=True)
            t0 = time.monotonic()
            thread.start()
            total = len(replay.reader.image_stamps())
            while thread.is_alive():
                thread.join(timeout=2.0)
                print(f"demo: {replay.frames_published}/{total} frames", file=sys.stderr)
            elapsed = time.monotonic() - t0 - params.start_delay_s
            runner.close()
            fixes = []
            while (msg := fixes_sub.recv(timeout_s=1.0)) is not None:
                fixes.append(msg)
            fixes_sub.close()
    unique = {f.header.stamp_ns: f for f in fixes}  # a lock-step retry may answer a frame twice
    figures = score(str(drive), list(unique.values()))
    figures.update({"drive": str(drive), "frames_replayed": replay.frames_published,
                    "fixes": len(unique), "pipeline_fps": len(unique) / elapsed if elapsed > 0 else 0.0,
                    "mode": "realtime" if args.realtime else "lockstep"})
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"\nstreetloc demo: {figures['fixes']} PoseNet fixes for {figures['frames_replayed']} frames of "
          f"{drive.name} ({figures['mode']}, {figures['pipeline_fps']:.1f} frames/s through the bus)")
    print(f"  position error  median {figures['position_error_m_median']:.2f} m   mean "
          f"{figures['position_error_m_mean']:.2f} m   p95 {figures['position_error_m_p95']:.2f} m   max "
          f"{figures['position_error_m_max']:.2f} m")
    if "heading_error_deg_median" in figures:
        print(f"  heading error   median {figures['heading_error_deg_median']:.1f} deg   p95 "
              f"{figures['heading_error_deg_p95']:.1f} deg")
    print(f"  honest uncertainty: truth inside the predicted 95% ellipse for "
          f"{100 * figures['within_95_ellipse']:.0f}% of fixes (ideal 95%)")
    if "latency_ms_median" in figures:
        print(f"  latency replay -> fix: median {figures['latency_ms_median']:.1f} ms, "
              f"p95 {figures['latency_ms_p95']:.1f} ms")
    print(f"  model {figures['model_id']}")
    return 0
