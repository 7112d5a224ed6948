"""The ``streetloc`` command line.

Every subcommand lives in its own module exposing ``add_parser(subparsers) -> None``; the parser it adds
sets ``func=handler`` where ``handler(args) -> int`` returns the exit code. Modules are imported lazily so
that ``streetloc topic list`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# One table of subcommands: name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("nodes.commands.demo", "the whole graph (PoseNet, detector, segmenter, fusion, NMEA) on a shipped drive, scored"),
    "sim": ("nodes.commands.sim", "render a drive through the synthetic city, with full ground truth"),
    "topic": ("nodes.commands.topic", "inspect bus topics: list, echo, hz, info"),
    "launch": ("nodes.commands.launch", "run a graph of nodes from a launch file (or --check it)"),
    "node": ("nodes.commands.node", "running nodes (pid, uptime, restarts, rates); node parameters"),
    "import": ("nodes.commands.import_drive", "turn photos, video + GPS track or KITTI raw into a drive"),
    "info": ("nodes.commands.info", "summarize a drive: channels, rates, duration, bbox, truncation"),
    "export": ("nodes.commands.export", "export a drive's GPS or pose channel as GPX or GeoJSON"),
    "replay": ("nodes.commands.replay", "publish a recorded drive on the bus (real time, ×N, lock-step)"),
    "record": ("nodes.commands.record", "record bus topics into a drive (.mcap) until Ctrl-C"),
    "train": ("nodes.commands.train", "train a model (posenet, ...) on drives; --resume; DDP via torchrun"),
    "evaluate": ("nodes.commands.evaluate", "score a trained model on drives (errors, honest uncertainty)"),
    "eval": ("nodes.commands.eval", "score a recorded run's poses and raw fixes against the drive's GPS truth"),
    "keys": ("nodes.commands.keys", "CurveZMQ keys for a graph on tcp (generate)"),
    "calibrate": ("nodes.commands.calibrate", "fit a checkpoint's uncertainty on validation drives (no training)"),
}


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2, no traceback."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streetloc", description="Camera-only street localization: a graph of nodes over ZeroMQ "
        "(camera or replayed drive -> PoseNet -> poses), with the tools to record, replay, train and score.",
        epilog="`streetloc demo` runs the whole job on the shipped synthetic drive; COMMAND -h for each.")
    from nodes.commands import OneLineErrorParser

    # every subcommand's argument errors are one line naming the option and the value
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C (or `launched` stopping a launcher) while still importing: no traceback
        return 130


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command asked for: help for the rest comes from the table.
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    if only is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # -h, or a bad option (argparse said why): the code, as a command's
        return exc.code if isinstance(exc.code, int) else 2
    if not hasattr(args, "func"):
        parser.parse_args([argv[0], "--help"])
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `streetloc topic echo ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, ValueError, OSError, argparse.ArgumentTypeError) as exc:
        # Bad input (a missing file, a malformed field) is an answer, not a traceback; the pure packages
        # raise ValueError/OSError with messages naming the file, field and value; a command that parses
        # an option itself (nodes.commands.pair_of_ints) raises ArgumentTypeError naming the option.
        if os.environ.get("STREETLOC_DEBUG"):
            raise
        print(f"streetloc {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
