"""The whole graph live (issue 15 item 4): ``streetloc launch launch/robot.toml --arg camera=VIDEO`` with a
video file standing in for the camera, played at its own rate; camera -> pose latency, pose rate, drops.

For each input rate (``--fps``): the drive's frames are written to a video at that rate (MJPG .avi, looped
by the camera node), robot.toml is launched on a private bus with all three CNNs on CPU (PoseNet, the
detector, the segmenter: LATEST delivery, one torch thread each) and fusion, and this script listens on
``localization/pose``, ``posenet/fix`` and ``diagnostics`` for ``--seconds`` once poses flow (after
``--warmup-s``). Reported:

* camera -> pose latency, per frame that got a fix: the first pose carrying the frame's trace, published
  at ``trace[-1].pub_ns``, minus the frame's capture time (the fix's ``stamp_ns``; the camera stamps a
  frame when it reads it); p50 / p95 / max. With robot.toml's ``pose_on_fix = false`` a fix waits for
  fusion's next 20 Hz tick (0-50 ms, part of the figure);
* the hops of that path (p50 / p95): capture -> camera publish (JPEG encode), -> PoseNet receives (bus,
  waiting for the node to finish its previous frame), -> PoseNet publishes (decode + model), -> pose;
* pose rate, fix rate, and per CNN node the frames in and dropped (LATEST: older frames overtaken by a
  newer one; the ``dropped`` of ``camera/image`` in the node's diagnostics), over the window.

    python benchmarks/live_latency.py                         # demo_city.mcap at 15 and 30 fps, 20 s each
    python benchmarks/live_latency.py --fps 15 --seconds 30 --no-detector

Timing figures need a quiet machine: the graph's five busy processes share its cores with whatever else
runs (the load average is printed with each row).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAUNCH = ROOT / "launch" / "robot.toml"
CNNS = ("posenet", "detector", "segmenter")


def write_video(drive: str, path: Path, fps: float) -> tuple[int, int, int]:
    """The camera frames of ``drive`` as an MJPG video at ``fps``; (frames, width, height)."""
    import cv2

    from perception.drives import DriveReader

    writer = None
    n = 0
    with DriveReader(drive) as reader:
        for image in reader.images():
            bgr = image.to_bgr()
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (bgr.shape[1], bgr.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write MJPG video")
                size = bgr.shape[1], bgr.shape[0]
            writer.write(bgr)
            n += 1
    if writer is None:
        raise ValueError(f"{drive}: no camera frames")
    writer.release()
    return n, *size


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def run(video: str, size: tuple[int, int], args: argparse.Namespace) -> dict:
    import zmq

    from nodes.bus.pubsub import Delivery, Subscriber
    from nodes.commands import launched
    from perception.drives.topics import CAMERA_TOPIC, DIAGNOSTICS_TOPIC, POSE_TOPIC, POSENET_TOPIC

    launch_args = {"camera": video, "width": str(size[0]), "height": str(size[1]), "loop": "true",
                   "detector": "false" if args.no_detector else "true"}
    launch_args.update(item.split("=", 1) for item in args.arg)
    ctx = zmq.Context()
    subs = {t: Subscriber(t, delivery=Delivery.EVERY, context=ctx) for t in (POSE_TOPIC, POSENET_TOPIC, DIAGNOSTICS_TOPIC)}
    got: dict[str, list] = {t: [] for t in subs}
    stop = threading.Event()

    def collect() -> None:
        poller = zmq.Poller()
        for sub in subs.values():
            poller.register(sub.socket, zmq.POLLIN)
        while not stop.is_set():
            if not poller.poll(100):
                continue
            for topic, sub in subs.items():
                while (msg := sub.recv(0)) is not None:
                    got[topic].append((time.time_ns(), msg))

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    err = None if args.verbose else open(os.devnull, "w")
    try:
        with launched(LAUNCH, launch_args=launch_args, stderr=err, stdout=err):
            deadline = time.monotonic() + args.start_timeout_s
            expected = {n for n in CNNS if not (args.no_detector and n == "detector")}

            def working() -> set[str]:  # CNN nodes whose diagnostics say they took frames
                return {m.node for _, m in list(got[DIAGNOSTICS_TOPIC]) if m.node in expected
                        and any(s.topic == CAMERA_TOPIC and s.count for s in m.topics)}

            while not got[POSE_TOPIC] or working() != expected:
                if time.monotonic() > deadline:
                    raise OSError(f"within {args.start_timeout_s:g} s of launching {LAUNCH}: "
                                  f"{len(got[POSE_TOPIC])} poses, working: {sorted(working())}")
                time.sleep(0.2)
            time.sleep(args.warmup_s)
            start_ns = time.time_ns()
            load0 = os.getloadavg()[0]
            time.sleep(args.seconds)
            end_ns = time.time_ns()
            load1 = os.getloadavg()[0]
    finally:
        stop.set()
        thread.join()
        for sub in subs.values():
            sub.close()
        ctx.term()

    def window(topic: str) -> list:
        return [m for t, m in got[topic] if start_ns <= t < end_ns]

    poses, fixes = window(POSE_TOPIC), window(POSENET_TOPIC)
    capture = {f.header.trace[0].pub_ns: f for f in fixes if f.header.trace}
    first_pose: dict[int, int] = {}
    for pose in poses:
        key = pose.header.trace[0].pub_ns if pose.header.trace else None
        if key in capture and key not in first_pose:
            first_pose[key] = pose.header.trace[-1].pub_ns
    hops: dict[str, list[float]] = {"capture -> pose": [], "capture -> camera publish": [],
                                    "camera -> PoseNet receives": [], "PoseNet (decode + model)": [],
                                    "PoseNet -> pose (fusion, tick wait)": []}
    for key, pose_pub in first_pose.items():
        fix = capture[key]
        cam, net = fix.header.trace[0], fix.header.trace[-1]
        stamp = fix.header.stamp_ns
        hops["capture -> pose"].append((pose_pub - stamp) / 1e6)
        hops["capture -> camera publish"].append((cam.pub_ns - stamp) / 1e6)
        hops["camera -> PoseNet receives"].append((net.recv_ns - cam.pub_ns) / 1e6)
        hops["PoseNet (decode + model)"].append((net.pub_ns - net.recv_ns) / 1e6)
        hops["PoseNet -> pose (fusion, tick wait)"].append((pose_pub - net.pub_ns) / 1e6)

    # per node: frames in and dropped on camera/image over the window (diagnostics at its two ends)
    diags = got[DIAGNOSTICS_TOPIC]
    nodes: dict[str, dict] = {}
    for name in (*CNNS, "camera"):
        series = [(t, m) for t, m in diags if m.node == name]
        before = [m for t, m in series if t < start_ns] or [m for _, m in series[:1]]
        after = [m for t, m in series if t <= end_ns + 1_500_000_000]
        if not before or not after:
            continue

        def stat(msg, direction):
            return next(((s.count, s.dropped) for s in msg.topics if s.topic == CAMERA_TOPIC
                         and s.direction == direction), (0, 0))

        direction = "out" if name == "camera" else "in"
        (c0, d0), (c1, d1) = stat(before[-1], direction), stat(after[-1], direction)
        span_s = (after[-1].header.stamp_ns - before[-1].header.stamp_ns) / 1e9
        nodes[name] = {"frames": c1 - c0, "dropped": d1 - d0, "span_s": span_s, "errors": after[-1].errors}
    seconds = (end_ns - start_ns) / 1e9
    return {"seconds": seconds, "poses": len(poses), "fixes": len(fixes), "latency_n": len(first_pose),
            "hops": hops, "nodes": nodes, "load": (load0, load1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drive", default=str(ROOT / "sim_data" / "drives" / "demo_city.mcap"))
    ap.add_argument("--fps", type=float, nargs="+", default=[15.0, 30.0], help="input rates, Hz")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per rate, s")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="after the first pose, before measuring")
    ap.add_argument("--start-timeout-s", type=float, default=240.0)
    ap.add_argument("--no-detector", action="store_true", help="PoseNet and the segmenter only")
    ap.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                    help="a further robot.toml argument, e.g. perception_nice=0 (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="show the graph's log")
    args = ap.parse_args()
    tmp_dir = tempfile.TemporaryDirectory(prefix="live-latency-")  # videos and the bus, removed at exit
    tmp = Path(tmp_dir.name)
    os.environ["STREETLOC_IPC_DIR"] = str(tmp / "ipc")  # a bus of our own: other graphs are not disturbed
    rows = []
    for fps in args.fps:
        video = tmp / f"drive_{fps:g}fps.avi"
        frames, width, height = write_video(args.drive, video, fps)
        print(f"{video.name}: {frames} frames {width}x{height} at {fps:g} fps (looped)", flush=True)
        r = run(str(video), (width, height), args)
        lat = r["hops"]["capture -> pose"]
        print(f"  {fps:g} fps: {r['poses'] / r['seconds']:.1f} poses/s, {r['fixes'] / r['seconds']:.1f} fixes/s, "
              f"camera->pose p50 {pct(lat, 50):.0f} ms p95 {pct(lat, 95):.0f} ms max {max(lat, default=float('nan')):.0f} ms "
              f"({r['latency_n']} frames); load average {r['load'][0]:.1f}-{r['load'][1]:.1f}", flush=True)
        for hop, values in r["hops"].items():
            print(f"    {hop:38s} p50 {pct(values, 50):6.1f} ms  p95 {pct(values, 95):6.1f} ms")
        for name, n in r["nodes"].items():
            what = "published" if name == "camera" else "in"
            print(f"    {name:10s} {n['frames'] / n['span_s']:5.1f} frames/s {what}, {n['dropped']} dropped "
                  f"({n['dropped'] / max(1, n['frames'] + n['dropped']):.0%}) over {n['span_s']:.0f} s")
        rows.append((fps, r))
    print()
    print("| input | camera->pose p50 / p95 / max, ms | poses/s | fixes/s | frames in / dropped per CNN node "
          "(frames/s) | load average |")
    print("|---|---|---|---|---|---|")
    for fps, r in rows:
        lat = r["hops"]["capture -> pose"]
        per = "; ".join(f"{name} {n['frames'] / n['span_s']:.1f} / {n['dropped'] / n['span_s']:.1f}"
                        for name, n in r["nodes"].items() if name != "camera")
        print(f"| {fps:g} fps | {pct(lat, 50):.0f} / {pct(lat, 95):.0f} / {max(lat, default=float('nan')):.0f} | "
              f"{r['poses'] / r['seconds']:.1f} | {r['fixes'] / r['seconds']:.1f} | {per} | "
              f"{r['load'][0]:.1f}-{r['load'][1]:.1f} |")
    print(f"\nwindow {args.seconds:g} s per rate after {args.warmup_s:g} s of warm-up; drive {args.drive}; "
          f"{statistics.fmean([r['load'][1] for _, r in rows]):.1f} mean load at the ends")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
