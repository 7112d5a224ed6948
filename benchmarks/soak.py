"""Soak (issue 16 item 8): the full replay graph replaying a small drive in a loop for minutes; memory and
file descriptors of every process over time, fixes and poses per second, gaps.

    nice -n 10 python -m benchmarks.soak [--minutes 10] [--drive sim_data/drives/test_small.mcap]
                                         [--sample-s 10] [--real-time] [--csv samples.csv]

The graph is launch/replay.toml with every node on: PoseNet, the detector, the PSPNet segmenter, fusion,
NMEA (on a free port: nmea_port=0) and the monitor, on a private bus, CPU only, each node on one torch
thread (``OMP_NUM_THREADS=1``), fed by ``streetloc replay DRIVE --loop``:

- default **lock-step**: each frame waits for PoseNet's fix, the detections and the mask
  (``--lockstep-topics posenet/fix,perception/detections,perception/segmentation``), so every CNN sees
  every frame and the graph runs as fast as its slowest node lets it: the most work per minute;
- ``--real-time``: the drive's own rate (30 fps), nodes take the latest frame (``delivery`` = latest would
  be the robot's setting; replay.toml's ``every`` lets queues fill up to the bus's high-water marks).

Every ``--sample-s``: VmRSS and open fds (``/proc/PID/status``, ``/proc/PID/fd``) of every node (from the
launcher's state file: a respawned node is a new row), of the launcher and of the replay; the fixes and
poses received by this process's own subscribers since the last sample. At the end: one table per
process (first/last/max RSS, the least-squares slope of RSS over time after ``--warmup-s``, in MiB/min;
fds first/last/max), fixes and poses per second (mean, min over the sample windows), the longest interval
between two poses and between two fixes (wall time), restarts; and the fuzz suite's input counts
(tests/nodes/bus/test_fuzz.py: the FAST sizes of the default run and the SLOW ones of ``-m slow``).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE_MIB = 1 / 1024  # VmRSS is in KiB


def proc_sample(pid: int) -> tuple[float, int] | None:
    """(RSS MiB, open fds) of a process, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return (int(m.group(1)) * PAGE_MIB if m else 0.0), fds


