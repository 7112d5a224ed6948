"""Where a PoseNet node's start goes (issue 16 item 5: model load after a respawn).

    python -m benchmarks.posenet_load_bench [--repeats 3] [--model NAME_OR_FILE] [--no-end-to-end]
                                            [--repo TREE]

``--repo TREE``: measure another checkout of streetloc with this tree's script (the before/after of a
change), e.g. the tree before PoseNet defined its backbones itself (which imported torchvision):
``git archive 818926e | tar -x -C /tmp/before && python -m benchmarks.posenet_load_bench --repo /tmp/before``.

1. Stages, each run in a fresh interpreter (as a respawned node is: files in the page cache, nothing
   imported): the imports, the checkpoint read, the network build, the validity bank, the first and
   second inference. Wall and CPU seconds (user + sys of the process): on a shared machine wall time
   grows with the load, CPU time is what the stage costs on an idle core.
2. End to end: ``python -m nodes.posenet --device cpu`` spawned on a private bus while frames of the demo
   drive arrive every 50 ms; seconds from the spawn to the first ``posenet/fix`` (what a subscriber waits
   after the launcher respawns the node, minus the launcher's respawn delay).

Medians over ``--repeats`` runs; prints the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter; prints one JSON dict stage -> [wall_s, cpu_s].
STAGES = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out, last = {}, [time.perf_counter(), cpu()]
def mark(name):
    t, c = time.perf_counter(), cpu()
    out[name] = [t - last[0], c - last[1]]
    last[:] = [t, c]
import numpy, msgspec, zmq, nodes.posenet
mark("python libs + nodes.posenet")
import torch
torch.set_num_threads(1)
mark("import torch")
if sys.argv[2] == "torchvision":  # the tree's PoseNet imports it: shown on its own lines
    import torch._dynamo
    mark("import torch._dynamo (pulled in by torchvision.ops)")
    import torchvision
    mark("import torchvision (rest)")
import perception.models
from perception.models.posenet.validity import FrameValidity
mark("import perception.models + posenet (registry, predictor, validity)")
from perception.models import PosePredictor, resolve_checkpoint
ckpt = resolve_checkpoint(sys.argv[1] or None, model="posenet")
mark("checkpoint read")
pred = PosePredictor(ckpt, device="cpu", max_batch=16, hypotheses=5)
mark("network build + weights")
validity = FrameValidity(pred)
mark("validity bank")
import numpy as np
frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
pred.predict_bgr([frame])
mark("first inference")
pred.predict_bgr([frame])
mark("second inference")
print(json.dumps(out))
"""


def imports_torchvision(repo: Path) -> bool:
    """Whether the tree's PoseNet network module imports torchvision (the tree before issue 16 item 5)."""
    return "import torchvision" in (repo / "perception/models/posenet/network.py").read_text()


def stages(repo: Path, model: str) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    flag = "torchvision" if imports_torchvision(repo) else "-"
    out = subprocess.run([sys.executable, "-c", STAGES, model, flag], capture_output=True, text=True, env=env,
                         cwd=repo, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def interpreter_s() -> float:
    """Wall seconds of ``python -c pass``: the part of a node's start before any of the stages."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_fix_s(repo: Path, model: str, timeout_s: float = 120.0) -> tuple[float, float]:
    """(wall s, the node's CPU s) from spawning the node to its first fix, frames arriving every 50 ms."""
    from nodes.bus import BusConfig
    from nodes.bus.pubsub import Publisher, Subscriber
    from perception.drives import DriveReader
    from perception.drives.topics import CAMERA_TOPIC, POSENET_TOPIC
    from sim_data import DEFAULT_DEMO_DRIVE

    with DriveReader(DEFAULT_DEMO_DRIVE) as drive:
        frames = [img for _, img in zip(range(20), drive.read(CAMERA_TOPIC), strict=False)]
    with tempfile.TemporaryDirectory(prefix="streetloc-bench-") as ipc_dir:
        config = BusConfig(transport="ipc", ipc_dir=ipc_dir)
        env = {**os.environ, **config.to_env(), "PYTHONPATH": str(repo)}
        args = [sys.executable, "-m", "nodes.posenet", "--device", "cpu"] + (["--model", model] if model else [])
        with Publisher(CAMERA_TOPIC, config=config) as pub, Subscriber(POSENET_TOPIC, config=config) as sub:
            start = time.perf_counter()
            node = subprocess.Popen(args, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                i = 0
                while time.perf_counter() - start < timeout_s:
                    img = frames[i % len(frames)]
                    img.header.stamp_ns = time.time_ns()  # a live camera's stamps
                    pub.publish(img)
                    i += 1
                    if sub.recv(timeout_s=0.05) is not None:
                        return time.perf_counter() - start, process_cpu_s(node.pid)
                    if node.poll() is not None:
                        raise RuntimeError(f"posenet exited {node.returncode}: {node.stderr.read()[-2000:]}")
                raise RuntimeError(f"no fix within {timeout_s} s")
            finally:
                node.terminate()
                node.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="", help="checkpoint file or weights name (default: the default model)")
    ap.add_argument("--no-end-to-end", action="store_true", help="stages only")
    ap.add_argument("--no-stages", action="store_true", help="end to end only")
    ap.add_argument("--repo", type=Path, default=REPO,
                    help="the streetloc tree to measure (default: this one)")
    a = ap.parse_args(argv)
    repo = a.repo.resolve()
    runs = [] if a.no_stages else [stages(repo, a.model) for _ in range(a.repeats)]
    print(f"{repo}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; medians of {a.repeats} "
          "fresh processes")
    print(f"python interpreter start (`python -c pass`, wall): {statistics.median(interpreter_s() for _ in range(3)):.2f} s")
    print("| stage | wall s | CPU s |\n|---|---|---|")
    for name in runs[0] if runs else ():
        wall = statistics.median(r[name][0] for r in runs)
        cpu = statistics.median(r[name][1] for r in runs)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    totals = [(sum(v[0] for v in r.values()), sum(v[1] for v in r.values())) for r in runs]
    if totals:
        print(f"| **total in-process** | {statistics.median(t[0] for t in totals):.2f} | "
              f"{statistics.median(t[1] for t in totals):.2f} |")
    if not a.no_end_to_end:
        e2e = [first_fix_s(repo, a.model) for _ in range(a.repeats)]
        print(f"spawn -> first posenet/fix: median {statistics.median(w for w, _ in e2e):.2f} s wall "
              f"(runs: {', '.join(f'{w:.2f}' for w, _ in e2e)}), the node's CPU median "
              f"{statistics.median(c for _, c in e2e):.2f} s (runs: {', '.join(f'{c:.2f}' for _, c in e2e)}); "
              f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
