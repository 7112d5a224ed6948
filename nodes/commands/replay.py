"""``streetloc replay DRIVE``: play a drive onto the bus, optionally with a graph launched around it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

import zmq

from nodes.launcher.supervisor import die_with_parent
from nodes.replay import Replay, ReplayParams
from nodes.runtime import NodeRunner
from perception.drives.topics import POSENET_TOPIC, replayed_topics


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("replay", help="publish a recorded drive on the bus")
    p.add_argument("drive", help="the .mcap drive")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (1 real time, 0 as fast as possible)")
    p.add_argument("--lockstep", action="store_true",
                   help="wait until the graph has finished each frame (every frame processed; deterministic)")
    p.add_argument("--lockstep-topic", action="append", default=None, metavar="TOPIC",
                   help="topic whose message marks a frame as done (repeatable; default posenet/fix)")
    p.add_argument("--start", type=float, default=0.0, help="seconds into the drive to start at")
    p.add_argument("--end", type=float, default=0.0, help="seconds into the drive to stop at (0: the end)")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--topics", default=",".join(replayed_topics()), help="comma-separated channels to publish")
    p.add_argument("--launch", metavar="FILE", help="launch this graph first, stop it when the replay ends")
    p.add_argument("--start-delay", type=float, default=1.0, help="seconds to let subscribers connect")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not os.path.exists(args.drive):
        raise ValueError(f"{args.drive}: no such drive file")
    params = ReplayParams(
        drive=args.drive, rate=args.rate, lockstep=args.lockstep,
        lockstep_topics=args.lockstep_topic or [POSENET_TOPIC], start_s=args.start, end_s=args.end,
        loop=args.loop, topics=[t.strip() for t in args.topics.split(",") if t.strip()],
        start_delay_s=args.start_delay,
    )
    logging.basicConfig(level=os.environ.get("STREETLOC_LOG_LEVEL", "INFO"), format="[replay] %(levelname)s %(message)s")
    replay = Replay(params)
    graph = None
    if args.launch:
        # SIGTERM if this process dies without cleaning up (SIGKILL): the launcher then stops its graph
        graph = subprocess.Popen([sys.executable, "-m", "nodes.cli", "launch", args.launch],
                                 preexec_fn=die_with_parent(os.getpid(), signal.SIGTERM))
    runner = NodeRunner(replay)
    runner.install_signal_handlers()
    t0 = time.monotonic()
    try:
        runner.spin()
    finally:
        runner.close()
        zmq.Context.instance().term()  # deliver what is still queued before exiting
        if graph is not None and graph.poll() is None:
            graph.send_signal(signal.SIGINT)
            try:
                graph.wait(timeout=10)
            except subprocess.TimeoutExpired:
                graph.kill()
    elapsed = time.monotonic() - t0
    print(f"replayed {replay.frames_published} frames of {args.drive} in {elapsed:.1f} s"
          f"{f'; {replay.skipped_corrupt} corrupt records skipped' if replay.skipped_corrupt else ''}"
          f"{f'; {replay.lockstep_gave_up} frames unanswered' if replay.lockstep_gave_up else ''}", file=sys.stderr)
    return 0
