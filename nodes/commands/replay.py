"""``streetloc replay DRIVE``: play a drive onto the bus, optionally with a graph launched around it.

The options are the replay node's parameters (``nodes.replay.ReplayParams``), one each, plus the names
this command had before they were (``--start`` for ``--start-s``, ``--lockstep-topic``, ``--start-delay``).

With ``--launch FILE`` the replay starts once every launched node has reported ready in its diagnostics
(``nodes.commands.wait_until_ready``: PoseNet loads its model first), then waits ``--start-delay-s`` for
the sockets to connect. ``--record RUN.mcap`` runs the recorder node (``nodes.record``) in this process
from before the graph starts until the last frame is answered, so that ``streetloc eval RUN.mcap`` can
score the run (docs/fusion.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time

import msgspec

from nodes.clock import USE_SIM_TIME_ENV
from nodes.commands import checked_graph, launched, positive_float, wait_until_ready
from nodes.params import add_params_arguments, given_params, params_from_args
from nodes.record import Recorder, RecordParams
from nodes.replay import Replay, ReplayParams
from nodes.runtime import NodeRunner, serve, setup_logging
from perception.drives.topics import CAMERA_TOPIC, POSENET_TOPIC, recorded_topics

ALIASES = {"start_s": ["--start"], "end_s": ["--end"], "lockstep_topics": ["--lockstep-topic"],
           "start_delay_s": ["--start-delay"]}


def default_run_topics() -> list[str]:
    """What ``--record`` keeps by default: every topic the table marks recorded but the camera frames,
    which the replayed drive holds already (``--record-topics`` adds them)."""
    return [t for t in recorded_topics() if t != CAMERA_TOPIC]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("replay", help="publish a recorded drive on the bus",
                              description="Publish a drive's channels on the bus in time order (real time, "
                                          "xN, as fast as possible, or lock-step with the graph).")
    add_params_arguments(p, ReplayParams, positional=("drive",), aliases=ALIASES)
    p.add_argument("--launch", metavar="FILE", help="launch this graph first, stop it when the replay ends")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an [args] value of the --launch file, as `streetloc launch --arg` (repeatable)")
    p.add_argument("--ready-timeout-s", type=positive_float, default=120.0, metavar="S",
                   help="with --launch: wait at most this long for every launched node to report ready "
                        "(PoseNet loads its model first) before the replay starts (default %(default)s)")
    p.add_argument("--record", metavar="RUN.mcap",
                   help="record what the graph publishes during the replay into this file, an indexed drive "
                        "once the last frame is answered: score it with `streetloc eval RUN.mcap`")
    p.add_argument("--record-topics", metavar="A,B",
                   help=f"topics --record keeps (default: {','.join(default_run_topics())})")
    p.set_defaults(func=run)


def answered_topics(graph) -> list[str]:
    """What a lock-step replay of a launched graph waits for unless ``--lockstep-topics`` says: posenet/fix,
    and every topic a launched node makes from camera frames that another launched node consumes (the
    detector's boxes when fusion has a map): the next frame goes out once every input of the frame is in."""
    topics = [POSENET_TOPIC]
    for name, node in graph.nodes.items():
        if CAMERA_TOPIC not in node.subscribes:
            continue
        for topic in node.publishes:
            if topic not in topics and any(topic in other.subscribes for o, other in graph.nodes.items() if o != name):
                topics.append(topic)
    return topics


class Recording:
    """The recorder node in a thread of this process, on a ZeroMQ context of its own (``serve`` ends the
    shared one when the replay finishes, and the recorder must outlive it)."""

    def __init__(self, output: str, topics: list[str], source: str) -> None:
        import zmq

        self.recorder = Recorder(RecordParams(output=output, topics=topics, source=source))
        self.context = zmq.Context()
        self.runner = NodeRunner(self.recorder, context=self.context)
        self.closed = False
        self.thread = threading.Thread(target=self.runner.spin, name="record", daemon=True)
        self.thread.start()

    def settle(self, quiet_s: float = 0.5, max_s: float = 5.0) -> None:
        """Wait until nothing new arrived for ``quiet_s`` (at most ``max_s``): the graph's answers to the
        last frame (the fused pose after the last fix) may still be on their way."""
        deadline = time.monotonic() + max_s
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            now_count = sum(self.recorder.written.values())
            if now_count != count:
                count, since = now_count, time.monotonic()
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the recorder and finish an indexed file (once; again: nothing)."""
        if self.closed:
            return
        self.closed = True
        self.runner.stop()
        self.thread.join()
        try:
            self.runner.close()
        finally:
            from nodes.bus.security import terminate

            terminate(self.context)  # stops a CurveZMQ ZAP handler first


def run(args: argparse.Namespace) -> int:
    params = params_from_args(args, ReplayParams, node="replay")
    if not os.path.exists(params.drive):
        raise ValueError(f"{params.drive}: no such drive file")
    launch_args = {}
    for item in args.arg:
        name, sep, value = item.partition("=")
        if not sep or not args.launch:
            raise ValueError(f"--arg {item!r}: expected NAME=VALUE, with --launch FILE")
        launch_args[name.strip()] = value
    if args.launch:
        graph = checked_graph(args.launch, launch_args)  # a missing or bad file: nothing is played to nobody
        if params.lockstep and "lockstep_topics" not in given_params(args, ReplayParams):
            params = msgspec.structs.replace(params, lockstep_topics=answered_topics(graph))
            print(f"replay: lock-step waits for {', '.join(params.lockstep_topics)}", file=sys.stderr)
    if args.record_topics is not None and not args.record:
        raise ValueError("--record-topics: only with --record RUN.mcap")
    record_topics = ([t.strip() for t in args.record_topics.split(",") if t.strip()]
                     if args.record_topics is not None else default_run_topics())
    setup_logging("replay")
    replay = Replay(params)  # a bad drive is reported before anything starts
    t0 = time.monotonic()
    # subscribed before the graph starts: the recording misses nothing it publishes
    recording = Recording(args.record, record_topics, f"streetloc replay {params.drive}"
                          + (f" --launch {args.launch}" if args.launch else "")) if args.record else None
    # the launched graph runs on the drive's time (nodes.clock)
    env = {**os.environ, USE_SIM_TIME_ENV: "1"}
    with contextlib.ExitStack() as stack:
        if recording is not None:
            stack.callback(recording.close)  # on any way out: an indexed file
        if args.launch:
            launcher = stack.enter_context(launched(args.launch, env=env, launch_args=launch_args))
            ready = wait_until_ready(launcher, args.launch, launch_args=launch_args, timeout_s=args.ready_timeout_s)
            print(f"replay: {', '.join(ready)} ready after {time.monotonic() - t0:.1f} s", file=sys.stderr)
        serve(NodeRunner(replay))
        if recording is not None:
            recording.settle()
            recording.close()  # finished before the graph stops
    elapsed = time.monotonic() - t0
    print(f"replayed {replay.frames_published} frames of {params.drive} in {elapsed:.1f} s"
          f"{f'; {replay.skipped_corrupt} corrupt records skipped' if replay.skipped_corrupt else ''}"
          f"{f'; {replay.lockstep_gave_up} frames unanswered' if replay.lockstep_gave_up else ''}", file=sys.stderr)
    if damage := replay.reader.damage():  # a truncated or damaged drive was played as far as it goes
        print(f"replay: warning: {damage}", file=sys.stderr)
    if recording is not None:
        written = recording.recorder.written
        print(f"recorded {args.record}: {', '.join(f'{t} {n}' for t, n in written.items())}", file=sys.stderr)
    return 0
