"""Bus benchmark: streetloc publish/subscribe against bare pyzmq sending the same bytes, same run.

Publisher and subscriber are separate processes, over ipc or tcp, for a pose (~400 B with its trace),
a 1 MB image and a 1080p BGR image (6.2 MB).

Both implementations are open side by side in the same two processes for the whole case, and the
benchmark alternates short batches between them (bare, streetloc, streetloc, bare, ... in random
order), so that whatever else the machine is doing hits both alike; each round gives one
streetloc/bare ratio and the table reports the median over rounds. On a small shared VM single runs
of one implementation spread up to 4x, so comparing separate runs measures the neighbours, not the
code.

- throughput: a batch of N messages is streamed with at most W in flight (the subscriber returns a
  credit every W/2 messages over a side channel, the same for both implementations), so nothing is
  dropped and the figure is the sustained end-to-end rate, decode included;
- latency: ping-pong, as ZeroMQ's own local_lat/remote_lat do: an echo process receives each message
  and publishes it back; one-way latency is half the round trip, p50 and p99 over all rounds.

The baseline is what a careful user of bare pyzmq writes: PUB/SUB, the identical frames (topic +
payload, plus the image buffer sent zero-copy), np.frombuffer on receive, no msgspec.

    python benchmarks/bus_bench.py [--rounds 30] [--transports ipc,tcp] [--pin] [--json out.json]
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
# messages per batch (throughput, latency) and in flight: each batch takes some 30-100 ms
BATCH = {"pose": (4000, 300, 1000), "image 1 MB": (100, 40, 8), "image 1080p BGR 6.2 MB": (30, 12, 8)}


def _topic_for(kind: str) -> str:
    return "localization/pose" if kind == "pose" else "camera/image"


def make_message(kind: str):
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
    """Four bus namespaces (streetloc and bare, each direction) and the control side channels."""

    def __init__(self, transport: str, root: str) -> None:
        from nodes.bus.topics import BusConfig

        base = random.randint(20000, 39000)
        self.configs = {
            (impl, direction): BusConfig(transport=transport, ipc_dir=os.path.join(root, f"{i}{direction}"),
                                         port_base=base + 20 * (2 * i + (direction == "back")))
            for i, impl in enumerate(IMPLS) for direction in ("fwd", "back")
        }
        self.credit = f"ipc://{root}/credit.sock" if transport == "ipc" else f"tcp://127.0.0.1:{base + 90}"
        self.control = f"ipc://{root}/control.sock" if transport == "ipc" else f"tcp://127.0.0.1:{base + 91}"

    def bare(self, direction: str, kind: str) -> str:
        from nodes.bus.topics import get_topic

        endpoint, _ = self.configs[(IMPLS[0], direction)].publisher_endpoint(get_topic(_topic_for(kind)))
        return endpoint


class _Side:
    """One implementation's sending and receiving halves, with the same interface for both."""

    def __init__(self, impl: str, kind: str, eps: _Endpoints, send_dir: str | None, recv_dir: str | None) -> None:
        self.impl, self.kind = impl, kind
        self.topic = _topic_for(kind)
        self.copy = kind == "pose"  # bare: small messages are copied, images sent zero-copy
        ctx = zmq.Context.instance()
        self.receiver = self.sender = None
        if impl == "streetloc":
            from nodes.bus.pubsub import Publisher, Subscriber

            if send_dir:
                self.sender = Publisher(self.topic, node="bench", config=eps.configs[(impl, send_dir)])
            if recv_dir:
                self.receiver = Subscriber(self.topic, config=eps.configs[(impl, recv_dir)])
        else:
            if send_dir:
                self.sender = ctx.socket(zmq.PUB)
                self.sender.setsockopt(zmq.SNDHWM, 100_000)
                self.sender.setsockopt(zmq.LINGER, 0)
                endpoint = eps.bare(send_dir, kind)
                if endpoint.startswith("ipc://"):
                    os.makedirs(os.path.dirname(endpoint.removeprefix("ipc://")), exist_ok=True)
                self.sender.bind(endpoint)
            if recv_dir:
                self.receiver = ctx.socket(zmq.SUB)
                self.receiver.setsockopt(zmq.RCVHWM, 100_000)
                self.receiver.setsockopt(zmq.SUBSCRIBE, self.topic.encode())
                self.receiver.connect(eps.bare(recv_dir, kind))

    def send(self, msg, frames) -> None:
        if self.impl == "streetloc":
            msg.header.trace = msg.header.trace[:1]
            self.sender.publish(msg)
        else:
            self.sender.send_multipart(frames, copy=self.copy)

    def recv(self) -> int:
        """Receive one message; the bytes of its array as a consumer would touch them."""
        if self.impl == "streetloc":
            msg = self.receiver.recv(timeout_s=20)
            if msg is None:
                raise TimeoutError("streetloc subscriber: nothing for 20 s")
            return msg.data.nbytes if self.kind != "pose" else 0
        if not self.receiver.poll(20000):
            raise TimeoutError("bare subscriber: nothing for 20 s")
        frames = self.receiver.recv_multipart(copy=self.copy)
        return np.frombuffer(frames[2].buffer, np.uint8).nbytes if self.kind != "pose" else 0

    def echo(self) -> None:
        if self.impl == "streetloc":
            msg = self.receiver.recv(timeout_s=20)
            if msg is None:
                raise TimeoutError("streetloc echo: nothing for 20 s")
            self.sender.publish(msg)
        else:
            if not self.receiver.poll(20000):
                raise TimeoutError("bare echo: nothing for 20 s")
            self.sender.send_multipart(self.receiver.recv_multipart(copy=self.copy), copy=self.copy)

    def wait_connected(self) -> None:
        if self.impl == "streetloc" and self.sender is not None:
            self.sender.wait_for_subscribers(1, timeout_s=20)

    def close(self) -> None:
        for sock in (self.sender, self.receiver):
            if sock is None:
                continue
            sock.close() if self.impl == "streetloc" else sock.close(0)


