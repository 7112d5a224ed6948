"""Survey drives: the views of every turn, written as a drive a place index can read."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.cli import main
from perception.drives import DriveReader
from sim_data.drive import SimConfig
from sim_data.survey import turn_poses


def _off(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def test_turn_poses_lie_on_turns_at_every_intersection(small_city):
    poses = turn_poses(small_city, 1.5, spacing_m=1.0, straight_deg=10.0)
    heading = np.array([p.heading_deg for p in poses])
    en = np.array([[p.east_m, p.north_m] for p in poses])
    # mid-turn: never along a street (the grid's streets run at 0/90/180/270 degrees)
    assert np.all(np.min([_off(heading, h) for h in (0.0, 90.0, 180.0, 270.0)], axis=0) > 10.0 - 1e-6)
    # near an intersection, and every intersection has some
    nodes = np.array([small_city.node_en(n) for n in
                      [(i, j) for i in range(small_city.n_nodes[0]) for j in range(small_city.n_nodes[1])]])
    nearest = np.linalg.norm(en[:, None, :] - nodes[None], axis=2)
    assert nearest.min(1).max() < 25.0
    assert set(nearest.argmin(1)) == set(range(len(nodes)))
    # both ways round: a left and a right turn into the same street give opposite-ish headings
    assert len({round(h / 45.0) % 8 for h in heading}) >= 4
    with pytest.raises(ValueError, match="spacing_m"):
        turn_poses(small_city, 1.5, spacing_m=0.0)


def test_sim_survey_writes_views_with_their_exact_pose(tmp_path, capsys):
    path = tmp_path / "survey.mcap"
    assert main(["sim", "--survey", "turns", "--blocks", "2x1", "--size", "64x48", "--survey-spacing", "3",
                 "--time-of-day", "22", "-o", str(path)]) == 0
    assert "turns survey of" in capsys.readouterr().out
    config = SimConfig(blocks=(2, 1), width_px=64, height_px=48)
    from sim_data.city import generate_city

    expected = turn_poses(generate_city(0, 2, 1), config.camera_height_m, spacing_m=3.0)
    with DriveReader(path) as reader:
        images = list(reader.images())
        track = reader.track()
        assert reader.metadata.extra["survey"] == "turns" and reader.metadata.extra["views"] == len(expected)
        assert reader.metadata.extra["time_of_day_h"] == 22.0
    assert len(images) == len(expected) == len(track.lat_deg)
    assert np.allclose(track.heading_deg, [p.heading_deg for p in expected])


def test_sim_survey_needs_an_output(capsys):
    assert main(["sim", "--survey", "turns", "--blocks", "1x1", "--preview", "x.png"]) == 2
    assert "--survey" in capsys.readouterr().err


def test_a_place_index_of_the_survey_localizes_a_turning_vehicle(tmp_path):
    """What the survey is for: a vehicle mid-turn (a view no training route holds) is placed by an index
    of the survey's views."""
    import torch

    from perception.models.posenet.data import load_pose_frames
    from perception.models.posenet.places import PlaceRecognizer, fit_places
    from sim_data.drive import write_drive
    from sim_data.survey import write_survey

    config = SimConfig(blocks=(2, 1), width_px=128, height_px=96, route="random", route_seed=5, frames=150, fps=5.0,
                       traffic="light")
    write_survey(config, tmp_path / "survey.mcap", spacing_m=1.0)
    write_drive(config, tmp_path / "drive.mcap")
    survey = load_pose_frames([tmp_path / "survey.mcap"], size_px=(128, 96))
    drive = load_pose_frames([tmp_path / "drive.mcap"], size_px=(128, 96), frame=survey.frame)
    turning = np.min([_off(drive.heading_deg, h) for h in (0.0, 90.0, 180.0, 270.0)], axis=0) > 20.0
    assert turning.sum() >= 5  # the route turns
    index = PlaceRecognizer(fit_places(survey.images, survey.east_m, survey.north_m, survey.heading_deg))
    hyp = index.hypotheses(drive.images[torch.from_numpy(turning)], 5)
    error_m = np.hypot(hyp.east_m[:, 0] - drive.east_m[turning], hyp.north_m[:, 0] - drive.north_m[turning])
    assert np.median(error_m) < 3.0 and np.mean(error_m < 10.0) >= 0.8, error_m
