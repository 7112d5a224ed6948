"""PoseNet: the model, its loss, checkpoints and registry, and the train/evaluate commands end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from localization.metrics import summary_stats
from nodes.cli import main as cli
from perception.drives import CameraInfo, DriveMetadata, DriveWriter
from perception.models import Checkpoint, PosePredictor, get_model, list_models, resolve_checkpoint
from perception.models.posenet.anchors import fit_anchors
from perception.models.posenet.data import load_pose_frames
from perception.models.posenet.evaluation import calibrate_scales, pose_errors, summarize_pose_errors
from perception.models.posenet.loss import pose_nll
from perception.models.posenet.network import (
    HEADING,
    NUM_FIXED,
    POS_CORR,
    POS_LOG_VAR,
    logits_slice,
    offsets_slice,
)
from perception.models.posenet.predictor import PoseEstimates, raw_to_estimates
from perception.transforms import AugmentConfig, photometric_augment

T0_NS = 1_700_000_000_000_000_000
ORIGIN = GeoOrigin(34.05, -118.24, 0.0)


def write_drive(path, frames: int = 64) -> str:
    """A corridor 100 m long driven east; each frame's colours and a bright bar say where it is, so a tiny
    network can learn the pose from pixels in a few steps."""
    frame = LocalFrame(ORIGIN)
    rng = np.random.default_rng(0)
    with DriveWriter(path, DriveMetadata(source="toy corridor", geo_origin=ORIGIN,
                                         camera=CameraInfo.from_hfov(64, 48, 90))) as w:
        for i in range(frames):
            t = i / (frames - 1)
            image = np.zeros((48, 64, 3), np.uint8)
            image[:] = (80, int(127 + 100 * math.sin(3 * t)), int(255 * t))
            x = int(56 * t)
            image[16:24, x:x + 8] = 255
            image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
            lat, lon, _ = frame.to_geodetic(100 * t - 50, 20 * math.sin(3 * t))
            stamp = T0_NS + i * 100_000_000
            w.add_image(stamp, image)
            w.add_gps(stamp, lat_deg=float(lat), lon_deg=float(lon), heading_deg=90.0, horizontal_std_m=0.1)
    return str(path)


def tiny_checkpoint(**meta) -> Checkpoint:
    """An untrained model with a complete record (for checkpoint and predictor tests)."""
    torch.manual_seed(0)
    arch = {"backbone": "mobilenet_v3_small", "hidden": 16, "dropout": 0.2, "num_anchors": 8}
    model = get_model("posenet", **arch)
    model.set_anchors(torch.rand(8, 2) - 0.5, 0.2)
    return Checkpoint(model="posenet", arch=arch,
                      state_dict=model.state_dict(), meta={
                          "input_size_px": [32, 24], "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
                          "geo_origin": ORIGIN.to_dict(), "center_enu_m": [10.0, -5.0], "scale_m": 100.0,
                          "trained_on": [{"path": "x.mcap", "frames": 3}], "metrics": {"val": {"m": 1.0}}, **meta})


def test_registry_builds_every_backbone_with_the_pose_head():
    assert "posenet" in list_models()
    for backbone in ("mobilenet_v3_small", "resnet18"):
        model = get_model("posenet", backbone=backbone, hidden=8, num_anchors=5).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 48, 64))
        assert out.shape == (2, NUM_FIXED + 3 * 5)
    with pytest.raises(ValueError, match="backbone"):
        get_model("posenet", backbone="vgg11")
    with pytest.raises(ValueError, match="unknown model"):
        get_model("posenetz")


def test_anchors_cover_the_training_positions():
    rng = np.random.default_rng(0)
    along = rng.uniform(-1, 1, 500)
    points = np.concatenate([np.stack([along, np.zeros(500)], 1), np.stack([np.zeros(500), along], 1)])  # a cross
    anchors, spacing = fit_anchors(points, 20, seed=0)
    assert anchors.shape == (20, 2) and 0.1 < spacing < 0.4
    nearest = np.sqrt(((points[:, None] - anchors[None]) ** 2).sum(2)).min(1)
    assert nearest.max() < 0.2  # no stretch of street is far from an anchor
    again, _ = fit_anchors(points, 20, seed=0)
    np.testing.assert_array_equal(anchors, again)


ANCHORS = torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.4, 0.0], [0.0, 0.4]])


def _raw(best: int, offset=(0.0, 0.0), log_var=(-4.0, -4.0), corr=0.0, heading_rad=1.0, confidence=20.0):
    k = len(ANCHORS)
    r = torch.zeros(1, NUM_FIXED + 3 * k)
    r[0, HEADING] = torch.tensor([math.sin(heading_rad), math.cos(heading_rad)])
    r[0, POS_LOG_VAR] = torch.tensor(log_var)
    r[0, POS_CORR] = corr
    r[0, logits_slice(k)][best] = confidence
    offsets = torch.zeros(k, 2)
    offsets[best] = torch.tensor(offset)
    r[0, offsets_slice(k)] = offsets.flatten()
    return r


def test_nll_is_lowest_for_the_truth_and_learns_a_street_shaped_ellipse():
    truth = torch.tensor([[0.25, 0.0]])
    heading = torch.tensor([1.0])
    valid = torch.tensor([True])

    def nll(raw):
        return pose_nll(raw, truth, heading, valid, ANCHORS, 0.1, beta=0)[0]

    # offsets are in anchor spacings (0.1): anchor 1 at 0.2 plus 0.5 spacings east is the truth
    assert nll(_raw(1, (0.5, 0.0))) < nll(_raw(1, (1.5, 0.0)))
    assert nll(_raw(1, (0.5, 0.0))) < nll(_raw(3, (0.0, 0.0)))  # the wrong stretch of street costs most
    # an error along east only costs less with a wide east variance than with a wide north one
    assert nll(_raw(1, (1.5, 0.0), (-2.0, -6.0))) < nll(_raw(1, (1.5, 0.0), (-6.0, -2.0)))
    # gradients are finite even for a zero heading vector and an unknown heading
    r = torch.zeros(4, NUM_FIXED + 3 * len(ANCHORS), requires_grad=True)
    loss, figures = pose_nll(r, torch.zeros(4, 2), torch.zeros(4), torch.tensor([True, False, True, False]),
                             ANCHORS, 0.1)
    loss.backward()
    assert torch.isfinite(r.grad).all() and 0 <= figures["top1"] <= 1


def test_estimates_are_metres_lat_lon_and_a_valid_covariance():
    raw = torch.cat([_raw(0, (0.0, 0.0), heading_rad=math.pi / 2), _raw(2, (1.0, 0.0), corr=3.0, heading_rad=math.pi),
                     _raw(3, (0.0, -2.0), heading_rad=-math.pi / 4)])
    raw[:, POS_LOG_VAR] = math.log(0.01**2)
    frame = LocalFrame(ORIGIN)
    est = raw_to_estimates(raw, ANCHORS, 0.1, frame=frame, center_enu_m=(10.0, -5.0), scale_m=100.0, cov_scale=4.0)
    np.testing.assert_allclose(est.east_m, [10.0, 60.0, 10.0], atol=1e-5)
    np.testing.assert_allclose(est.north_m, [-5.0, -5.0, 15.0], atol=1e-5)
    np.testing.assert_allclose(est.heading_deg, [90.0, 180.0, 315.0], atol=1e-5)
    e, n, _ = frame.to_enu(est.lat_deg, est.lon_deg)
    np.testing.assert_allclose(e, est.east_m, atol=1e-5)
    np.testing.assert_allclose(n, est.north_m, atol=1e-5)
    assert np.all(np.linalg.eigvalsh(est.cov_enu_m2) > 0)  # symmetric positive definite
    assert np.allclose(est.cov_enu_m2[:, 0, 1], est.cov_enu_m2[:, 1, 0])
    assert est.cov_enu_m2[1, 0, 1] > 0  # the learned correlation
    # confident: ~ (1 m)^2 x calibration 4; unsure between anchors 20 m apart: the ellipse covers both
    assert est.cov_enu_m2[0, 0, 0] == pytest.approx(4.0, rel=0.05)
    unsure = _raw(0, confidence=0.0)
    wide = raw_to_estimates(unsure, ANCHORS, 0.1, frame=frame, center_enu_m=(0.0, 0.0), scale_m=100.0)
    assert np.sqrt(wide.cov_enu_m2[0, 0, 0]) > 15 and np.sqrt(wide.cov_enu_m2[0, 1, 1]) > 10


def test_checkpoint_round_trips_with_its_record_in_half_the_size(tmp_path):
    ckpt = tiny_checkpoint()
    path = ckpt.save(tmp_path / "p.pt")
    back = Checkpoint.load(path)
    assert back.model_id == ckpt.model_id and back.model_id.startswith("posenet-")
    assert back.meta["geo_origin"] == ORIGIN.to_dict() and back.input_size_px == (32, 24)
    assert back.meta["trained_on"][0]["frames"] == 3 and back.meta["metrics"]["val"]["m"] == 1.0
    fp32_bytes = sum(v.numel() * v.element_size() for v in ckpt.state_dict.values())
    assert path.stat().st_size < 0.6 * fp32_bytes
    images = torch.randint(0, 256, (2, 3, 24, 32), dtype=torch.uint8)
    a = PosePredictor(ckpt, device="cpu").predict(images)
    b = PosePredictor(str(path), device="cpu").predict(images)
    np.testing.assert_allclose(a.east_m, b.east_m, atol=0.05)  # fp16 storage moves a fix by centimetres
    np.testing.assert_allclose(a.heading_deg, b.heading_deg, atol=0.5)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        Checkpoint.load(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a PyTorch checkpoint"):
        Checkpoint.load(tmp_path / "junk.pt")
    # a checkpoint cut short (a copy interrupted): one line saying what is wrong, not torch's page of advice
    good = Checkpoint(model="posenet", arch={}, state_dict={"w": torch.zeros(1000)})
    good.save(tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"cut.pt: unreadable \(") as err:
        Checkpoint.load(tmp_path / "cut.pt")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400
    other = Checkpoint(model="detector", arch={}, state_dict={"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="not 'posenet'"):
        resolve_checkpoint(other, model="posenet")


def test_augmentation_is_photometric_seeded_and_per_image():
    images = torch.randint(0, 256, (4, 3, 24, 32), dtype=torch.uint8)
    images[1] = images[0]
    cfg = AugmentConfig(erase_p=0.0)
    a = photometric_augment(images, cfg, torch.Generator().manual_seed(1))
    b = photometric_augment(images, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 3, 24, 32) and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a[0], a[1])  # each image draws its own jitter
    # no flips or shifts: the picture stays where it was (correlation with the input stays high)
    x, y = images[0].float().flatten(), a[0].flatten()
    assert torch.corrcoef(torch.stack([x, y]))[0, 1] > 0.8


def test_calibration_widens_an_overconfident_covariance_only():
    n = 400
    rng = np.random.default_rng(0)
    err = rng.normal(0, 2.0, (n, 2))  # true 1-sigma 2 m
    est = PoseEstimates(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.tile(np.eye(2), (n, 1, 1)),
                        np.zeros(n), np.full(n, 10.0))  # claims 1 m
    errors = pose_errors(est, err[:, 0], err[:, 1], np.full(n, np.nan))
    summary = summarize_pose_errors(errors)
    assert summary["within_95_ellipse"] < 0.6  # over-confident, and the figure says so
    scale = calibrate_scales(errors)["position_cov_scale"]
    assert 3.0 < scale < 5.5  # ~ (2 m / 1 m)^2
    est.cov_enu_m2 = est.cov_enu_m2 * scale
    assert summarize_pose_errors(pose_errors(est, err[:, 0], err[:, 1], np.full(n, np.nan)))[
        "within_95_ellipse"] == pytest.approx(0.95, abs=0.01)
    assert calibrate_scales(pose_errors(est, err[:, 0] * 0.1, err[:, 1] * 0.1, np.full(n, np.nan)))[
        "position_cov_scale"] == 1.0


def test_summary_of_known_errors_is_their_median_mean_p95_and_max():
    values = np.array([7.0, 1.0, 9.0, 3.0, 5.0, 100.0, np.nan])  # unsorted, one undefined
    figures = summary_stats(values, name="position_error", unit="m")
    assert figures == {
        "position_error_m_median": 6.0,  # (5 + 7) / 2 of the sorted finite values
        "position_error_m_mean": pytest.approx(125.0 / 6.0),
        "position_error_m_p95": pytest.approx(9.0 + 0.75 * (100.0 - 9.0)),  # rank 0.95 * 5 = 4.75
        "position_error_m_max": 100.0,
    }
    assert summary_stats(np.array([np.nan]), name="x", unit="m") == {}


def test_position_error_is_the_horizontal_distance_of_both_axes():
    n = 4
    est = PoseEstimates(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.tile(np.eye(2) * 4.0, (n, 1, 1)),
                        np.array([10.0, 350.0, 90.0, 0.0]), np.full(n, 5.0))
    east = np.array([3.0, 0.0, -6.0, 0.0])
    north = np.array([4.0, 2.0, 8.0, 0.0])
    errors = pose_errors(est, east, north, np.array([350.0, 10.0, 100.0, np.nan]))
    np.testing.assert_allclose(errors.position_error_m, [5.0, 2.0, 10.0, 0.0])
    np.testing.assert_allclose(errors.error_enu_m, np.stack([east, north], 1))
    np.testing.assert_allclose(errors.mahalanobis2, [25 / 4, 4 / 4, 100 / 4, 0.0])
    np.testing.assert_allclose(errors.heading_error_deg[:3], [20.0, 20.0, 10.0])  # across north, both ways
    assert np.isnan(errors.heading_error_deg[3])
    summary = summarize_pose_errors(errors)
    assert summary["position_error_m_median"] == pytest.approx(3.5)  # sorted 0, 2, 5, 10
    assert summary["within_95_ellipse"] == pytest.approx(0.5)  # d^2 6.25 and 25 are outside 5.99
    assert summary["frames_with_heading"] == 3


def test_train_resume_evaluate_end_to_end(tmp_path, capsys):
    drive = write_drive(tmp_path / "corridor.mcap")
    out = tmp_path / "run"
    common = ["train", "posenet", "--data", drive, "--out", str(out), "--input-size", "32x24", "--hidden", "32",
              "--batch-size", "16", "--lr", "3e-3", "--anchors", "8", "--val-fraction", "0.25", "--seed", "1", "--quiet"]
    assert cli([*common, "--epochs", "2"]) == 0
    assert cli([*common, "--epochs", "3", "--resume", "--export", str(tmp_path / "exported.pt")]) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # the resumed run went on at epoch 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    ckpt = Checkpoint.load(tmp_path / "exported.pt")
    assert ckpt.meta["trained_on"][0]["source"] == "toy corridor" and ckpt.meta["geo_origin"] == ORIGIN.to_dict()
    assert "position_error_m_median" in ckpt.meta["metrics"]["val"]
    capsys.readouterr()

    assert cli(["evaluate", "posenet", "--model", str(out / "model.pt"), "--data", drive]) == 0
    text = capsys.readouterr().out
    assert "position error (m)" in text and "95% ellipse" in text and "64 frames" in text
    assert cli(["evaluate", "posenet", "--model", str(out / "model.pt"), "--data", f"{drive}@1::2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["frames"] == 32 and figures["model_id"] == Checkpoint.load(out / "model.pt").model_id
    # the figures are those of the model's own predictions on those frames, computed here by hand
    predictor = PosePredictor(str(out / "model.pt"), device="cpu")
    frames = load_pose_frames([f"{drive}@1::2"], size_px=predictor.input_size_px, frame=predictor.frame)
    est = predictor.predict(frames.images)
    dist_m = np.sqrt((est.east_m - frames.east_m) ** 2 + (est.north_m - frames.north_m) ** 2)
    ordered = np.sort(dist_m)
    assert figures["position_error_m_median"] == pytest.approx((ordered[15] + ordered[16]) / 2, rel=1e-9)
    assert figures["position_error_m_mean"] == pytest.approx(dist_m.mean(), rel=1e-9)
    assert figures["position_error_m_p95"] == pytest.approx(ordered[29] + 0.45 * (ordered[30] - ordered[29]), rel=1e-9)
    assert figures["position_error_m_max"] == pytest.approx(ordered[-1], rel=1e-9)
    heading_err = np.abs((est.heading_deg - 90.0 + 180.0) % 360.0 - 180.0)  # the corridor runs east
    assert figures["heading_error_deg_median"] == pytest.approx(np.median(heading_err), rel=1e-6)
    assert 0.0 <= figures["within_95_ellipse"] <= 1.0


def test_fine_tuning_starts_from_the_checkpoint_and_keeps_what_its_weights_mean(tmp_path, capsys):
    drive = write_drive(tmp_path / "corridor.mcap")
    common = ["train", "posenet", "--data", drive, "--batch-size", "16", "--val-fraction", "0.25", "--quiet"]
    assert cli([*common, "--out", str(tmp_path / "base"), "--input-size", "32x24", "--hidden", "32",
                "--anchors", "8", "--epochs", "2", "--lr", "3e-3"]) == 0
    base = Checkpoint.load(tmp_path / "base" / "model.pt")
    # other size/anchors/width asked for: the starting checkpoint's win (its weights mean those)
    assert cli([*common, "--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "base" / "model.pt"),
                "--input-size", "64x48", "--anchors", "4", "--epochs", "1", "--lr", "1e-9"]) == 0
    tuned = Checkpoint.load(tmp_path / "tuned" / "model.pt")
    assert tuned.meta["input_size_px"] == [32, 24] and tuned.arch == base.arch
    assert tuned.meta["recipe"]["init"]["model_id"] == base.model_id
    for key in ("geo_origin", "center_enu_m", "scale_m"):
        assert tuned.meta[key] == base.meta[key]
    assert torch.equal(tuned.state_dict["anchors"], base.state_dict["anchors"])
    # at a vanishing learning rate the tuned weights are the starting ones (they were loaded, not re-drawn)
    head = next(k for k in base.state_dict if k.startswith("head") and k.endswith("weight"))
    assert torch.allclose(tuned.state_dict[head].float(), base.state_dict[head].float(), atol=1e-3)
    capsys.readouterr()
    assert cli([*common, "--out", str(tmp_path / "x"), "--init", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_default_checkpoint_with_its_place_index_places_the_demo_drive():
    """The shipped default carries a place index (docs/posenet.md, 'Place recognition'): on the demo drive
    (not in the index) its fixes are within a metre where the regression alone is 0.76 m median, 44 m p95,
    and every fix names the index in its source."""
    from perception.models.posenet.evaluation import evaluate
    from sim_data import DEFAULT_DEMO_DRIVE

    r = evaluate(None, [DEFAULT_DEMO_DRIVE], device="cpu")
    assert r["model_id"].startswith("posenet-f09b1cf9+places-") and r["places"]["fitted"]
    assert r["position_error_m_median"] < 0.3 and r["position_error_m_p95"] < 1.0
    assert r["position_error_over_20m"] <= 0.01 and r["topk_recall_10m"] == 1.0


def test_night_weights_are_registered_and_localize_the_demo_drive():
    """The second PoseNet checkpoint (fine-tuned on day + night) loads by name and still localizes."""
    from sim_data import DEFAULT_DEMO_DRIVE

    predictor = PosePredictor("posenet_synthetic_city_night", device="cpu")
    assert predictor.checkpoint.meta["recipe"]["init"]["model_id"] == "posenet-f09b1cf9"
    assert any("night" in d["path"] for d in predictor.checkpoint.meta["trained_on"])
    frames = load_pose_frames([f"{DEFAULT_DEMO_DRIVE}@::5"], size_px=predictor.input_size_px, frame=predictor.frame)
    est = predictor.predict(frames.images)
    assert np.median(np.hypot(est.east_m - frames.east_m, est.north_m - frames.north_m)) < 10.0


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert cli(["evaluate", "posenet", "--model", str(tmp_path / "none.pt"), "--data", "x.mcap"]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert cli(["train", "posenet", "--data", str(tmp_path / "missing.mcap"), "--out", str(tmp_path)]) == 2
    assert "missing.mcap" in capsys.readouterr().err
    assert cli(["train", "posenet", "--data", "a.mcap", "--input-size", "big"]) == 2
    assert "--input-size" in capsys.readouterr().err


def test_default_checkpoint_is_shipped_and_localizes_the_demo_drive_of_its_city():
    """The default weights load with no name, carry their held-out accuracy, and localize the shipped
    demo drive (the held-out test_loop route in the default city they were trained on)."""
    from perception.models import default_weights
    from sim_data import DEFAULT_DEMO_DRIVE

    entry = default_weights("posenet")
    assert entry.path.is_file() and entry.path.stat().st_size < 15e6
    predictor = PosePredictor(None, device="cpu")
    metrics = predictor.checkpoint.meta["metrics"]
    held_out = [k for k in metrics if k.startswith("eval:") and "test_loop" in k]
    assert held_out and math.isfinite(metrics[held_out[0]]["position_error_m_median"])
    assert not any("test_" in d["path"] for d in predictor.checkpoint.meta["trained_on"])  # never trained on a test route
    frames = load_pose_frames([f"{DEFAULT_DEMO_DRIVE}@::5"], size_px=predictor.input_size_px, frame=predictor.frame)
    est = predictor.predict(frames.images)
    err = np.hypot(est.east_m - frames.east_m, est.north_m - frames.north_m)
    assert np.median(err) < 10.0, np.median(err)  # measured: 0.8 m


def test_weights_record_carries_meta_and_the_preprocessing_the_predictor_uses():
    from perception.models import get_weights

    weights = get_weights("posenet_synthetic_city")
    assert weights.meta["input_size_px"] == [128, 96] and "geo_origin" in weights.meta
    transform = weights.transforms()
    image_bgr = np.zeros((240, 320, 3), np.uint8)
    image_bgr[..., 2] = 255  # red
    rgb = transform.resize(image_bgr)
    assert rgb.shape == (3, 96, 128) and rgb[0].min() == 255 and rgb[2].max() == 0
    x = transform(torch.from_numpy(rgb)[None])
    assert x[0, 0, 0, 0].item() == pytest.approx((1.0 - 0.485) / 0.229)
    predictor = PosePredictor(None, device="cpu")
    assert torch.equal(predictor.predict_raw(torch.from_numpy(rgb)[None]),
                       predictor.model(x).float())


def test_default_checkpoint_scores_the_demo_drive_as_recorded():
    """The shipped checkpoint on the shipped demo drive gives the figures measured before the models were
    split into modules (2026-12-01, `streetloc evaluate posenet --data demo_city.mcap --json`): a
    regression in loading, preprocessing, decoding or scoring moves them."""
    from perception.models.posenet.evaluation import evaluate
    from sim_data import DEFAULT_DEMO_DRIVE

    r = evaluate(None, [DEFAULT_DEMO_DRIVE], device="cpu", places=False)  # the regression alone
    assert r["model_id"].startswith("posenet-f09b1cf9") and r["frames"] == 150
    recorded = {"position_error_m_median": 0.7607164515527253, "position_error_m_mean": 11.165324797845182,
                "position_error_m_p95": 44.08708341990639, "position_error_m_max": 301.78660198573806,
                "heading_error_deg_median": 0.07134350033555847, "within_95_ellipse": 1.0,
                "heading_within_95": 0.9866666666666667, "predicted_std_m_median": 26.107954994187207}
    for key, value in recorded.items():
        assert r[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key