def slope_per_min(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times_s``, per minute (0 with fewer than 3 points)."""
    if len(times_s) < 3:
        return 0.0
    mt, mv = statistics.fmean(times_s), statistics.fmean(values)
    den = sum((t - mt) ** 2 for t in times_s)
    return 60.0 * sum((t - mt) * (v - mv) for t, v in zip(times_s, values, strict=True)) / den if den else 0.0


def fuzz_counts() -> str:
    """The fuzz suite's inputs per decoder: its FAST (default run) and SLOW (``-m slow``) sizes."""
    text = (REPO / "tests/nodes/bus/test_fuzz.py").read_text()
    out = []
    for name in ("FAST", "SLOW"):
        m = re.search(rf"^{name} = (\{{.*?\}})", text, re.M)
        if m:
            sizes = eval(m.group(1), {})  # a literal dict in our own test file
            out.append(f"{name}: {sum(sizes.values())} inputs per decoder ({m.group(1)})")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length after the graph is ready")
    ap.add_argument("--drive", default=str(REPO / "sim_data/drives/test_small.mcap"))
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=60.0, help="samples before this are left out of the slope")
    ap.add_argument("--real-time", action="store_true", help="the drive's rate instead of lock-step")
    ap.add_argument("--loop", action=argparse.BooleanOptionalAction, default=True,
                    help="replay --loop (default); --no-loop with a drive long enough for --minutes")
    ap.add_argument("--csv", type=Path, help="write every sample here")
    ap.add_argument("--no-detector", action="store_true")
    ap.add_argument("--no-segmenter", action="store_true")
    a = ap.parse_args(argv)

    from nodes.bus import BusConfig
    from nodes.bus.pubsub import Delivery, Subscriber
    from nodes.launcher.state import read_states
    from perception.drives.topics import DETECTIONS_TOPIC, POSE_TOPIC, POSENET_TOPIC, SEGMENTATION_TOPIC

    tmp = Path(tempfile.mkdtemp(prefix="streetloc-soak-"))
    ipc_dir = tmp / "ipc"
    launch_file = REPO / "launch/replay.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETLOC_")}
    env.update({"STREETLOC_IPC_DIR": str(ipc_dir), "STREETLOC_LOG_DIR": str(tmp / "logs"),
                "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    on = {"detector": not a.no_detector, "segmenter": not a.no_segmenter}
    cmd = [sys.executable, "-m", "nodes.cli", "replay", a.drive, *(["--loop"] if a.loop else []),
           "--launch", str(launch_file),
           "--arg", "device=cpu", "--arg", "nmea=true", "--arg", "nmea_port=0", "--arg", "monitor=true",
           *(x for k, v in on.items() for x in ("--arg", f"{k}={'true' if v else 'false'}"))]
    lockstep = [POSENET_TOPIC] + ([DETECTIONS_TOPIC] if on["detector"] else []) + (
        [SEGMENTATION_TOPIC] if on["segmenter"] else [])
    if not a.real_time:
        cmd += ["--lockstep", "--lockstep-topics", ",".join(lockstep)]
    mode = "real time (rate 1)" if a.real_time else f"lock-step on {', '.join(lockstep)}"
    console = open(tmp / "replay-console.txt", "wb")
    t_start = time.monotonic()
    replay = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    print(f"soak: {a.drive}{' --loop' if a.loop else ''}, {mode}; logs in {tmp}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    # wait for the launcher's state and the replay's "ready" line
    state = None
    while time.monotonic() - t_start < 300:
        if replay.poll() is not None:
            raise SystemExit(f"replay exited {replay.returncode}: {(tmp / 'replay-console.txt').read_text()[-3000:]}")
        states = read_states(str(ipc_dir))
        if states and "ready after" in (tmp / "replay-console.txt").read_text(errors="replace"):
            state = states[0]
            break
        time.sleep(0.5)
    if state is None:
        replay.kill()
        raise SystemExit("the graph was not ready within 300 s")
    t_ready = time.monotonic()
    print(f"graph ready after {t_ready - t_start:.1f} s; soaking {a.minutes:g} min", flush=True)
    config = BusConfig.from_env(state.bus)
    subs = {t: Subscriber(t, delivery=Delivery.EVERY, config=config) for t in (POSENET_TOPIC, POSE_TOPIC)}
    last_msg = {t: None for t in subs}
    max_gap = {t: 0.0 for t in subs}
    window = {t: 0 for t in subs}
    total = {t: 0 for t in subs}
    rates: dict[str, list[float]] = {t: [] for t in subs}
    series: dict[str, list[tuple[float, float, int]]] = {}  # process label -> (t s, rss MiB, fds)
    rows = []
    next_sample = time.monotonic()
    last_sample = time.monotonic()
    end = t_ready + a.minutes * 60
    try:
        while time.monotonic() < end:
            if replay.poll() is not None:
                print(f"replay exited ({replay.returncode}): the drive ended", flush=True)
                break
            for t, sub in subs.items():
                while True:
                    try:
                        msg = sub.recv(timeout_s=0.0)
                    except Exception:  # a rejected message is the graph's to count, not ours
                        continue
                    if msg is None:
                        break
                    now = time.monotonic()
                    if last_msg[t] is not None:
                        max_gap[t] = max(max_gap[t], now - last_msg[t])
                    last_msg[t] = now
                    window[t] += 1
                    total[t] += 1
            now = time.monotonic()
            if now >= next_sample:
                next_sample += a.sample_s
                dt = now - last_sample
                last_sample = now
                if now - t_ready > 1.0:
                    for t in subs:
                        rates[t].append(window[t] / dt)
                for t in subs:
                    window[t] = 0
                states = read_states(str(ipc_dir))
                procs = {"replay": replay.pid}
                if states:
                    procs["launcher"] = states[0].launcher_pid
                    for n in states[0].nodes:
                        if n.pid:
                            procs[f"{n.name} (pid {n.pid})" if n.restarts else n.name] = n.pid
                for label, pid in procs.items():
                    s = proc_sample(pid)
                    if s is None:
                        continue
                    series.setdefault(label, []).append((now - t_ready, s[0], s[1]))
                    rows.append({"t_s": round(now - t_ready, 1), "process": label, "pid": pid,
                                 "rss_mib": round(s[0], 2), "fds": s[1]})
                restarts = {n.name: n.restarts for n in states[0].nodes} if states else {}
                print(f"  t={now - t_ready:6.0f} s  fixes/s {rates[POSENET_TOPIC][-1] if rates[POSENET_TOPIC] else 0:5.2f}"
                      f"  poses/s {rates[POSE_TOPIC][-1] if rates[POSE_TOPIC] else 0:5.2f}  "
                      + "  ".join(f"{k} {v[-1][1]:.0f}M/{v[-1][2]}fd" for k, v in series.items()
                                  if v[-1][0] >= now - t_ready - 0.5)
                      + (f"  restarts {restarts}" if any(restarts.values()) else ""), flush=True)
            time.sleep(0.02)
    finally:
        for sub in subs.values():
            sub.close()
        t_end = time.monotonic()
        replay.send_signal(signal.SIGINT)
        try:
            replay.wait(timeout=30)
        except subprocess.TimeoutExpired:
            replay.kill()
        console.close()
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, ["t_s", "process", "pid", "rss_mib", "fds"])
            w.writeheader()
            w.writerows(rows)
    minutes = (t_end - t_ready) / 60
    print(f"\nsoak of {minutes:.1f} min ({mode}), {a.sample_s:g} s samples; slope over samples after "
          f"{a.warmup_s:g} s; load average at the end {os.getloadavg()[0]:.1f}")
    print("| process | RSS first MiB | RSS last MiB | RSS max MiB | RSS slope MiB/min | fds first | fds last | fds max |")
    print("|---|---|---|---|---|---|---|---|")
    for label, pts in series.items():
        late = [(t, r) for t, r, _ in pts if t >= a.warmup_s]
        slope = slope_per_min([t for t, _ in late], [r for _, r in late])
        rss = [r for _, r, _ in pts]
        fds = [f for _, _, f in pts]
        print(f"| {label} | {rss[0]:.1f} | {rss[-1]:.1f} | {max(rss):.1f} | {slope:+.3f} | {fds[0]} | {fds[-1]} | {max(fds)} |")
    print("\n| stream | messages | per s (mean) | per s (min window) | longest gap s |\n|---|---|---|---|---|")
    for t in subs:
        r = rates[t]
        print(f"| {t} | {total[t]} | {statistics.fmean(r) if r else 0:.2f} | {min(r) if r else 0:.2f} | "
              f"{max_gap[t]:.2f} |")
    final = read_states(str(ipc_dir))
    console_text = (tmp / "replay-console.txt").read_text(errors="replace")
    crashes = [line for line in console_text.splitlines() if "killed by" in line or "exited with code" in line]
    print(f"\nnode exits during the soak (launcher lines): {len(crashes)}" + "".join(f"\n  {c}" for c in crashes[:10]))
    if final:
        print(f"restarts: {', '.join(f'{n.name} {n.restarts}' for n in final[0].nodes)}")
    print(f"fuzz suite (tests/nodes/bus/test_fuzz.py) sizes: {fuzz_counts()}")
    print(f"replay console and node logs: {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
