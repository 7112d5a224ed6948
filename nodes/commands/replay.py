"""``streetloc replay DRIVE``: play a drive onto the bus, optionally with a graph launched around it.

The options are the replay node's parameters (``nodes.replay.ReplayParams``), one each, plus the names
this command had before they were (``--start`` for ``--start-s``, ``--lockstep-topic``, ``--start-delay``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from nodes.clock import USE_SIM_TIME_ENV
from nodes.commands import launched
from nodes.params import add_params_arguments, params_from_args
from nodes.replay import Replay, ReplayParams
from nodes.runtime import NodeRunner, serve, setup_logging

ALIASES = {"start_s": ["--start"], "end_s": ["--end"], "lockstep_topics": ["--lockstep-topic"],
           "start_delay_s": ["--start-delay"]}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("replay", help="publish a recorded drive on the bus",
                              description="Publish a drive's channels on the bus in time order (real time, "
                                          "xN, as fast as possible, or lock-step with the graph).")
    add_params_arguments(p, ReplayParams, positional=("drive",), aliases=ALIASES)
    p.add_argument("--launch", metavar="FILE", help="launch this graph first, stop it when the replay ends")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an [args] value of the --launch file, as `streetloc launch --arg` (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = params_from_args(args, ReplayParams, node="replay")
    if not os.path.exists(params.drive):
        raise ValueError(f"{params.drive}: no such drive file")
    setup_logging("replay")
    replay = Replay(params)
    t0 = time.monotonic()
    # the launched graph runs on the drive's time (nodes.clock)
    launch_args = {}
    for item in args.arg:
        name, sep, value = item.partition("=")
        if not sep or not args.launch:
            raise ValueError(f"--arg {item!r}: expected NAME=VALUE, with --launch FILE")
        launch_args[name.strip()] = value
    env = {**os.environ, USE_SIM_TIME_ENV: "1"}
    with launched(args.launch, env=env, launch_args=launch_args) if args.launch else contextlib.nullcontext():
        serve(NodeRunner(replay))
    elapsed = time.monotonic() - t0
    print(f"replayed {replay.frames_published} frames of {params.drive} in {elapsed:.1f} s"
          f"{f'; {replay.skipped_corrupt} corrupt records skipped' if replay.skipped_corrupt else ''}"
          f"{f'; {replay.lockstep_gave_up} frames unanswered' if replay.lockstep_gave_up else ''}", file=sys.stderr)
    return 0
