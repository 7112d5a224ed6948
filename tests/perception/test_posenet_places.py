"""PoseNet place recognition: hypotheses from the training views that look most alike (places.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from nodes.cli import main as cli
from nodes.posenet import PoseNetNode
from perception.drives import CameraInfo, DriveMetadata, DriveWriter
from perception.models import Checkpoint, PosePredictor
from perception.models.posenet.places import (
    PlaceRecognizer,
    fit_place_calibration,
    fit_places,
    hypothesis_covariance,
)
from tests.conftest import save_tiny_posenet

ORIGIN = GeoOrigin(55.7, 13.19, 0.0)
T0_NS = 1_700_000_000_000_000_000
PLACES = 12  # places along one street, 25 m apart, each with its own look


def _look(place: int, rng: np.random.Generator, noise: float, h: int = 48, w: int = 64) -> np.ndarray:
    """uint8 RGB [3, h, w]: place ``place``'s facade pattern plus ``noise`` (grey levels, 1-sigma)."""
    base = np.random.default_rng(1000 + place).integers(0, 256, (1, h // 8, w // 8)).repeat(8, 1).repeat(8, 2)
    img = np.repeat(base, 3, 0).astype(np.float64) + rng.normal(0.0, noise, (3, h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def _bank(rng: np.random.Generator, per_place: int = 4) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    images, east = [], []
    for p in range(PLACES):
        for j in range(per_place):
            images.append(_look(p, rng, 4.0))
            east.append(25.0 * p + j)  # frames 1 m apart at each place
    n = len(east)
    return torch.from_numpy(np.stack(images)), np.array(east), np.zeros(n), np.full(n, 90.0)


def test_a_view_is_placed_where_the_training_views_look_alike_and_near_ones_merge():
    rng = np.random.default_rng(0)
    images, east, north, heading = _bank(rng)
    places = PlaceRecognizer(fit_places(images, east, north, heading))
    query = torch.from_numpy(np.stack([_look(p, rng, 8.0) for p in (3, 7)]))
    hyp = places.hypotheses(query, k=5)
    # the four frames of a place are one hypothesis (1 m apart, same heading): its position is their mean
    np.testing.assert_allclose(hyp.east_m[:, 0], [75.0 + 1.5, 175.0 + 1.5], atol=1.0)
    np.testing.assert_allclose(hyp.north_m[:, 0], 0.0, atol=1e-6)
    assert np.all(hyp.heading_deg[:, 0] == 90.0)
    # the other hypotheses are other places, weaker, best first; weights are probabilities
    assert np.all(np.abs(hyp.east_m[:, 1:] - hyp.east_m[:, :1]) > 20.0)
    assert np.all(np.diff(hyp.weight, axis=1) <= 1e-12) and np.all(hyp.weight.sum(1) <= 1.0 + 1e-9)
    assert np.all(hyp.weight[:, 0] > 0.5)
    # a view that matches one place only: all the mass on one hypothesis, and still a probability
    sharp = places.with_config(temperature=1e-4).hypotheses(query, k=5)
    assert np.all(sharp.weight <= 1.0) and np.all(sharp.weight.sum(1) <= 1.0)


def test_frames_facing_the_other_way_are_another_hypothesis():
    rng = np.random.default_rng(1)
    images, east, north, heading = _bank(rng)
    heading[1::2] = 270.0  # half the frames of each place drove the other way
    hyp = PlaceRecognizer(fit_places(images, east, north, heading)).hypotheses(
        torch.from_numpy(_look(5, rng, 8.0)[None]), k=5)
    top2 = hyp.heading_deg[0, :2]
    assert sorted(top2.tolist()) == [90.0, 270.0]
    assert np.all(np.abs(hyp.east_m[0, :2] - 126.0) < 3.0)


def test_the_ellipse_is_long_along_the_heading():
    cov = hypothesis_covariance(np.array([90.0, 0.0]), 3.0, 1.0)
    np.testing.assert_allclose(cov[0], [[9.0, 0.0], [0.0, 1.0]], atol=1e-9)  # east-bound: long east-west
    np.testing.assert_allclose(cov[1], [[1.0, 0.0], [0.0, 9.0]], atol=1e-9)  # north-bound
    assert np.all(np.isnan(hypothesis_covariance(np.array([np.nan]), 3.0, 1.0)))


def test_calibration_makes_the_right_hypothesis_ellipse_hold_the_truth():
    rng = np.random.default_rng(2)
    images, east, north, heading = _bank(rng)
    places = PlaceRecognizer(fit_places(images, east, north, heading))
    # validation views: each place seen from 0-3 m along the street, 0-0.5 m across
    val_place = rng.integers(0, PLACES, 120)
    q = torch.from_numpy(np.stack([_look(int(p), rng, 10.0) for p in val_place]))
    ve = 25.0 * val_place + rng.uniform(0.0, 3.0, 120)
    vn = rng.uniform(-0.5, 0.5, 120)
    fit = fit_place_calibration(places, q, ve, vn, np.full(120, 90.0), k=3)
    cfg = fit["config"]
    assert cfg["fitted"] and cfg["along_std_m"] > cfg["across_std_m"]
    assert fit["right_share"] > 0.95
    calibrated = places.with_config(**{k: v for k, v in cfg.items()})
    hyp = calibrated.hypotheses(q, k=3)
    d = np.stack([ve - hyp.east_m[:, 0], vn - hyp.north_m[:, 0]], 1)
    m2 = np.einsum("ni,nij,nj->n", d, np.linalg.inv(hyp.cov_enu_m2[:, 0]), d)
    assert 0.90 <= np.mean(m2 <= 5.991) <= 1.0


def test_a_damaged_index_is_refused_in_one_line():
    rng = np.random.default_rng(3)
    meta = fit_places(*_bank(rng))
    with pytest.raises(ValueError, match="lacks bits"):
        PlaceRecognizer({k: v for k, v in meta.items() if k != "bits"})
    with pytest.raises(ValueError, match="disagree"):
        PlaceRecognizer({**meta, "east_m": meta["east_m"][:3]})
    with pytest.raises(ValueError, match="method"):
        PlaceRecognizer({**meta, "method": "something-else"})


def test_an_index_needs_views_with_poses():
    rng = np.random.default_rng(3)
    images, east, north, heading = _bank(rng, per_place=1)
    with pytest.raises(ValueError, match="at least 30 frames"):
        fit_places(images[:5], east[:5], north[:5], heading[:5])


# ------------------------------------------------------------------------- checkpoint, command, node


def _drive(path, places: list[int], *, seed: int, noise: float, along_m: float = 0.0) -> str:
    frame = LocalFrame(ORIGIN)
    rng = np.random.default_rng(seed)
    meta = DriveMetadata(source="sim-like", geo_origin=ORIGIN, camera=CameraInfo.from_hfov(32, 24, 70))
    with DriveWriter(path, meta) as w:
        for i, p in enumerate(places):
            lat, lon, _ = frame.to_geodetic(25.0 * p + along_m, 0.0)
            stamp = T0_NS + i * 200_000_000
            rgb = _look(p, rng, noise, 24, 32)
            w.add_image(stamp, np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1]))
            w.add_gps(stamp, lat_deg=float(lat), lon_deg=float(lon), heading_deg=90.0, horizontal_std_m=0.1)
    return str(path)


def test_calibrate_builds_the_index_and_the_predictor_and_node_use_it(tmp_path, capsys):
    ckpt = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict(), anchor_spacing_m=20.0)
    bank = _drive(tmp_path / "bank.mcap", [p for p in range(PLACES) for _ in range(3)], seed=4, noise=3.0)
    val = _drive(tmp_path / "val.mcap", list(range(PLACES)) * 3, seed=5, noise=4.0, along_m=1.0)
    test = _drive(tmp_path / "test.mcap", list(range(PLACES)), seed=6, noise=4.0, along_m=0.5)
    out = tmp_path / "places.pt"
    assert cli(["calibrate", "posenet", "--model", ckpt, "--places-data", bank, "--data", val, "-o", str(out),
                "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "place index of 36 frames" in text and "along" in text
    meta = Checkpoint.load(out).meta["places"]
    assert meta["bank_frames"] == 36 and meta["config"]["fitted"] and meta["calibration"]["fitted_on"] == [val]
    # same weights, other answers: the fixes' source says which
    base = Checkpoint.load(ckpt).model_id
    assert Checkpoint.load(out).model_id.startswith(base + "+places-")

    # the untrained network alone is lost; with the index every test view is placed within a few metres
    pred = PosePredictor(str(out), device="cpu")
    plain = PosePredictor(str(out), device="cpu", places=False)
    assert pred.places is not None and plain.places is None
    assert cli(["evaluate", "posenet", "--model", str(out), "--data", test, "--device", "cpu", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["position_error_over_20m"] == 0.0 and r["topk_recall_10m"] == 1.0

    # the node's fixes carry each hypothesis' own heading
    rng = np.random.default_rng(7)
    est = pred.predict(torch.from_numpy(np.stack([_look(2, rng, 8.0, 24, 32)])))
    assert est.hyp_heading_deg is not None
    hyps = PoseNetNode._hypotheses(est, 0, 0.5)
    assert hyps and hyps[0].heading_deg == pytest.approx(90.0)
    assert hyps[0].heading_std_deg == pytest.approx(max(0.5, pred.places.config.heading_std_deg))


def test_an_index_calibrated_on_its_own_drive_is_refused(tmp_path, capsys):
    ckpt = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict())
    bank = _drive(tmp_path / "bank.mcap", list(range(PLACES)) * 3, seed=4, noise=3.0)
    assert cli(["calibrate", "posenet", "--model", ckpt, "--places-data", bank, "--data", f"{bank}@::2",
                "-o", str(tmp_path / "x.pt"), "--device", "cpu"]) == 2
    assert "it is in the place index" in capsys.readouterr().out


def test_the_road_ahead_does_not_decide_the_place():
    """Two views that differ only in the bottom rows (the road right ahead: crosswalks, lane marks, the same
    at every intersection) get the same place bits; an index stored before the field existed used every
    row and still loads that way."""
    import torch

    from perception.models.posenet.places import PlaceConfig, PlaceRecognizer, fit_places

    rng = np.random.default_rng(3)
    bank = torch.from_numpy(rng.integers(0, 255, (40, 3, 120, 160), dtype=np.uint8))
    pos = np.arange(40, dtype=float)
    meta = fit_places(bank, pos * 30.0, pos * 0.0, pos * 0.0)
    rec = PlaceRecognizer(meta)
    view = bank[7:8].clone()
    striped = view.clone()
    striped[..., 100:, ::8] = 255  # a crosswalk in the bottom sixth of the image
    assert rec.hypotheses(striped, 1).east_m[0, 0] == rec.hypotheses(view, 1).east_m[0, 0] == 7 * 30.0
    assert rec.neighbours(view)[1][0, 0] == rec.neighbours(striped)[1][0, 0] == 1.0

    every_row = fit_places(bank, pos, pos, pos, config=PlaceConfig(skip_bottom_rows=0))
    old = dict(every_row, config={k: v for k, v in every_row["config"].items() if k != "skip_bottom_rows"})
    assert PlaceRecognizer(old).config.skip_bottom_rows == 0
    assert PlaceRecognizer(old).neighbours(striped)[1][0, 0] < 1.0  # every row: the crosswalk counts
