"""What the node graph costs: the same drive through (a) the launched graph, lock-step over ZeroMQ, and (b)
the same models and filter called in one process, in the same order, one frame at a time (issue 15 item 3).

(a) ``streetloc replay DRIVE --lockstep --launch launch/replay.toml`` as the command runs it (``launched``
+ ``wait_until_ready`` + the ``Replay`` node in this process), with a subscriber on ``localization/pose``
and ``posenet/fix``. Timed from the replay publishing the first frame to the last frame answered on every
lock-step topic (model loading and process start are not in it; they are in neither run).

(b) The nodes' own classes built from the launch file's parameters (``PoseNetNode``, ``DetectorNode``,
``SegmenterNode``, ``FusionNode``: the same ``load_predictor`` / ``_prepare`` / ``_infer`` and the same
filter), fed by the replay's own reader and conversion (``Replay.next_frame``): each frame to each CNN, the
fixes and the odometry to the fusion node through the runtime's ``StampMerger`` and ``TickSchedule`` on
stamp time, as the fusion process gets them. Timed over the same frames.

Runs alternate a, b, a, b ... (``--reps`` each), every run of (a) on a freshly launched graph, every run of
(b) on freshly built nodes (a filter starts empty), and the poses of every run are compared field by field
(stamp, lat/lon, covariance, heading, status) with the first (b) run's. One table per row (PoseNet +
fusion; with ``--all``, the detector and the segmenter too).

    python benchmarks/graph_overhead.py                       # demo_city.mcap, PoseNet + fusion, 3 reps
    python benchmarks/graph_overhead.py --all --reps 3        # + a row with all three CNNs
    python benchmarks/graph_overhead.py --drive sim_data/drives/demo_320.mcap --profile   # + where (a)'s ms go

Nothing else may run on the machine for figures worth keeping: the graph's processes and (b) share its
cores. The graph runs on a private ipc folder, so other graphs on the machine are not disturbed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (a) may run another checkout's code (--baseline-tree): the child process imports from it
TREE = Path(os.environ.get("GRAPH_OVERHEAD_TREE", ROOT)).resolve()
sys.path.insert(0, str(TREE))

LAUNCH = TREE / "launch" / "replay.toml"


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of every descendant process of ``pid`` by its node name (``-m nodes.X``)."""
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid != pid:
            continue
        name = next((c.decode() for c in cmd if c.startswith(b"nodes.")), entry.name)
        out[name] = proc_cpu_s(int(entry.name))
    return out


def launch_args(all_cnns: bool) -> dict[str, str]:
    flag = "true" if all_cnns else "false"
    return {"device": "cpu", "monitor": "false", "detector": flag, "segmenter": flag}


def lockstep_topics(all_cnns: bool) -> list[str]:
    from perception.drives.topics import DETECTIONS_TOPIC, POSENET_TOPIC, SEGMENTATION_TOPIC

    return [POSENET_TOPIC, DETECTIONS_TOPIC, SEGMENTATION_TOPIC] if all_cnns else [POSENET_TOPIC]


def pose_key(pose) -> list:
    """What must be identical between (a) and (b): everything but the header's wall-clock trace (as JSON
    gives it back: floats exactly, NaN as NaN)."""
    import json

    return json.loads(json.dumps([pose.header.stamp_ns, pose.lat_deg, pose.lon_deg, list(pose.cov_enu_m2),
                                  pose.heading_deg, pose.heading_std_deg, pose.speed_mps, pose.status, pose.reason,
                                  list(pose.inputs_used), list(pose.inputs_gated), pose.valid]))


def fix_key(fix) -> list:
    import json

    return json.loads(json.dumps([fix.header.stamp_ns, fix.lat_deg, fix.lon_deg, list(fix.cov_enu_m2)]))


# -- (a) the graph ------------------------------------------------------------------------------

