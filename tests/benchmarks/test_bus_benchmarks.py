"""The bus benchmark scripts run and print their tables (a smoke run; the figures live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_bus_bench_reports_both_implementations_and_their_ratio(tmp_path):
    out_json = tmp_path / "bus.json"
    out = _run("benchmarks/bus_bench.py", "--rounds", "3", "--transports", "ipc", "--kinds", "pose,image 1 MB",
               "--json", str(out_json))
    assert "| ipc | pose |" in out and "| ipc | image 1 MB" in out
    rows = json.loads(out_json.read_text())
    assert [row["kind"] for row in rows] == ["pose", "image 1 MB"]
    for row in rows:
        assert row["throughput_ratio"] > 0 and row["p50_ratio"] > 0
        assert row["bare pyzmq"]["msgs_per_s"] > 0 and row["streetloc"]["p50_us"] > 0


def test_bus_isolate_swaps_each_side(tmp_path):
    out = _run("benchmarks/bus_isolate.py", "--rounds", "3", "--messages", "16")
    for combo in ("| bare | bare | 1.00 |", "| streetloc | bare |", "| bare | streetloc |", "| streetloc | streetloc |"):
        assert combo in out
    assert "codec alone" in out
