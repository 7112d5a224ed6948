"""The bus benchmark scripts run and print their tables (a smoke run; the figures live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_bus_bench_reports_both_implementations_and_their_ratio(tmp_path):
    out_json = tmp_path / "bus.json"
    out = _run("benchmarks/bus_bench.py", "--rounds", "3", "--transports", "ipc", "--kinds", "pose,image 1 MB",
               "--pin", "--json", str(out_json))
    assert "| ipc | pose |" in out and "| ipc | image 1 MB" in out
    rows = json.loads(out_json.read_text())
    assert [row["kind"] for row in rows] == ["pose", "image 1 MB"]
    for row in rows:
        bare, ours = row["bare pyzmq"], row["streetloc"]
        assert len(bare["round_msgs_per_s"]) == len(ours["round_p50_us"]) == 3  # the kept rounds
        # the ratios are streetloc / bare, per round, then the median: from the raw figures reported
        assert row["throughput_ratio"] == pytest.approx(statistics.median(
            s / b for s, b in zip(ours["round_msgs_per_s"], bare["round_msgs_per_s"], strict=True)), rel=1e-12)
        assert row["p50_ratio"] == pytest.approx(statistics.median(
            s / b for s, b in zip(ours["round_p50_us"], bare["round_p50_us"], strict=True)), rel=1e-12)
        assert bare["msgs_per_s"] == pytest.approx(statistics.median(bare["round_msgs_per_s"]))
        assert min(bare["round_msgs_per_s"] + ours["round_msgs_per_s"]) > 0 and ours["p50_us"] > 0


def test_pin_to_cpu_pins_threads_that_already_exist():
    # ZeroMQ's I/O thread starts with a context's first socket; pinning afterwards must reach it too
    probe = """
import os, sys, zmq
sys.path.insert(0, "benchmarks")
from bus_bench import pin_to_cpu
sock = zmq.Context.instance().socket(zmq.PUB)
tids = os.listdir("/proc/self/task")
assert len(tids) >= 2, tids
pin_to_cpu(0)
print(sorted({frozenset(os.sched_getaffinity(int(t))) for t in tids}, key=sorted))
"""
    out = _run("-c", probe)
    assert out.strip() == "[frozenset({0})]"


def test_bus_isolate_swaps_each_side(tmp_path):
    out_json = tmp_path / "isolate.json"
    out = _run("benchmarks/bus_isolate.py", "--rounds", "3", "--messages", "16", "--json", str(out_json))
    for combo in ("| bare | bare | 1.00 |", "| streetloc | bare |", "| bare | streetloc |", "| streetloc | streetloc |"):
        assert combo in out
    assert "codec alone" in out
    rows = {(r["publisher"], r["subscriber"]): r for r in json.loads(out_json.read_text())}
    bare = rows[("bare", "bare")]["round_msgs_per_s"]
    for combo, row in rows.items():
        # each combination's rate over bare/bare's in the same round, then the median
        assert len(row["round_msgs_per_s"]) == 3 and min(row["round_msgs_per_s"]) > 0
        assert row["ratio_median"] == pytest.approx(statistics.median(
            r / b for r, b in zip(row["round_msgs_per_s"], bare, strict=True)), rel=1e-12), combo
        assert f"| {combo[0]} | {combo[1]} | {row['ratio_median']:.2f} |" in out
