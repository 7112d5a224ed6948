"""The PoseNet start benchmark runs and prints its stage table (slow: a fresh interpreter loads the model).
That PoseNet's own backbone is torchvision's is tests/perception/test_posenet_backbone.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_prints_its_stage_table():
    out = subprocess.run([sys.executable, "-m", "benchmarks.posenet_load_bench", "--repeats", "1", "--no-end-to-end"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| checkpoint read |" in out.stdout and "**total in-process**" in out.stdout
    assert "torchvision" not in out.stdout.split("| stage |")[1]  # this tree's PoseNet does not import it
