"""benchmarks/posenet_validity.py --leave: a stream that leaves the training area is flagged within
seconds, and recognised again within seconds of coming back."""

from __future__ import annotations

from benchmarks.posenet_validity import leave_and_return
from perception.models.posenet.predictor import PosePredictor
from sim_data.drive import SimConfig, write_drive


def test_leaving_the_area_is_flagged_and_coming_back_is_recognised(tmp_path):
    own, other = tmp_path / "own.mcap", tmp_path / "city7.mcap"
    write_drive(SimConfig(route="random", route_seed=61, frames=40, fps=5.0), own)
    write_drive(SimConfig(city_seed=7, route="random", route_seed=2, frames=60, fps=5.0), other)
    predictor = PosePredictor(None, device="cpu")
    r = leave_and_return(predictor, str(own), str(other), None, in_frames=40, out_frames=60, back_frames=40)
    assert r["in_flagged"] <= 0.05
    assert r["flagged_after_s"] is not None and r["flagged_after_s"] <= 8.0
    assert r["out_flagged"] >= 0.5
    assert r["recognised_after_s"] is not None and r["recognised_after_s"] <= 5.0
