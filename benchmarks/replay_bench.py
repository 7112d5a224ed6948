"""Replay and record benchmarks (issue 4): what the bus adds on top of reading the file.

1. Replay of a 640x480 JPEG drive (600 frames at 30 Hz, GPS 10 Hz, odometry 60 Hz), same file, warm
   page cache, against ``mcap``'s reader alone iterating the camera channel (the floor):
   - max speed (``rate=0``): frames sent by the replay and frames received by a subscriber in another
     process, both counted (a slow subscriber drops frames, as on a robot); the rates are sent frames
     over the replay's sending time and received frames over the same time;
   - lock-step: a consumer process answers each frame at once (receive, decode header, publish a
     fix with the frame's stamp); the replay waits for each answer before the next frame.
2. Recorder: a publisher process sends 1280x720 BGR frames at 30 Hz for ``--record-seconds``; the
   recorder (JPEG-encoding them) must write every one; reports frames written vs published, the CPU
   time of the recorder's own work per frame (its message handler: JPEG encode + MCAP write, thread CPU
   time) and, separately, the whole recorder process's CPU over the run (receive, idle polling and the
   6 s drain included).

    python benchmarks/replay_bench.py [--frames 600] [--record-seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _mcap_floor(path: Path) -> float:
    from mcap.reader import make_reader

    from perception.drives.topics import CAMERA_TOPIC

    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for _ in make_reader(fh).iter_messages(topics=[CAMERA_TOPIC]):
            n += 1
    return n / (time.perf_counter() - t0)


def _answerer(env: dict, n: int, ready) -> None:
    """Answers each camera frame with a posenet/fix stamped like it (a zero-cost perception node)."""
    os.environ.update(env)
    from nodes.bus.messages import GeoFix, Header
    from nodes.bus.pubsub import Publisher, Subscriber
    from perception.drives.topics import CAMERA_TOPIC, POSENET_TOPIC

    sub = Subscriber(CAMERA_TOPIC)
    pub = Publisher(POSENET_TOPIC, node="answerer")
    ready.set()
    got = 0
    while got < n:
        msg = sub.recv(timeout_s=10)
        if msg is None:
            break
        got += 1
        pub.publish(GeoFix(Header(stamp_ns=msg.header.stamp_ns), lat_deg=0.0, lon_deg=0.0))
    time.sleep(0.5)
    pub.close()
    sub.close()


def _counter(env: dict, n: int, ready, result_q) -> None:
    os.environ.update(env)
    from nodes.bus.pubsub import Subscriber
    from perception.drives.topics import CAMERA_TOPIC

    sub = Subscriber(CAMERA_TOPIC)
    ready.set()
    stamps = []
    t_first = t_last = 0.0
    while len(stamps) < n:
        msg = sub.recv(timeout_s=5)
        if msg is None:
            break
        t_last = time.perf_counter()
        t_first = t_first or t_last
        stamps.append(msg.header.stamp_ns)
    result_q.put((len(stamps), (len(stamps) - 1) / (t_last - t_first) if len(stamps) > 1 else 0.0))


def bench_replay(path: Path, frames: int, root: str) -> dict:
    from nodes.bus.topics import BusConfig
    from nodes.replay import Replay, ReplayParams
    from nodes.runtime import NodeRunner
    from perception.drives.topics import CAMERA_TOPIC, POSENET_TOPIC

    ctx = mp.get_context("spawn")
    out = {"mcap_reader_fps": max(_mcap_floor(path) for _ in range(3))}
    # max speed
    config = BusConfig(ipc_dir=os.path.join(root, "fast"))
    ready, result_q = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_counter, args=(config.to_env(), frames, ready, result_q))
    proc.start()
    ready.wait(30)
    replay = Replay(ReplayParams(drive=str(path), rate=0, start_delay_s=0.5, topics=[CAMERA_TOPIC]))
    t0, cpu0 = time.perf_counter(), time.process_time()
    NodeRunner(replay, config=config).spin()
    send_s = time.perf_counter() - t0 - 0.5
    # CPU of this process (replay: read, convert, encode, send; the ZeroMQ I/O thread included) per frame:
    # on a shared VM this moves less than the wall-clock rates
    out["max_speed_cpu_us_per_frame"] = (time.process_time() - cpu0) / max(replay.frames_published, 1) * 1e6
    received, _ = result_q.get(timeout=60)
    proc.join(10)
    out["max_speed_sent"], out["max_speed_received"] = replay.frames_published, received
    out["max_speed_sent_fps"] = replay.frames_published / send_s
    out["max_speed_received_fps"] = received / send_s
    # lock-step
    config = BusConfig(ipc_dir=os.path.join(root, "lockstep"))
    ready = ctx.Event()
    proc = ctx.Process(target=_answerer, args=(config.to_env(), frames, ready))
    proc.start()
    ready.wait(30)
    replay = Replay(ReplayParams(drive=str(path), lockstep=True, lockstep_topics=[POSENET_TOPIC],
                                 start_delay_s=0.5))
    runner = NodeRunner(replay, config=config)
    t0 = time.perf_counter()
    runner.spin()
    elapsed = time.perf_counter() - t0 - 0.5
    runner.close()
    proc.join(10)
    out["lockstep_fps"] = replay.frames_published / elapsed
    out["lockstep_frames"] = replay.frames_published
    out["lockstep_unanswered"] = replay.lockstep_gave_up
    return out


def _camera_720p(env: dict, seconds: float, ready, result_q) -> None:
    os.environ.update(env)
    from nodes.bus.messages import Header, Image
    from nodes.bus.pubsub import Publisher
    from perception.drives.topics import CAMERA_TOPIC

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (720, 1280 * 2, 3), dtype=np.uint8)
    pub = Publisher(CAMERA_TOPIC, node="camera")
    ready.set()
    pub.wait_for_subscribers(1, 20)
    n = int(seconds * 30)
    t0 = time.monotonic()
    for i in range(n):
        shift = (i * 13) % 1280
        frame = np.ascontiguousarray(base[:, shift:shift + 1280])
        pub.publish(Image(Header(stamp_ns=time.time_ns()), 1280, 720, "bgr8", frame))
        delay = t0 + (i + 1) / 30 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    pub.close()
    result_q.put(n)


def bench_record(root: str, seconds: float) -> dict:
    import resource

    from nodes.bus.topics import BusConfig
    from nodes.record import Recorder, RecordParams
    from nodes.runtime import NodeRunner
    from perception.drives import DriveReader
    from perception.drives.topics import CAMERA_TOPIC

    config = BusConfig(ipc_dir=os.path.join(root, "record"))
    out_path = os.path.join(root, "rec.mcap")
    recorder = Recorder(RecordParams(output=out_path, topics=[CAMERA_TOPIC]))
    handler_cpu_s = [0.0]
    handle = recorder.on_message

    def timed_on_message(topic, msg, recv_ns):  # the recorder's own work: JPEG encode + MCAP write
        c0 = time.thread_time()
        try:
            return handle(topic, msg, recv_ns)
        finally:
            handler_cpu_s[0] += time.thread_time() - c0

    recorder.on_message = timed_on_message  # type: ignore[method-assign]
    runner = NodeRunner(recorder, config=config)
    ctx = mp.get_context("spawn")
    ready, result_q = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_camera_720p, args=(config.to_env(), seconds, ready, result_q))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    proc.start()
    runner.spin(duration_s=seconds + 6)
    runner.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    published = result_q.get(timeout=30)
    proc.join(10)
    written = DriveReader(out_path).channels[CAMERA_TOPIC].message_count
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"published": published, "written": written,
            "recorder_work_cpu_per_frame_ms": handler_cpu_s[0] / max(written, 1) * 1e3,
            "process_cpu_per_frame_ms": cpu_s / max(written, 1) * 1e3,
            "run_s": seconds + 6, "mb": os.path.getsize(out_path) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--record-seconds", type=float, default=10.0)
    args = parser.parse_args()
    from perception.drives.benchmark import write_benchmark_drive

    with tempfile.TemporaryDirectory(prefix="streetloc-replay-bench-") as root:
        path = Path(root) / "drive.mcap"
        write_benchmark_drive(path, args.frames)
        r = bench_replay(path, args.frames, root)
        rec = bench_record(root, args.record_seconds)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| replay of a 640x480 JPEG drive | frames/s | vs mcap reader |")
    print("|---|---|---|")
    floor = r["mcap_reader_fps"]
    print(f"| mcap reader alone (camera channel, no decode) | {floor:.0f} | 1.00 |")
    print(f"| replay max speed: frames sent ({r['max_speed_sent']}/{args.frames}) | "
          f"{r['max_speed_sent_fps']:.0f} | {r['max_speed_sent_fps'] / floor:.2f} |")
    print(f"| replay max speed: frames received by the subscriber process ({r['max_speed_received']}/"
          f"{r['max_speed_sent']} sent) | {r['max_speed_received_fps']:.0f} | {r['max_speed_received_fps'] / floor:.2f} |")
    print(f"| replay max speed: replay process CPU per frame sent | {r['max_speed_cpu_us_per_frame']:.0f} us | |")
    print(f"| replay lock-step <-> answering process ({r['lockstep_frames']} frames, "
          f"{r['lockstep_unanswered']} unanswered) | {r['lockstep_fps']:.0f} | {r['lockstep_fps'] / floor:.2f} |")
    print()
    print(f"| recorder, 1280x720 BGR at 30 Hz for {args.record_seconds:g} s | |")
    print("|---|---|")
    print(f"| frames published / written | {rec['published']} / {rec['written']} |")
    print(f"| recorder's own CPU per frame (handler: JPEG encode + MCAP write) | "
          f"{rec['recorder_work_cpu_per_frame_ms']:.1f} ms |")
    print(f"| recorder process CPU per frame (receive, idle polling, {rec['run_s']:g} s run incl. 6 s drain) | "
          f"{rec['process_cpu_per_frame_ms']:.1f} ms |")
    print(f"| file size | {rec['mb']:.1f} MB |")


if __name__ == "__main__":
    main()