def run_graph(drive: str, all_cnns: bool, profile: bool) -> dict:
    import threading

    import zmq

    from nodes.bus.pubsub import Delivery, Subscriber
    from nodes.clock import USE_SIM_TIME_ENV
    from nodes.commands import launched, wait_until_ready
    from nodes.replay import Replay, ReplayParams
    from nodes.runtime import NodeRunner
    from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC

    args = launch_args(all_cnns)
    ctx = zmq.Context()
    # EVERY: the socket's queue (10,000 messages a topic) holds a run's poses between two looks, so no
    # drain thread competes with the replay in this process
    poses_sub = Subscriber(POSE_TOPIC, delivery=Delivery.EVERY, context=ctx)
    fixes_sub = Subscriber(POSENET_TOPIC, delivery=Delivery.EVERY, context=ctx)
    poses: list = []
    fixes: list = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            for sub, into in ((poses_sub, poses), (fixes_sub, fixes)):
                while (msg := sub.recv(0)) is not None:
                    into.append(msg)
            time.sleep(0.05)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()

    replay = Replay(ReplayParams(drive=drive, lockstep=True, lockstep_topics=lockstep_topics(all_cnns),
                                 start_delay_s=0.5))
    replay.t_first_ns = None
    # the step that publishes a frame (named _publish_until_frame before issue 15): note the first
    step_name = "next_frame" if hasattr(replay, "next_frame") else "_publish_until_frame"
    step = getattr(replay, step_name)

    def timed_step():
        out = step()
        if replay.t_first_ns is None and replay.frames_published:
            replay.t_first_ns = time.perf_counter_ns()
        return out

    setattr(replay, step_name, timed_step)
    acks: dict[int, int] = {}  # fix stamp -> wall time the replay got it (a lock-step answer)
    on_message = replay.on_message

    def timed_on_message(topic, msg, recv_ns):
        if topic == POSENET_TOPIC:
            acks.setdefault(msg.header.stamp_ns, time.time_ns())
        return on_message(topic, msg, recv_ns)

    replay.on_message = timed_on_message
    env = {**os.environ, USE_SIM_TIME_ENV: "1"}
    try:
        with launched(LAUNCH, env=env, launch_args=args, stderr=None if profile else open(os.devnull, "w")) as proc:
            wait_until_ready(proc, LAUNCH, launch_args=args, timeout_s=300)
            runner = NodeRunner(replay)
            cpu0 = children_cpu(proc.pid)
            me0 = time.process_time()
            runner.spin()
            end_ns = time.perf_counter_ns()
            cpu1 = children_cpu(proc.pid)
            me1 = time.process_time()
            runner.close()
            # the last fix's pose: fusion holds a fix until the next odometry or max_delay_s
            deadline = time.monotonic() + 3.0
            last = -1
            while time.monotonic() < deadline:
                time.sleep(0.3)
                if len(poses) == last:
                    break
                last = len(poses)
    finally:
        stop.set()
        collector.join()
        poses_sub.close()
        fixes_sub.close()
        ctx.term()
    assert replay.t_first_ns is not None
    seconds = (end_ns - replay.t_first_ns) / 1e9
    cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    cpu["replay (this process)"] = me1 - me0
    # the wall time of one lock-step frame, hop by hop (ms, medians): from the fixes' traces and the acks
    hops: dict[str, list[float]] = {"replay -> PoseNet receives": [], "PoseNet works": [],
                                    "PoseNet -> replay has the fix": [], "replay: fix -> next frame out": []}
    by_stamp = {f.header.stamp_ns: f for f in fixes}
    stamps = sorted(by_stamp)
    for this, following in zip(stamps, stamps[1:], strict=False):
        rep, net = by_stamp[this].header.trace[0], by_stamp[this].header.trace[-1]
        hops["replay -> PoseNet receives"].append((net.recv_ns - rep.pub_ns) / 1e6)
        hops["PoseNet works"].append((net.pub_ns - net.recv_ns) / 1e6)
        if this in acks:
            hops["PoseNet -> replay has the fix"].append((acks[this] - net.pub_ns) / 1e6)
            hops["replay: fix -> next frame out"].append(
                (by_stamp[following].header.trace[0].pub_ns - acks[this]) / 1e6)
    hop_ms = {k: round(statistics.median(v), 2) for k, v in hops.items() if v}
    return {"frames": replay.frames_published, "seconds": seconds, "poses": [pose_key(p) for p in poses], "hops": hop_ms,
            "fixes": [fix_key(f) for f in fixes], "gave_up": replay.lockstep_gave_up, "cpu": cpu}


