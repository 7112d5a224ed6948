"""The fusion node's cost live: added latency (fix published -> pose published) and CPU share.

Starts ``python -m nodes.fusion`` as its own process on a private bus (live: wall clock, no sim time),
publishes PoseNet-like fixes and odometry in real time for ``--seconds`` (a vehicle driving north at
8 m/s, fixes 2 m std), and reads ``localization/pose``:

* latency: for each per-fix pose, ``trace[-1].pub_ns`` (the fusion node published the pose) minus
  ``trace[-2].pub_ns`` (this script published the fix): transport both ways, the stamp-order wait for
  odometry to catch up with the fix's stamp (``max_delay_s``), and the filter update;
* pose rate (the 20 Hz stream + one per fix) and the node's CPU share (``/proc/PID/stat``, user + system
  over wall time, of one core).

    .venv/bin/python benchmarks/fusion_node_bench.py --seconds 30 --fix-hz 5 --odometry-hz 50 --hypotheses 5

``--hypotheses K``: each fix carries K hypotheses as PoseNet publishes them, the right one (weight 0.4)
and K-1 look-alike streets 80-320 m away that move with the vehicle (weight 0.2 each, enough to chain): they chain into
candidate tracks, the filter's most expensive case (the estimate + max_candidates tracks per update).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localization.geodesy import GeoOrigin, LocalFrame  # noqa: E402
from nodes.bus.messages import FixHypothesis, GeoFix, Header, Hop, Odometry  # noqa: E402
from nodes.bus.pubsub import Delivery, Publisher, Subscriber  # noqa: E402
from nodes.bus.topics import BusConfig  # noqa: E402
from perception.drives.topics import ODOMETRY_TOPIC, POSE_TOPIC, POSENET_TOPIC  # noqa: E402


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fix-hz", type=float, default=5.0)
    ap.add_argument("--odometry-hz", type=float, default=50.0)
    ap.add_argument("--hypotheses", type=int, default=1, help="hypotheses per fix (1: a plain fix)")
    args = ap.parse_args()
    frame = LocalFrame(GeoOrigin())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="fusion-bench-") as ipc:
        config = BusConfig(transport="ipc", ipc_dir=ipc)
        env = {**os.environ, **config.to_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.Popen([sys.executable, "-m", "nodes.fusion"], env=env)
        fixes = Publisher(POSENET_TOPIC, node="bench", config=config)
        odo = Publisher(ODOMETRY_TOPIC, node="bench", config=config)
        poses = Subscriber(POSE_TOPIC, delivery=Delivery.EVERY, config=config)
        time.sleep(3.0)  # the node imports and connects
        cpu0, t0 = cpu_s(proc.pid), time.monotonic()
        next_fix = next_odo = t0
        latencies_ms, n_poses, fix_stamps = [], 0, set()
        while time.monotonic() - t0 < args.seconds:
            now = time.monotonic()
            if now >= next_odo:
                odo.publish(Odometry(Header(time.time_ns()), 8.0 + rng.normal(0, 0.05), rng.normal(0, 0.005)))
                next_odo += 1.0 / args.odometry_hz
            if now >= next_fix:
                stamp = time.time_ns()
                east, north = rng.normal(0, 2.0), 8.0 * (now - t0) + rng.normal(0, 2.0)
                e, n, _ = frame.to_geodetic(east, north)
                hyps = []
                for k in range(args.hypotheses if args.hypotheses > 1 else 0):
                    la, lo, _ = frame.to_geodetic(east + 80.0 * k, north)
                    hyps.append(FixHypothesis(float(la), float(lo), 0.4 if k == 0 else 0.2,
                                              (4.0, 0.0, 0.0, 4.0), 0.0, 5.0))
                fixes.publish(GeoFix(Header(stamp, trace=[Hop("camera", stamp, stamp)]), float(e), float(n),
                                     heading_deg=0.0, cov_enu_m2=(4.0, 0.0, 0.0, 4.0), heading_std_deg=5.0,
                                     hypotheses=hyps))
                fix_stamps.add(stamp)
                next_fix += 1.0 / args.fix_hz
            while (msg := poses.recv(0)) is not None:
                n_poses += 1
                if msg.header.stamp_ns in fix_stamps and len(msg.header.trace) >= 3:
                    latencies_ms.append((msg.header.trace[-1].pub_ns - msg.header.trace[-2].pub_ns) / 1e6)
            time.sleep(max(0.0, min(next_odo, next_fix) - time.monotonic()))
        wall = time.monotonic() - t0
        cpu = cpu_s(proc.pid) - cpu0
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    lat = np.array(latencies_ms)
    print(f"{args.seconds:.0f} s live, fixes {args.fix_hz:g} Hz ({args.hypotheses} hypotheses), odometry "
          f"{args.odometry_hz:g} Hz: "
          f"{n_poses / wall:.1f} poses/s, fusion node CPU {cpu / wall:.1%} of one core")
    if len(lat):
        print(f"fix published -> pose published: median {np.median(lat):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
              f"max {lat.max():.1f} ms over {len(lat)} fixes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
