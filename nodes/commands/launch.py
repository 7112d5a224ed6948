"""``streetloc launch FILE``: check a launch file, or run its graph and keep it up (docs/launch.md)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from nodes.launcher.description import NodeEntry, load_launch, parse_arg_assignments
from nodes.launcher.graph import Graph, build_graph, describe_graph, toml_literal
from nodes.launcher.supervisor import Supervisor
from nodes.params import params_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "launch", help="run a graph of nodes from a launch file (or --check it)",
        description="Start every node of a launch file as its own process and supervise it: restart per "
                    "its respawn policy, prefix its output with its name, log it per node. Ctrl-C or "
                    "SIGTERM stops the graph within 5 s.")
    p.add_argument("file", nargs="?", help="launch file (TOML), e.g. launch/bringup.toml")
    p.add_argument("--check", action="store_true",
                   help="validate the file and print the graph without starting anything; exit 2 on problems")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="set a launch argument (repeatable); --show-args lists them")
    p.add_argument("--show-args", action="store_true", help="print the file's arguments and exit")
    p.add_argument("--show-keys", action="store_true", help="print every key a node entry takes and exit")
    p.add_argument("--machine", metavar="NAME",
                   help="run this machine's part of a graph split across machines ([machines] in the file)")
    p.add_argument("--log-dir", metavar="DIR", type=Path,
                   help="write the logs here (default: $STREETLOC_LOG_DIR or ~/.local/state/streetloc/log, "
                        "in a folder per run; 'latest' links to the newest)")
    p.add_argument("--parent-fd", type=int, metavar="FD", help=argparse.SUPPRESS)  # nodes.commands.launched
    p.add_argument("--insecure", action="store_true",
                   help="allow binding tcp beyond loopback without CurveZMQ keys (anyone who reaches the ports "
                        "can read and publish); same as STREETLOC_INSECURE=1 or [bus] insecure = true")
    p.set_defaults(func=cmd_launch)


def _show_args(desc) -> None:
    if not desc.args:
        print(f"{desc.file} takes no arguments")
        return
    print(f"arguments of {desc.file} (set with --arg NAME=VALUE):")
    for spec in desc.args.values():
        default = "(required)" if spec.default is None else f"default {toml_literal(spec.default)}"
        choices = f", one of {', '.join(map(toml_literal, spec.choices))}" if spec.choices else ""
        print(f"  {spec.name}: {spec.description} [{default}{choices}]")


def _show_keys() -> None:
    print("keys of a [nodes.NAME] table:")
    print("\n".join(params_text(NodeEntry)))


def _machine(graph: Graph, asked: str | None, running: bool) -> str:
    machines = graph.description.machines
    if asked is not None:
        if asked not in machines:
            known = ", ".join(machines) or "none (the file declares no [machines])"
            raise ValueError(f"{graph.description.file}: --machine {asked}: no such machine; machines: {known}")
        return asked
    if not running:
        return ""  # --check of the whole graph
    if len(machines) > 1:
        raise ValueError(f"{graph.description.file} spans machines {', '.join(machines)}: pass --machine NAME "
                         "to run one machine's part (each machine runs its own launcher)")
    return next(iter(machines), "")


def default_log_dir(file: str, machine: str) -> Path:
    """A fresh folder per run under $STREETLOC_LOG_DIR (or ~/.local/state/streetloc/log), and a
    ``latest`` link to it, as ROS keeps ~/.ros/log/latest."""
    base = Path(os.environ.get("STREETLOC_LOG_DIR") or Path.home() / ".local/state/streetloc/log")
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(file).stem}{'-' + machine if machine else ''}-{os.getpid()}"
    path = base / run
    path.mkdir(parents=True, exist_ok=True)
    latest = base / "latest"
    try:
        if latest.is_symlink() or not latest.exists():
            tmp = base / f".latest-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(run)
            os.replace(tmp, latest)
    except OSError:
        pass  # a convenience only
    return path


def cmd_launch(args: argparse.Namespace) -> int:
    if args.show_keys:
        _show_keys()
        return 0
    if not args.file:
        raise ValueError("which launch file? e.g. streetloc launch launch/bringup.toml")
    if args.insecure:  # before any bus config is made; nodes inherit it through the launcher's bus env
        os.environ["STREETLOC_INSECURE"] = "1"
    desc = load_launch(args.file, parse_arg_assignments(args.arg))
    if args.show_args:
        _show_args(desc)
        return 0
    graph = build_graph(desc)
    if graph.problems:
        for problem in graph.problems:
            print(problem, file=sys.stderr)
        n = len(graph.problems)
        print(f"streetloc launch: {n} problem{'s' if n > 1 else ''} in {desc.file}; nothing started",
              file=sys.stderr)
        return 2
    machine = _machine(graph, args.machine, running=not args.check)
    if args.check:
        print("\n".join(describe_graph(graph, machine)))
        print(f"{desc.file}: OK")
        return 0
    if not graph.part(machine):
        raise ValueError(f"{desc.file}: no enabled node to run" + (f" on machine {machine}" if machine else ""))
    log_dir = args.log_dir or default_log_dir(desc.file, machine)
    return Supervisor(graph, machine=machine, log_dir=log_dir, parent_fd=args.parent_fd).run()