def graph_in_child(tree: Path, drive: str, all_cnns: bool, profile: bool) -> dict:
    """``run_graph`` in a child process importing ``tree``'s code; its result as JSON."""
    import json
    import subprocess

    env = {**os.environ, "GRAPH_OVERHEAD_TREE": str(tree), "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--graph-run", "--drive", drive]
    cmd += ["--only-all"] if all_cnns else []
    cmd += ["--profile"] if profile else []
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- (b) one process ----------------------------------------------------------------------------

class InProcess:
    """The graph's nodes as plain objects (models loaded once; the stateful parts rebuilt per run)."""

    def __init__(self, all_cnns: bool) -> None:
        from nodes.commands import checked_graph

        graph = checked_graph(LAUNCH, launch_args(all_cnns))
        self.graph = graph
        order = ["posenet", "detector", "segmenter"] if all_cnns else ["posenet"]
        self.cnns = [graph.nodes[n].cls(graph.nodes[n].params) for n in order]

    def run(self, drive: str) -> dict:
        from nodes.clock import GraphClock, StampMerger, TickSchedule
        from nodes.replay import Replay, ReplayParams
        from perception.drives.topics import CAMERA_TOPIC, POSENET_TOPIC
        from perception.models.posenet.validity import FrameValidity

        fusion_spec = self.graph.nodes["fusion"]
        fusion = fusion_spec.cls(fusion_spec.params)
        posenet = self.cnns[0]
        posenet.validity = FrameValidity(posenet.predictor)  # a fresh stream (frozen-frame check)
        clock = GraphClock(sim=True)
        fusion.clock = clock
        merger = StampMerger(list(fusion.subscribes), fusion.merge_inputs_by_stamp)
        schedule = TickSchedule(fusion.tick_hz()) if fusion.tick_hz() > 0 else None
        replay = Replay(ReplayParams(drive=drive, lockstep=True))
        poses: list = []
        fixes: list = []

        def release(now_ns: int) -> None:
            for held in merger.pop_ready(now_ns):
                if schedule is not None and not held.late:
                    for tick_ns in schedule.due(held.stamp_ns):
                        clock.advance(tick_ns)
                        poses.extend(m for _, m in fusion.on_tick(tick_ns) or ())
                clock.advance(held.stamp_ns)
                poses.extend(m for _, m in fusion.on_message(held.topic, held.item, held.arrival_ns) or ())

        t0 = time.perf_counter_ns()
        cpu0 = time.process_time()
        cnn_s = fusion_s = 0.0
        while True:
            batch = replay.next_frame()
            if not batch:
                break
            for topic, msg in batch:
                if topic == CAMERA_TOPIC:
                    for cnn in self.cnns:
                        c0 = time.thread_time()
                        outs = list(cnn.on_message(topic, msg, 0) or ())
                        cnn_s += time.thread_time() - c0
                        for out_topic, out in outs:
                            if out_topic == POSENET_TOPIC:
                                fixes.append(out)
                                merger.push(POSENET_TOPIC, out.header.stamp_ns, out, 0)
                elif topic in fusion.subscribes:
                    merger.push(topic, msg.header.stamp_ns, msg, 0)
            f0 = time.thread_time()
            release(0)
            fusion_s += time.thread_time() - f0
        end_ns = time.perf_counter_ns()
        cpu = time.process_time() - cpu0
        release(1 << 62)  # what the graph's fusion lets go after max_delay_s: the last fix
        replay.close()
        return {"frames": replay.frames_published, "seconds": (end_ns - t0) / 1e9,
                "poses": [pose_key(p) for p in poses], "fixes": [fix_key(f) for f in fixes],
                "cpu": {"total": cpu, "cnns": cnn_s, "fusion": fusion_s, "reading": cpu - cnn_s - fusion_s}}


