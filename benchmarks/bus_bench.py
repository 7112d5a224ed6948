"""Bus benchmark: streetloc publish/subscribe against bare pyzmq sending the same bytes, same run.

Publisher and subscriber are separate processes, over ipc and tcp, for a pose (~400 B with its trace),
a 1 MB image and a 1080p BGR image (6.2 MB).

- throughput: the publisher streams N messages with at most W in flight (the subscriber returns a
  credit every W/2 messages over a side channel, the same for both implementations), so nothing is
  dropped and the figure is the sustained end-to-end rate, decode included;
- latency: ping-pong, as ZeroMQ's own local_lat/remote_lat do: an echo process receives each message
  and publishes it back; one-way latency is half the round trip, p50 and p99.

The baseline is what a careful user of bare pyzmq writes: PUB/SUB, the identical frames (topic +
payload, plus the image buffer sent zero-copy), np.frombuffer on receive, no msgspec.

    python benchmarks/bus_bench.py [--quick] [--transports ipc,tcp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import tempfile
import time

import numpy as np
import zmq

PAYLOADS: dict[str, tuple[int, ...] | None] = {
    "pose": None,
    "image 1 MB": (1, 1_000_000),  # mono8 [1, 1e6]
    "image 1080p BGR 6.2 MB": (1080, 1920, 3),
}
IMPLS = ("bare pyzmq", "streetloc")


def _topic_for(kind: str) -> str:
    return "localization/pose" if kind == "pose" else "camera/image"


def _make_message(kind: str):
    from nodes.bus.messages import Header, Hop, Image, Pose

    header = Header(stamp_ns=time.time_ns(), frame_id="bench", trace=[Hop("camera", 1, 2)])
    if kind == "pose":
        return Pose(header, lat_deg=34.05, lon_deg=-118.24, valid=True)
    shape = PAYLOADS[kind]
    assert shape is not None
    data = np.full(shape, 7, np.uint8)
    return Image(header, width_px=shape[1], height_px=shape[0], encoding="bgr8" if len(shape) == 3 else "mono8",
                 data=data)


class _Endpoints:
    """A bus namespace (ipc folder or port block) per direction, plus the credit side channel."""

    def __init__(self, transport: str, root: str) -> None:
        from nodes.bus.topics import BusConfig

        base = random.randint(20000, 39000)
        self.forward = BusConfig(transport=transport, ipc_dir=os.path.join(root, "fwd"), port_base=base)
        self.back = BusConfig(transport=transport, ipc_dir=os.path.join(root, "back"), port_base=base + 20)
        self.credit = (f"ipc://{root}/credit.sock" if transport == "ipc" else f"tcp://127.0.0.1:{base + 40}")

    def bare(self, config, kind: str) -> str:
        from nodes.bus.topics import get_topic

        endpoint, _ = config.publisher_endpoint(get_topic(_topic_for(kind)))
        return endpoint


class _BareSocket:
    """Bare pyzmq PUB/SUB with the same frames on the wire."""

    def __init__(self, ctx: zmq.Context, kind: str) -> None:
        self.ctx = ctx
        self.copy = kind == "pose"  # small messages: copying is faster than zero-copy bookkeeping
        self.topic = _topic_for(kind).encode()

    def pub(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.LINGER, 0)
        os.makedirs(os.path.dirname(endpoint.removeprefix("ipc://")), exist_ok=True) if "ipc" in endpoint else None
        sock.bind(endpoint)
        return sock

    def sub(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SUBSCRIBE, self.topic)
        sock.connect(endpoint)
        return sock


# -- the other process: a counting subscriber (throughput) or an echo (latency) -------------------

def _peer(mode: str, impl: str, kind: str, n: int, window: int, eps: _Endpoints, ready, result_q) -> None:
    ctx = zmq.Context.instance()
    credit = ctx.socket(zmq.PUSH)
    credit.connect(eps.credit)
    nbytes = 0
    if impl == "streetloc":
        from nodes.bus.pubsub import Publisher, Subscriber

        sub = Subscriber(_topic_for(kind), config=eps.forward)
        back = Publisher(_topic_for(kind), node="echo", config=eps.back) if mode == "latency" else None
        ready.set()
        if back is not None:
            back.wait_for_subscribers(1, timeout_s=20)
        credit.send(b"ready")
        for i in range(n):
            msg = sub.recv(timeout_s=20)
            if msg is None:
                break
            if back is not None:
                back.publish(msg)
            else:
                nbytes += msg.data.nbytes if kind != "pose" else 0
                if (i + 1) % max(1, window // 2) == 0:
                    credit.send(b"")
        sub.close()
        if back is not None:
            time.sleep(0.2)
            back.close()
    else:
        bare = _BareSocket(ctx, kind)
        sub = bare.sub(eps.bare(eps.forward, kind))
        back = bare.pub(eps.bare(eps.back, kind)) if mode == "latency" else None
        ready.set()
        time.sleep(1.0)  # PUB/SUB slow joiner: let the main process's SUB connect to our PUB
        credit.send(b"ready")
        for i in range(n):
            if not sub.poll(20000):
                break
            frames = sub.recv_multipart(copy=bare.copy)
            if back is not None:
                back.send_multipart(frames, copy=bare.copy)
            else:
                if kind != "pose":
                    nbytes += np.frombuffer(frames[2].buffer, np.uint8).nbytes
                if (i + 1) % max(1, window // 2) == 0:
                    credit.send(b"")
        sub.close(0)
        if back is not None:
            time.sleep(0.2)
            back.close(0)
    credit.send(b"done")
    result_q.put(nbytes)


def run_case(mode: str, impl: str, kind: str, transport: str, n: int) -> dict:
    window = 1000 if kind == "pose" else 8
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="streetloc-bench-") as root:
        eps = _Endpoints(transport, root)
        credit = ctx.socket(zmq.PULL)
        credit.bind(eps.credit)
        msg = _make_message(kind)
        if impl == "streetloc":
            from nodes.bus.pubsub import Publisher, Subscriber

            pub = Publisher(_topic_for(kind), node="bench", config=eps.forward)
            back = Subscriber(_topic_for(kind), config=eps.back) if mode == "latency" else None
        else:
            from nodes.bus.topics import get_topic
            from nodes.bus.wire import Codec

            bare = _BareSocket(ctx, kind)
            frames = [bytes(f) if i < 2 else f for i, f in enumerate(Codec(get_topic(_topic_for(kind))).encode(msg))]
            pub = bare.pub(eps.bare(eps.forward, kind))
            back = bare.sub(eps.bare(eps.back, kind)) if mode == "latency" else None
        proc_ctx = mp.get_context("spawn")
        ready, result_q = proc_ctx.Event(), proc_ctx.Queue()
        proc = proc_ctx.Process(target=_peer, args=(mode, impl, kind, n, window, eps, ready, result_q))
        proc.start()
        ready.wait(60)
        if impl == "streetloc":
            pub.wait_for_subscribers(1, timeout_s=20)
        assert credit.poll(30000) and credit.recv() == b"ready"
        if impl != "streetloc":
            time.sleep(0.3)
        samples_us: list[float] = []
        t0 = time.perf_counter()
        in_flight = 0
        for _ in range(n):
            if mode == "throughput":
                while in_flight >= window:
                    credit.recv()
                    in_flight -= window // 2
                in_flight += 1
            t_send = time.perf_counter_ns()
            if impl == "streetloc":
                msg.header.trace = msg.header.trace[:1]
                pub.publish(msg)
            else:
                pub.send_multipart(frames, copy=bare.copy)
            if mode == "latency":
                if impl == "streetloc":
                    reply = back.recv(timeout_s=20)
                    ok = reply is not None
                else:
                    ok = back.poll(20000)
                    if ok:
                        back.recv_multipart(copy=bare.copy)
                if not ok:
                    break
                samples_us.append((time.perf_counter_ns() - t_send) / 2e3)
        while credit.poll(30000) and credit.recv() != b"done":
            pass
        elapsed_s = time.perf_counter() - t0
        nbytes = result_q.get(timeout=30)
        proc.join(10)
        pub.close() if impl == "streetloc" else pub.close(0)
        if back is not None:
            back.close() if impl == "streetloc" else back.close(0)
        credit.close(0)
    out: dict = {"impl": impl, "kind": kind, "transport": transport, "mode": mode, "n": n}
    if mode == "throughput":
        out["msgs_per_s"] = n / elapsed_s
        out["mb_per_s"] = nbytes / elapsed_s / 1e6
    else:
        samples_us.sort()
        out["p50_us"] = statistics.median(samples_us)
        out["p99_us"] = samples_us[min(len(samples_us) - 1, int(0.99 * len(samples_us)))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions; the median is reported")
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--transports", default="ipc,tcp")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    table = []
    for transport in args.transports.split(","):
        for kind in PAYLOADS:
            big = kind != "pose"
            n_tp = max(20, int((400 if big else 50000) * scale))
            n_lat = max(20, int((200 if big else 5000) * scale))
            results: dict[tuple[str, str], list[dict]] = {}
            for _ in range(args.reps):  # alternate implementations so drift hits both alike
                for impl in IMPLS:
                    results.setdefault((impl, "throughput"), []).append(run_case("throughput", impl, kind, transport, n_tp))
                    results.setdefault((impl, "latency"), []).append(run_case("latency", impl, kind, transport, n_lat))
            row = {"transport": transport, "kind": kind}
            for impl in IMPLS:
                tp = results[(impl, "throughput")]
                lat = results[(impl, "latency")]
                row[impl] = {
                    "msgs_per_s": statistics.median(r["msgs_per_s"] for r in tp),
                    "mb_per_s": statistics.median(r["mb_per_s"] for r in tp),
                    "p50_us": statistics.median(r["p50_us"] for r in lat),
                    "p99_us": statistics.median(r["p99_us"] for r in lat),
                }
                r = row[impl]
                print(f"{transport:4s} {kind:24s} {impl:11s} {r['msgs_per_s']:9.0f} msg/s {r['mb_per_s']:7.0f} MB/s"
                      f"  latency p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us", flush=True)
            table.append(row)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}; median of {args.reps} alternating runs")
    print()
    print("| transport | message | bare pyzmq msg/s | streetloc msg/s | throughput ratio | bare p50 µs | "
          "streetloc p50 µs | p50 ratio | bare p99 µs | streetloc p99 µs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        b, s = row["bare pyzmq"], row["streetloc"]
        mb = f" ({b['mb_per_s']:.0f} / {s['mb_per_s']:.0f} MB/s)" if row["kind"] != "pose" else ""
        print(f"| {row['transport']} | {row['kind']}{mb} | {b['msgs_per_s']:.0f} | {s['msgs_per_s']:.0f} | "
              f"{s['msgs_per_s'] / b['msgs_per_s']:.2f} | {b['p50_us']:.1f} | {s['p50_us']:.1f} | "
              f"{s['p50_us'] / b['p50_us']:.2f} | {b['p99_us']:.1f} | {s['p99_us']:.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=1)


if __name__ == "__main__":
    main()
