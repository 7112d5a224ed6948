"""Subcommands of the ``streetloc`` CLI, one module each (see ``nodes.cli.COMMANDS``), and the argument
types they share."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from nodes.bus.topics import BusConfig


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (``--duration``: 0 means until Ctrl-C)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def pair_of_ints(text: str, *, option: str = "--size", names: str = "WIDTHxHEIGHT",
                 low: int = 1, high: int = 1 << 16) -> tuple[int, int]:
    """The one ``AxB`` parser of the command layer (``320x240`` -> ``(320, 240)``).

    ``option`` and ``names`` only shape the error message; each side must lie in ``[low, high]``.
    Raises ``argparse.ArgumentTypeError`` naming the option and the value.
    """
    a, sep, b = text.strip().lower().partition("x")
    try:
        pair = (int(a), int(b))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} {text!r} is not {names}, e.g. 320x240") from None
    if not sep or min(pair) < low or max(pair) > high:
        raise argparse.ArgumentTypeError(f"{option} {text!r}: both numbers of {names} must be {low}..{high}")
    return pair


def checked_graph(launch_file: str | os.PathLike[str], launch_args: Mapping[str, str] | None = None):
    """The graph of ``launch_file`` as ``streetloc launch --check`` builds it; ValueError listing its
    problems on one line otherwise, so that a command launching it (``replay --launch``) stops before
    doing anything (``nodes.launcher.graph.Graph``)."""
    from nodes.launcher.description import load_launch
    from nodes.launcher.graph import build_graph

    graph = build_graph(load_launch(launch_file, dict(launch_args or {})))
    if graph.problems:
        n = len(graph.problems)
        raise ValueError(f"{n} problem{'s' if n > 1 else ''} in launch file {launch_file}: "
                         + "; ".join(str(p) for p in graph.problems))
    return graph


@contextlib.contextmanager
def launched(launch_file: str | os.PathLike[str], *, launch_args: Mapping[str, str] | None = None,
             options: Sequence[str] = (), stop_timeout_s: float = 10.0,
             **popen: Any) -> Iterator[subprocess.Popen]:
    """``streetloc launch FILE`` as a child process for the duration of a ``with`` block, then stopped as
    Ctrl-C stops it (SIGINT; SIGKILL after ``stop_timeout_s``). The one launch-then-stop of the command
    layer (``streetloc replay --launch``, ``streetloc demo``).

    ``launch_args`` become ``--arg NAME=VALUE``, ``options`` further launch options (``--log-dir D``);
    ``popen`` goes to ``subprocess.Popen`` (env, stdout, stderr, text). Should this process die without
    cleaning up (SIGKILL), the launcher sees the end of a pipe only this process writes (``--parent-fd``)
    and stops its graph once, as on Ctrl-C: no orphans, and every node stopped by one SIGTERM.
    """
    cmd = [sys.executable, "-m", "nodes.cli", "launch", str(launch_file)]
    for name, value in (launch_args or {}).items():
        cmd += ["--arg", f"{name}={value}"]
    # the write end is not inherited by any child (os.pipe is close-on-exec); the launcher gets the read end
    parent_r, parent_w = os.pipe()
    try:
        proc = subprocess.Popen([*cmd, *options, "--parent-fd", str(parent_r)], pass_fds=(parent_r,), **popen)
    except BaseException:
        os.close(parent_w)
        raise
    finally:
        os.close(parent_r)
    try:
        yield proc
    finally:
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=stop_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            os.close(parent_w)


def wait_until_ready(launcher: subprocess.Popen, launch_file: str | os.PathLike[str], *,
                     launch_args: Mapping[str, str] | None = None, config: BusConfig | None = None,
                     timeout_s: float = 120.0) -> list[str]:
    """Block until every node that the ``launched`` graph of ``launch_file`` starts on its own has said
    ``ready`` in its diagnostics (a node publishes them only once built: PoseNet after loading its model,
    5-25 s), at most ``timeout_s``. The one "wait for the launched graph" of the command layer (``streetloc
    demo``, ``streetloc replay --launch``): a lock-step replay started before PoseNet listens gives up on
    its first frames.

    Nodes that wait for topics (``wait_for_topics``), or for such nodes to be ready, start only once the
    replay publishes, so they are not waited for. Returns the names waited for; OSError naming the nodes
    not ready (and why: no diagnostics, not ready, launcher exited) otherwise. ``config``: the bus the
    launcher was started on (default: the environment's), before the file's ``[bus]``.
    """
    from nodes.bus.pubsub import Delivery, Subscriber
    from perception.drives.topics import DIAGNOSTICS_TOPIC

    graph = checked_graph(launch_file, launch_args)
    nodes = graph.part("")
    # those that start without waiting for a topic, and whose waits are on such nodes only
    starting = {n for n, g in nodes.items() if not g.spec.entry.wait_for_topics}
    while True:
        later = {n for n in starting if not set(nodes[n].spec.entry.wait_for_ready) <= starting}
        if not later:
            break
        starting -= later
    ready: dict[str, bool] = {}  # node -> its latest diagnostics said ready
    deadline = time.monotonic() + timeout_s
    # the launcher forwards every node's diagnostics on the graph's bus
    with Subscriber(DIAGNOSTICS_TOPIC, delivery=Delivery.EVERY, config=graph.bus_config(base=config)) as diag:
        while not all(ready.get(n) for n in starting):
            if launcher.poll() is not None:
                raise OSError(f"{launch_file}: the launcher exited (code {launcher.returncode}) before its nodes "
                              "were ready")
            if time.monotonic() > deadline:
                missing = [f"{n} ({'not ready' if n in ready else 'no diagnostics'})" for n in sorted(starting)
                           if not ready.get(n)]
                raise OSError(f"{launch_file}: not ready after {timeout_s:g} s: {', '.join(missing)}")
            msg = diag.recv(timeout_s=0.5)
            if msg is not None and msg.node in starting:
                ready[msg.node] = msg.ready
    return sorted(starting)


# What libjpeg (through OpenCV) prints on its own to the process's stderr for a damaged JPEG it still
# decodes, e.g. "Corrupt JPEG data: 42 extraneous bytes before marker 0xd9"; one line per problem.
LIBJPEG_WARNING = re.compile(r"^(Corrupt JPEG data|Premature end of JPEG file|Invalid JPEG file structure|"
                             r"Warning: unknown JFIF revision|Unsupported marker type|Bogus)")


class CStderrFilter:
    """Lines written by C code to file descriptor 2 that match ``pattern``, counted (``count``)
    instead of shown; see ``filtered_c_stderr``."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.count = 0


@contextlib.contextmanager
def filtered_c_stderr(pattern: re.Pattern[str] = LIBJPEG_WARNING) -> Iterator[CStderrFilter]:
    """Count instead of show the lines that C libraries write straight to the process's stderr (fd 2)
    and that match ``pattern`` (default: libjpeg's warnings on damaged frames, which no OpenCV setting
    silences); the other lines are shown when the block ends. Python's own ``sys.stderr`` (progress,
    errors) is kept on the terminal meanwhile; subprocesses (data-loader workers) inherit the filter."""
    import tempfile

    found = CStderrFilter(pattern)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    capture = tempfile.TemporaryFile()
    py_stderr = sys.stderr
    live = open(os.dup(saved_fd), "w", buffering=1, encoding=getattr(py_stderr, "encoding", None) or "utf-8",
                errors="backslashreplace")
    os.dup2(capture.fileno(), 2)
    try:  # Python's stderr written to fd 2 stays live; one that is not (a test's capture) is left alone
        on_fd2 = py_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        on_fd2 = False
    if on_fd2:
        sys.stderr = live
    try:
        yield found
    finally:
        live.flush()
        sys.stderr = py_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        live.close()
        capture.seek(0)
        for line in capture.read().decode("utf-8", "backslashreplace").splitlines():
            if pattern.search(line):
                found.count += 1
            else:
                print(line, file=sys.stderr)
        capture.close()


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the option and the value (``streetloc train
    posenet: error: argument --depth: 9 is out of range: must be <= 6 (-h for help)``), as every other bad
    input of the CLI: a subcommand with dozens of options would otherwise print its whole usage first."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (-h for help)\n")