def compare(a: list, b: list) -> str:
    """'identical', or where the first difference is (pose keys)."""
    if a == b:
        return "identical"
    n = sum(1 for x, y in zip(a, b, strict=False) if x == y)
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"DIFFER: {len(b)} vs {len(a)} poses, {n} equal, first difference at #{first}"


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drive", default=str(ROOT / "sim_data" / "drives" / "demo_city.mcap"))
    ap.add_argument("--reps", type=int, default=3, help="runs of each of (a) and (b) per row, alternated")
    ap.add_argument("--all", action="store_true", help="also the row with the detector and the segmenter")
    ap.add_argument("--only-all", action="store_true", help="only the row with all three CNNs")
    ap.add_argument("--baseline-tree", metavar="DIR",
                    help="another checkout (git worktree add DIR COMMIT): its graph runs as a third column")
    ap.add_argument("--profile", action="store_true", help="CPU ms per frame of every process; node logs shown")
    ap.add_argument("--graph-run", action="store_true", help=argparse.SUPPRESS)  # one (a) run, JSON out
    args = ap.parse_args()
    if args.graph_run:
        print(json.dumps(run_graph(args.drive, args.only_all, args.profile)))
        return 0
    ipc = tempfile.TemporaryDirectory(prefix="graph-overhead-")  # a bus of our own, removed at exit
    os.environ["STREETLOC_IPC_DIR"] = ipc.name
    os.environ.setdefault("STREETLOC_LOG_LEVEL", "WARNING")
    import logging

    logging.basicConfig(level=logging.WARNING)
    rows = [True] if args.only_all else [False, True] if args.all else [False]
    trees = [("graph", ROOT)] + ([("baseline graph", Path(args.baseline_tree).resolve())] if args.baseline_tree else [])
    print(f"drive {args.drive}; {args.reps} runs each, interleaved ({', '.join(n for n, _ in trees)}, one process); "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    table = []
    for all_cnns in rows:
        name = "PoseNet + detector + segmenter + fusion" if all_cnns else "PoseNet + fusion"
        inproc = InProcess(all_cnns)
        fps: dict[str, list[float]] = {n: [] for n, _ in trees}
        cpu: dict[str, list[float]] = {n: [] for n, _ in trees}
        fps["one process"], cpu["one process"] = [], []
        ratios: dict[str, list[float]] = {n: [] for n, _ in trees}
        verdicts: dict[str, list[str]] = {n: [] for n, _ in trees}
        reference = None
        for rep in range(args.reps):
            runs = {n: graph_in_child(tree, args.drive, all_cnns, args.profile) for n, tree in trees}
            b = inproc.run(args.drive)
            reference = reference or b["poses"]
            fb = b["frames"] / b["seconds"]
            fps["one process"].append(fb)
            cpu["one process"].append(b["cpu"]["total"] / b["frames"] * 1e3)
            line = [f"one process {fb:.1f} frames/s ({len(b['poses'])} poses, {compare(reference, b['poses'])})"]
            for n, a in runs.items():
                fa = a["frames"] / a["seconds"]
                fps[n].append(fa)
                ratios[n].append(fa / fb)
                cpu[n].append(sum(a["cpu"].values()) / a["frames"] * 1e3)
                verdicts[n].append(compare(reference, a["poses"]))
                fixes = "identical" if a["fixes"] == b["fixes"] else "DIFFER"
                line.append(f"{n} {fa:.1f} frames/s, ratio {fa / fb:.2f} ({a['frames']} frames, {a['gave_up']} "
                            f"unanswered, {len(a['poses'])} poses {verdicts[n][-1]}, fixes {fixes})")
                if args.profile:
                    per = {k: round(v / a["frames"] * 1e3, 1) for k, v in sorted(a["cpu"].items())}
                    line.append(f"  {n} CPU ms/frame {per}")
                    line.append(f"  {n} wall ms/frame by hop (median) {a['hops']}")
            if args.profile:
                line.append(f"  one process CPU ms/frame {({k: round(v / b['frames'] * 1e3, 1) for k, v in b['cpu'].items()})}")
            print(f"{name}, run {rep + 1}:\n    " + "\n    ".join(line), flush=True)
        for n, _ in trees:
            ok = all(v == "identical" for v in verdicts[n])
            table.append((name, n, spread(fps[n]), spread(fps["one process"]), f"{spread(ratios[n])}",
                          f"{spread(cpu[n])} / {spread(cpu['one process'])}",
                          "identical" if ok else "; ".join(sorted(set(verdicts[n])))))
    print()
    print("| CNNs | run | (a) graph lock-step, frames/s | (b) one process, frames/s | a/b | CPU ms per frame, "
          "all processes (a) / (b) | poses (a) vs (b) |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    print(f"\nmedian (min-max) of {args.reps} interleaved runs each; load average at the end "
          f"{os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
