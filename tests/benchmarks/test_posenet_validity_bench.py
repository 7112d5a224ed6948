"""benchmarks/posenet_validity.py --leave: a stream that leaves the training area is flagged within
seconds, and recognised again within seconds of coming back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sim_data.drive import SimConfig, write_drive

REPO = Path(__file__).resolve().parents[2]


def test_leaving_the_area_is_flagged_and_coming_back_is_recognised(tmp_path):
    own, other = tmp_path / "own.mcap", tmp_path / "city7.mcap"
    write_drive(SimConfig(route="random", route_seed=61, frames=200, fps=5.0), own)  # 200 in, 100 back
    write_drive(SimConfig(city_seed=7, route="random", route_seed=2, frames=60, fps=5.0), other)
    out = subprocess.run([sys.executable, "-m", "benchmarks.posenet_validity", "--leave", str(own), str(other),
                          "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    [r] = json.loads(out.stdout)
    assert r["in_flagged"] <= 0.05
    assert r["flagged_after_s"] is not None and r["flagged_after_s"] <= 8.0
    assert r["out_flagged"] >= 0.5
    assert r["recognised_after_s"] is not None and r["recognised_after_s"] <= 5.0