def pin_to_cpu(cpu: int | None) -> None:
    """Pin every thread of this process to one CPU; None: leave it. Threads started later (the ZeroMQ
    I/O thread of a context's first socket) inherit it. On Linux ``sched_setaffinity(0, ...)`` pins the
    calling thread only, so each thread in /proc/self/task is pinned; call it before creating sockets
    all the same, so that no thread runs unpinned for a moment."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    cpus = {cpu % (os.cpu_count() or 1)}
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


# -- the other process: a counting subscriber (throughput) or an echo (latency), both implementations ---

def _peer(mode: str, kind: str, window: int, eps: _Endpoints, cpu: int | None) -> None:
    pin_to_cpu(cpu)
    ctx = zmq.Context.instance()
    credit = ctx.socket(zmq.PUSH)
    credit.connect(eps.credit)
    control = ctx.socket(zmq.PULL)
    control.connect(eps.control)
    sides = {impl: _Side(impl, kind, eps, "back" if mode == "latency" else None, "fwd") for impl in IMPLS}
    time.sleep(0.5)  # PUB/SUB slow joiner: let the main process's subscribers connect to our publishers
    for side in sides.values():
        side.wait_connected()
    credit.send(b"ready")
    while True:
        command = control.recv_pyobj()
        if command is None:
            break
        impl, n = command
        side = sides[impl]
        credit.send(b"armed")
        for i in range(n):
            if mode == "latency":
                side.echo()
            else:
                side.recv()
                if (i + 1) % max(1, window // 2) == 0:
                    credit.send(b"")
        credit.send(b"done")
    time.sleep(0.2)
    for side in sides.values():
        side.close()


def run_case(kind: str, transport: str, rounds: int, pin: bool) -> dict:
    """Alternating batches of both implementations through the same two processes. With ``pin`` the
    peer process pins itself to CPU 1 before it creates its context; the caller pins this one (`main`
    does it first thing)."""
    from nodes.bus.topics import get_topic
    from nodes.bus.wire import Codec

    n_tp, n_lat, window = BATCH[kind]
    ctx = zmq.Context.instance()
    rates: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    latencies_us: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    round_p50_us: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    tp_ratios: list[float] = []
    lat_ratios: list[float] = []
    for mode in ("throughput", "latency"):
        with tempfile.TemporaryDirectory(prefix="streetloc-bench-") as root:
            eps = _Endpoints(transport, root)
            credit = ctx.socket(zmq.PULL)
            credit.bind(eps.credit)
            control = ctx.socket(zmq.PUSH)
            control.bind(eps.control)
            msg = make_message(kind)
            frames = [bytes(f) if i < 2 else f for i, f in enumerate(Codec(get_topic(_topic_for(kind))).encode(msg))]
            sides = {impl: _Side(impl, kind, eps, "fwd", "back" if mode == "latency" else None) for impl in IMPLS}
            proc = mp.get_context("spawn").Process(target=_peer, args=(mode, kind, window, eps, 1 if pin else None))
            proc.start()
            for side in sides.values():
                side.wait_connected()
            if not credit.poll(60000) or credit.recv() != b"ready":
                raise RuntimeError("benchmark peer did not start")
            time.sleep(0.3)
            for round_index in range(rounds + 1):  # round 0 warms both paths up and is not kept
                order = list(IMPLS)
                random.shuffle(order)
                round_rate, round_lat = {}, {}
                for impl in order:
                    side = sides[impl]
                    n = n_tp if mode == "throughput" else n_lat
                    control.send_pyobj((impl, n))
                    assert credit.recv() == b"armed"
                    samples_us: list[float] = []
                    in_flight = 0
                    t0 = time.perf_counter()
                    for _ in range(n):
                        if mode == "throughput":
                            while in_flight >= window:
                                credit.recv()
                                in_flight -= window // 2
                            in_flight += 1
                            side.send(msg, frames)
                        else:
                            t_send = time.perf_counter_ns()
                            side.send(msg, frames)
                            side.recv()
                            samples_us.append((time.perf_counter_ns() - t_send) / 2e3)
                    while credit.recv() != b"done":
                        pass
                    elapsed_s = time.perf_counter() - t0
                    round_rate[impl] = n / elapsed_s
                    round_lat[impl] = statistics.median(samples_us) if samples_us else 0.0
                    if round_index and mode == "latency":
                        latencies_us[impl].extend(samples_us)
                if not round_index:
                    continue
                if mode == "throughput":
                    for impl in IMPLS:
                        rates[impl].append(round_rate[impl])
                    tp_ratios.append(round_rate["streetloc"] / round_rate["bare pyzmq"])
                else:
                    for impl in IMPLS:
                        round_p50_us[impl].append(round_lat[impl])
                    lat_ratios.append(round_lat["streetloc"] / round_lat["bare pyzmq"])
            control.send_pyobj(None)
            proc.join(20)
            for side in sides.values():
                side.close()
            credit.close(0)
            control.close(0)
    nbytes = 0 if PAYLOADS[kind] is None else int(np.prod(PAYLOADS[kind]))
    # ratios are streetloc / bare per round (both measured within the same seconds), then the median
    out: dict = {"transport": transport, "kind": kind, "rounds": rounds,
                 "throughput_ratio": statistics.median(tp_ratios),
                 "throughput_ratio_iqr": _quartiles(tp_ratios),
                 "p50_ratio": statistics.median(lat_ratios),
                 "p50_ratio_iqr": _quartiles(lat_ratios)}
    for impl in IMPLS:
        lat = sorted(latencies_us[impl])
        out[impl] = {"msgs_per_s": statistics.median(rates[impl]),
                     "mb_per_s": statistics.median(rates[impl]) * nbytes / 1e6,
                     "p50_us": statistics.median(lat),
                     "p99_us": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                     "round_msgs_per_s": rates[impl],  # per kept round, the raw figures of the ratios
                     "round_p50_us": round_p50_us[impl]}
    return out


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds per case (ratios: median)")
    parser.add_argument("--quick", action="store_true", help="5 rounds (a smoke run)")
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--transports", default="ipc,tcp")
    parser.add_argument("--kinds", default=",".join(PAYLOADS), help="comma-separated subset of: " + ", ".join(PAYLOADS))
    parser.add_argument("--pin", action="store_true",
                        help="pin the publisher process to CPU 0 and the subscriber to CPU 1 (both implementations)")
    args = parser.parse_args()
    if args.pin:
        pin_to_cpu(0)  # before any ZeroMQ context exists, so its I/O thread starts pinned too
    rounds = 5 if args.quick else args.rounds
    table = []
    for transport in args.transports.split(","):
        for kind in args.kinds.split(","):
            row = run_case(kind, transport, rounds, args.pin)
            for impl in IMPLS:
                r = row[impl]
                print(f"{transport:4s} {kind:24s} {impl:11s} {r['msgs_per_s']:9.0f} msg/s {r['mb_per_s']:7.0f} MB/s"
                      f"  latency p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us", flush=True)
            print(f"{'':30s} ratio streetloc/bare: throughput {row['throughput_ratio']:.2f} "
                  f"(IQR {row['throughput_ratio_iqr'][0]:.2f}-{row['throughput_ratio_iqr'][1]:.2f}), "
                  f"p50 latency {row['p50_ratio']:.2f} "
                  f"(IQR {row['p50_ratio_iqr'][0]:.2f}-{row['p50_ratio_iqr'][1]:.2f})", flush=True)
            table.append(row)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}; {rounds} alternating rounds per case"
          f"{', pinned' if args.pin else ''}")
    print()
    print("| transport | message | bare pyzmq msg/s | streetloc msg/s | throughput ratio (IQR) | bare p50 µs | "
          "streetloc p50 µs | p50 ratio (IQR) | bare p99 µs | streetloc p99 µs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        b, s = row["bare pyzmq"], row["streetloc"]
        mb = f" ({b['mb_per_s']:.0f} / {s['mb_per_s']:.0f} MB/s)" if row["kind"] != "pose" else ""
        tq, lq = row["throughput_ratio_iqr"], row["p50_ratio_iqr"]
        print(f"| {row['transport']} | {row['kind']}{mb} | {b['msgs_per_s']:.0f} | {s['msgs_per_s']:.0f} | "
              f"{row['throughput_ratio']:.2f} ({tq[0]:.2f}–{tq[1]:.2f}) | {b['p50_us']:.1f} | {s['p50_us']:.1f} | "
              f"{row['p50_ratio']:.2f} ({lq[0]:.2f}–{lq[1]:.2f}) | {b['p99_us']:.1f} | {s['p99_us']:.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=1)


if __name__ == "__main__":
    main()
