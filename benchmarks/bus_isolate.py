"""Where the bus's image-throughput gap comes from: each side swapped between bare pyzmq and streetloc.

Same sockets (a streetloc Publisher's XPUB and Subscriber's SUB) and the identical frames on the wire;
only the code path differs: ``publisher=bare`` sends the pre-encoded frames with ``send_multipart``,
``streetloc`` calls ``Publisher.publish`` (trace hop + encode); ``subscriber=bare`` does
``recv_multipart`` + ``np.frombuffer``, ``streetloc`` calls ``Subscriber.recv`` (decode). 1 MB mono8
images over ipc, at most 8 in flight (credits over a side channel). Also times encode and decode alone
in one process, the Python cost each side adds per message.

    python benchmarks/bus_isolate.py [--reps 6] [--messages 400]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time

import numpy as np
import zmq

WINDOW = 8
COMBOS = (("bare", "bare"), ("streetloc", "bare"), ("bare", "streetloc"), ("streetloc", "streetloc"))


def _image():
    from nodes.bus.messages import Header, Hop, Image

    return Image(Header(stamp_ns=1, trace=[Hop("camera", 1, 2)]), 1_000_000, 1, "mono8",
                 np.full((1, 1_000_000), 7, np.uint8))


def _peer(subscriber: str, env: dict, credit_ep: str, n: int, ready) -> None:
    os.environ.update(env)
    from nodes.bus.pubsub import Subscriber

    credit = zmq.Context.instance().socket(zmq.PUSH)
    credit.connect(credit_ep)
    sub = Subscriber("camera/image")
    ready.set()
    time.sleep(0.5)
    credit.send(b"ready")
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


def run(publisher: str, subscriber: str, n: int) -> float:
    """Messages/s from first send to the subscriber's last receipt."""
    from nodes.bus.pubsub import Publisher
    from nodes.bus.topics import BusConfig

    with tempfile.TemporaryDirectory(prefix="streetloc-iso-") as root:
        config = BusConfig(ipc_dir=root)
        credit = zmq.Context.instance().socket(zmq.PULL)
        credit_ep = f"ipc://{root}/credit.sock"
        credit.bind(credit_ep)
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        proc = ctx.Process(target=_peer, args=(subscriber, config.to_env(), credit_ep, n, ready))
        proc.start()
        ready.wait(60)
        pub = Publisher("camera/image", node="bench", config=config)
        pub.wait_for_subscribers(1, 20)
        msg = _image()
        encoded = pub.codec.encode(msg)
        frames = [bytes(encoded[0]), bytes(encoded[1]), encoded[2]]
        assert credit.recv() == b"ready"
        t0 = time.perf_counter()
        in_flight = 0
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
        elapsed = time.perf_counter() - t0
        proc.join(10)
        pub.close()
        credit.close(0)
    return n / elapsed


def codec_cost_us() -> tuple[float, float]:
    """(encode, decode) microseconds per 1 MB image message, one process."""
    from nodes.bus.topics import get_topic
    from nodes.bus.wire import Codec

    codec = Codec(get_topic("camera/image"))
    msg = _image()
    frames = [bytes(f) if i < 2 else f for i, f in enumerate(codec.encode(msg))]
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
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {c: [] for c in COMBOS}
    for _ in range(args.reps):  # alternate so drift hits every combination alike
        for combo in COMBOS:
            results[combo].append(run(*combo, args.messages))
    base = statistics.median(results[("bare", "bare")])
    print(f"1 MB images over ipc, {args.messages} messages, {args.reps} alternating reps, {os.cpu_count()} cores")
    print()
    print("| publisher | subscriber | median msg/s | vs bare/bare | every rep |")
    print("|---|---|---|---|---|")
    for combo, values in results.items():
        med = statistics.median(values)
        print(f"| {combo[0]} | {combo[1]} | {med:.0f} | {med / base:.2f} | {', '.join(f'{v:.0f}' for v in values)} |")
    enc, dec = codec_cost_us()
    print()
    print(f"codec alone, one process: encode {enc:.1f} us, decode {dec:.1f} us per 1 MB image message")


if __name__ == "__main__":
    main()
