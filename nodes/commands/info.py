"""``streetloc info DRIVE``: duration, channels with counts and rates, frame size, where it went, damage."""

from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from perception.drives.info import format_summary, summarize

    summary = summarize(args.drive, check_frames=args.check)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        print(format_summary(summary))
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="summarize a drive: duration, channels, rates, frame size, bbox, distance, truncation",
        description="Summarize a drive file. A recording cut off mid-write is read up to its last complete "
        "chunk and reported as TRUNCATED.",
    )
    parser.add_argument("drive", help="drive file (.mcap)")
    parser.add_argument("--check", action="store_true", help="also scan every frame for corrupt JPEGs (no decoding)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=_run)
