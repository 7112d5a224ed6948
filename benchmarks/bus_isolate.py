"""Which side of the bus costs image throughput: each side swapped between bare pyzmq and streetloc.

Same sockets (a streetloc Publisher's XPUB and Subscriber's SUB) and the identical frames on the wire;
only the code path differs: ``publisher=bare`` sends the pre-encoded frames with ``send_multipart``,
``streetloc`` calls ``Publisher.publish`` (trace hop + encode); ``subscriber=bare`` polls the socket,
calls ``recv_multipart`` and ``np.frombuffer``, ``streetloc`` calls ``Subscriber.recv`` (decode). 1 MB
mono8 images over ipc, at most 8 in flight (credits over a side channel).

The two processes live for the whole run and the four combinations alternate in short batches, in a new
random order each round, so that the machine's other load hits them alike; each round gives every
combination's rate relative to bare/bare in the same round, and the median over rounds is reported.
Also times encode and decode alone in one process, the Python cost each side adds per message.

    python benchmarks/bus_isolate.py [--rounds 60] [--messages 100] [--pin]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import time

import numpy as np
import zmq
from bus_bench import make_message, pin_to_cpu  # the same folder: run as a script

WINDOW = 8
KIND = "image 1 MB"  # a bus_bench payload: mono8 [1, 1e6]
COMBOS = (("bare", "bare"), ("streetloc", "bare"), ("bare", "streetloc"), ("streetloc", "streetloc"))


def _peer(env: dict, credit_ep: str, control_ep: str, cpu: int | None) -> None:
    """Receives batches as the control channel says (which code path, how many), returning credits."""
    pin_to_cpu(cpu)
    os.environ.update(env)
    from nodes.bus.pubsub import Subscriber

    ctx = zmq.Context.instance()
    credit = ctx.socket(zmq.PUSH)
    credit.connect(credit_ep)
    control = ctx.socket(zmq.PULL)
    control.connect(control_ep)
    sub = Subscriber("camera/image")
    time.sleep(0.5)
    credit.send(b"ready")
    while (command := control.recv_pyobj()) is not None:
        subscriber, n = command
        credit.send(b"armed")
        for i in range(n):
            if subscriber == "streetloc":
                sub.recv(timeout_s=20).data.nbytes  # noqa: B018 - touch the array as a consumer would
            else:
                sub.socket.poll(20000)
                frames = sub.socket.recv_multipart(copy=False)
                np.frombuffer(frames[2].buffer, np.uint8).nbytes  # noqa: B018
            if (i + 1) % (WINDOW // 2) == 0:
                credit.send(b"")
        credit.send(b"done")
    sub.close()


def run(rounds: int, n: int, pin: bool) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """Per combination, its rate / the bare-bare rate of the same round, and its rate in msg/s, for every
    kept round. With ``pin`` the
    peer pins itself to CPU 1 before creating its context; the caller pins this process (`main` does,
    first thing)."""
    from nodes.bus.pubsub import Publisher
    from nodes.bus.topics import BusConfig

    ratios: dict[tuple[str, str], list[float]] = {c: [] for c in COMBOS}
    round_rates: dict[tuple[str, str], list[float]] = {c: [] for c in COMBOS}
    with tempfile.TemporaryDirectory(prefix="streetloc-iso-") as root:
        config = BusConfig(ipc_dir=root)
        ctx = zmq.Context.instance()
        credit = ctx.socket(zmq.PULL)
        credit_ep = f"ipc://{root}/credit.sock"
        credit.bind(credit_ep)
        control = ctx.socket(zmq.PUSH)
        control_ep = f"ipc://{root}/control.sock"
        control.bind(control_ep)
        proc = mp.get_context("spawn").Process(target=_peer, args=(config.to_env(), credit_ep, control_ep,
                                                                     1 if pin else None))
        proc.start()
        pub = Publisher("camera/image", node="bench", config=config)
        pub.wait_for_subscribers(1, 20)
        msg = make_message(KIND)
        encoded = pub.codec.encode(msg)
        frames = [bytes(encoded[0]), bytes(encoded[1]), memoryview(encoded[2]).cast("B")]
        if not credit.poll(60000) or credit.recv() != b"ready":
            raise RuntimeError("benchmark peer did not start")
        for round_index in range(rounds + 1):  # round 0 warms up and is not kept
            order = list(COMBOS)
            random.shuffle(order)
            rates = {}
            for publisher, subscriber in order:
                control.send_pyobj((subscriber, n))
                assert credit.recv() == b"armed"
                in_flight = 0
                t0 = time.perf_counter()
                for _ in range(n):
                    while in_flight >= WINDOW:
                        credit.recv()
                        in_flight -= WINDOW // 2
                    in_flight += 1
                    if publisher == "streetloc":
                        msg.header.trace = msg.header.trace[:1]
                        pub.publish(msg)
                    else:
                        pub.socket.send_multipart(frames, copy=False)
                while credit.recv() != b"done":
                    pass
                rates[(publisher, subscriber)] = n / (time.perf_counter() - t0)
            if round_index:
                for combo in COMBOS:
                    round_rates[combo].append(rates[combo])
                    ratios[combo].append(rates[combo] / rates[("bare", "bare")])
        control.send_pyobj(None)
        proc.join(10)
        pub.close()
        credit.close(0)
        control.close(0)
    return ratios, round_rates


def codec_cost_us() -> tuple[float, float]:
    """(encode, decode) microseconds per 1 MB image message, one process, warm caches."""
    from nodes.bus.topics import get_topic
    from nodes.bus.wire import Codec

    codec = Codec(get_topic("camera/image"))
    msg = make_message(KIND)
    encoded = codec.encode(msg)
    frames = [bytes(encoded[0]), bytes(encoded[1]), zmq.Frame(bytes(memoryview(encoded[2])))]
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        codec.encode(msg)
    enc = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        codec.decode(frames)
    return enc, (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--messages", type=int, default=100, help="messages per batch")
    parser.add_argument("--pin", action="store_true", help="publisher on CPU 0, subscriber on CPU 1")
    parser.add_argument("--json", help="write the ratios and the per-round rates they come from to this file")
    args = parser.parse_args()
    if args.pin:
        pin_to_cpu(0)  # before any ZeroMQ context exists, so its I/O thread starts pinned too
    ratios, round_rates = run(args.rounds, args.messages, args.pin)
    print(f"1 MB images over ipc, batches of {args.messages}, {args.rounds} alternating rounds, "
          f"{os.cpu_count()} cores{', pinned' if args.pin else ''}")
    print()
    print("| publisher | subscriber | rate vs bare/bare, median | interquartile range |")
    print("|---|---|---|---|")
    for combo, values in ratios.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        print(f"| {combo[0]} | {combo[1]} | {statistics.median(values):.2f} | {q1:.2f}–{q3:.2f} |")
    if args.json:
        rows = [{"publisher": pub, "subscriber": sub, "ratio_median": statistics.median(ratios[(pub, sub)]),
                 "round_msgs_per_s": round_rates[(pub, sub)]} for pub, sub in COMBOS]
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    enc, dec = codec_cost_us()
    print()
    print(f"codec alone, one process, warm: encode {enc:.1f} us, decode {dec:.1f} us per 1 MB image message")


if __name__ == "__main__":
    main()
