"""``streetloc record -o DRIVE``: record bus topics into a drive until Ctrl-C.

The options are the recorder node's parameters (``nodes.record.RecordParams``), one each, plus
``--duration``.
"""

from __future__ import annotations

import argparse

from nodes.commands import non_negative_float
from nodes.params import add_params_arguments, params_from_args
from nodes.record import Recorder, RecordParams
from nodes.runtime import NodeRunner, serve, setup_logging


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("record", help="record bus topics into a drive (.mcap) until Ctrl-C")
    add_params_arguments(p, RecordParams, aliases={"output": ["-o"]}, required=("output",))
    p.add_argument("--duration", type=non_negative_float, default=0.0, metavar="S",
                   help="stop after S seconds (0: at Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging("record")
    recorder = Recorder(params_from_args(args, RecordParams, node="record"))
    return serve(NodeRunner(recorder), duration_s=args.duration or None)
