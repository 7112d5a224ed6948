"""Training throughput with 1 and N processes (torchrun; gloo on CPU, NCCL on GPUs): samples/s of
`perception.training.fit` through the real command, ``streetloc train MODEL ... --nproc N``.

    nice -n 10 .venv/bin/python benchmarks/ddp_bench.py                          # CPU: 1x1, 1x2, 2x1 threads
    .venv/bin/python benchmarks/ddp_bench.py --device cuda --runs 1:0 2:0 4:0 --batch-size 64   # GPUs

Each run ``P:T`` is P processes of T torch threads each (0: torch's default), on the same frames with the
same per-process batch (so N processes step through an epoch N times faster if they scale). Samples/s =
training frames of an epoch / epoch seconds (validation off: ``--val-fraction 0``), the median over the
epochs after the first (warm-up). Decoding the drive and starting the processes are not counted; the
total wall time of each run is printed beside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DRIVE = ROOT / "sim_data" / "drives" / "train_small.mcap"


def run(args: argparse.Namespace, nproc: int, threads: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "nodes.cli", "train", args.model, "--data", *args.data, "--val-fraction", "0",
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", args.device,
           "--no-progress", "--out", str(out), "--nproc", str(nproc), *args.model_args]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"ddp_bench: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    match = re.search(r"(\d+) training frames", proc.stderr)
    if match is None:
        sys.exit("ddp_bench: the training log does not say how many training frames there are")
    frames = int(match.group(1))
    epochs = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    epoch_s = [r["epoch_s"] for r in epochs[1:]] or [epochs[0]["epoch_s"]]
    median_s = statistics.median(epoch_s)
    return {"processes": nproc, "threads_per_process": threads, "frames_per_epoch": frames,
            "epoch_s_median": round(median_s, 3), "epoch_s_all": [round(s, 3) for s in epoch_s],
            "samples_per_s": round(frames / median_s, 1), "run_wall_s": round(wall_s, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="posenet")
    parser.add_argument("--data", nargs="+", default=[str(DEFAULT_DRIVE)], metavar="DRIVE")
    parser.add_argument("--runs", nargs="+", default=["1:1", "1:2", "2:1"], metavar="P:T",
                        help="P processes of T threads each (T=0: torch's default)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-args", nargs=argparse.REMAINDER, default=["--no-augment"],
                        help="the model's own options, last (default: --no-augment)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="ddp_bench_") as tmp:
        for i, spec in enumerate(args.runs):
            p, t = (int(x) for x in spec.split(":"))
            results.append(run(args, p, t, Path(tmp) / f"run{i}"))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
              "model": args.model, "data": args.data, "batch_size_per_process": args.batch_size,
              "device": args.device, "load_avg_before": [round(x, 2) for x in load_before],
              "load_avg_after": [round(x, 2) for x in os.getloadavg()], "runs": results}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['machine']}; load average {report['load_avg_before']} -> {report['load_avg_after']}")
        print("processes x threads  frames/epoch  epoch s (median)  samples/s  run wall s")
        for r in results:
            print(f"{r['processes']:>9} x {r['threads_per_process']:<7} {r['frames_per_epoch']:>12} "
                  f"{r['epoch_s_median']:>17.2f} {r['samples_per_s']:>10.1f} {r['run_wall_s']:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
