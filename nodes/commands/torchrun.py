"""``--nproc N`` of ``streetloc train`` and ``streetloc evaluate``: rerun the same command as N processes
on this machine under torchrun (``python -m torch.distributed.run --standalone``), which sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in each; `perception.distributed` joins them. Several machines:
run torchrun yourself on each (docs/distributed.md). Torch is not imported here."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from nodes.commands import positive_int

NPROC_OPTION = "--nproc"


def add_nproc_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(NPROC_OPTION, type=positive_int, default=1, metavar="N",
                        help="run as N processes on this machine (torchrun --standalone: one per GPU, or CPU "
                        "processes with gloo); several machines: torchrun on each, see docs/distributed.md")


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (any unambiguous prefix argparse accepted too)."""
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if len(name) > 3 and NPROC_OPTION.startswith(name):
            skip = "=" not in word
            continue
        out.append(word)
    return out


def torchrun_argv(nproc: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line running ``streetloc ARGV`` (without its --nproc) as ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "nodes.cli", *strip_nproc(argv)]


def relaunch_under_torchrun(args: argparse.Namespace, command: str) -> int | None:
    """When ``--nproc`` > 1 and this is not already a torchrun worker: run the command line this process
    was started with as that many processes and return their exit code; None otherwise (go on)."""
    nproc = int(getattr(args, "nproc", 1) or 1)
    if nproc <= 1 or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return None
    argv = sys.argv[1:]
    if command not in argv or not any(w.split("=", 1)[0].startswith("--np") for w in argv):
        raise ValueError(f"{NPROC_OPTION}: works from the command line (`streetloc {command} ... --nproc N`); "
                         "in a program, start torchrun yourself")
    cmd = torchrun_argv(nproc, argv)
    env = dict(os.environ)
    # torchrun's default is 1 thread a process (with a warning); share the cores out instead (--threads,
    # when given, sets torch's own count in each process)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    print(f"streetloc {command}: {nproc} processes: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode
