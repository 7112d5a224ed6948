"""``streetloc record -o DRIVE``: record bus topics into a drive until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os

import zmq

from nodes.record import Recorder, RecordParams
from nodes.runtime import NodeRunner


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("record", help="record bus topics into a drive (.mcap) until Ctrl-C")
    p.add_argument("-o", "--output", required=True, help="the .mcap file to write")
    p.add_argument("--topics", default="", help="comma-separated topics (default: the table's recorded ones)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: at Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("STREETLOC_LOG_LEVEL", "INFO"), format="[record] %(levelname)s %(message)s")
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    recorder = Recorder(RecordParams(output=args.output, topics=topics))
    runner = NodeRunner(recorder)
    runner.install_signal_handlers()
    try:
        runner.spin(duration_s=args.duration or None)
    finally:
        runner.close()
        zmq.Context.instance().term()  # deliver what is still queued before exiting
    return 0
