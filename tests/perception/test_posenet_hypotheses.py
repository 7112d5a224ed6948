"""PoseNet hypotheses (issue 11): the mixture's modes, their calibration, their place in drives, the
input geometry rule and the honest reports of ``streetloc evaluate posenet``."""

from __future__ import annotations

import json
import math
import sys

import cv2
import numpy as np
import pytest
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from nodes.cli import main as cli
from perception.drives import CameraInfo, DriveMetadata, DriveReader, DriveWriter
from perception.drives.conversions import decode, encode
from perception.drives.messages import FixHypothesis, GeoFix, Header
from perception.drives.topics import POSENET_TOPIC, get_topic
from perception.models import Checkpoint, PosePredictor
from perception.models.posenet.evaluation import (
    PoseErrors,
    coverage_verdict,
    drive_condition,
    plot_report,
    reliability,
    summarize_pose_errors,
)
from perception.models.posenet.predictor import HypothesisCalibration, fit_to_input, select_hypotheses
from tests.conftest import save_tiny_posenet

ORIGIN = GeoOrigin(55.7, 13.19, 0.0)
T0_NS = 1_700_000_000_000_000_000


# ------------------------------------------------------------------------------------------- modes


def test_near_anchors_merge_into_one_mode_and_far_ones_stay_apart():
    # anchors 0 and 1 point at the same place (1 m apart), 2 and 3 at two other streets
    cand = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [100.0, 0.0], [0.0, 200.0]]])
    prob = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    idx, w = select_hypotheses(prob.log(), cand, k=5, merge=5.0, pool=4, temperature=1.0)
    assert idx.tolist() == [[0, 2, 3, -1, -1]]  # three places, padded with -1
    np.testing.assert_allclose(w.numpy(), [[0.7, 0.2, 0.1, 0.0, 0.0]])
    # without merging the same place comes twice and eats a slot
    idx, w = select_hypotheses(prob.log(), cand, k=3, merge=0.0, pool=4, temperature=1.0)
    assert idx.tolist() == [[0, 1, 2]]


def test_mode_zero_is_the_top_anchor_and_the_rest_go_by_merged_weight():
    # anchor 0 is alone at 0.35; anchors 1-3 agree on one far place (0.25 + 0.2 + 0.2)
    cand = torch.tensor([[[0.0, 0.0], [50.0, 0.0], [51.0, 0.0], [50.0, 1.0], [0.0, 90.0]]])
    prob = torch.tensor([[0.35, 0.25, 0.2, 0.15, 0.05]])
    idx, w = select_hypotheses(prob.log(), cand, k=3, merge=5.0, pool=5, temperature=1.0)
    assert idx.tolist() == [[0, 1, 4]]  # the top anchor stays the top-level fix
    np.testing.assert_allclose(w.numpy(), [[0.35, 0.6, 0.05]])


def test_temperature_spreads_or_sharpens_the_weights():
    cand = torch.tensor([[[0.0, 0.0], [100.0, 0.0]]])
    logits = torch.tensor([[2.0, 0.0]])
    _, w1 = select_hypotheses(logits, cand, k=2, merge=1.0, pool=2, temperature=1.0)
    _, w_hot = select_hypotheses(logits, cand, k=2, merge=1.0, pool=2, temperature=4.0)
    _, w_cold = select_hypotheses(logits, cand, k=2, merge=1.0, pool=2, temperature=0.5)
    assert w_cold[0, 0] > w1[0, 0] > w_hot[0, 0] > 0.5
    assert w1[0, 0].item() == pytest.approx(1 / (1 + math.exp(-2)))


def test_predictor_publishes_k_hypotheses_whose_first_is_the_fix(tmp_path):
    ckpt = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict(), anchor_spacing_m=20.0)
    images = [np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8) for i in range(3)]
    est = PosePredictor(ckpt, device="cpu", hypotheses=3).predict_bgr(images)
    assert est.hyp_weight.shape == (3, 3) and est.hyp_cov_enu_m2.shape == (3, 3, 2, 2)
    np.testing.assert_allclose(est.hyp_east_m[:, 0], est.east_m)
    np.testing.assert_allclose(est.hyp_lat_deg[:, 0], est.lat_deg)
    assert np.all(est.hyp_weight.sum(1) <= 1.0 + 1e-9) and np.all(est.hyp_weight >= 0)
    cov = est.hyp_cov_enu_m2[0, 0]
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert PosePredictor(ckpt, device="cpu", hypotheses=0).predict_bgr(images).hyp_weight is None


def test_the_checkpoint_calibration_scales_the_hypotheses(tmp_path):
    path = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict(), anchor_spacing_m=20.0)
    image = [np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)]
    plain = PosePredictor(path, device="cpu", hypotheses=4).predict_bgr(image)
    ckpt = Checkpoint.load(path)
    ckpt.meta["calibration"]["hypotheses"] = {"temperature": 0.5, "cov_scale": 3.0, "merge_m": 0.0,
                                              "fitted": True, "fitted_on": ["val.mcap"]}
    ckpt.save(tmp_path / "cal.pt")
    predictor = PosePredictor(str(tmp_path / "cal.pt"), device="cpu", hypotheses=4)
    assert predictor.calibration == HypothesisCalibration(temperature=0.5, cov_scale=3.0, merge_m=0.0, fitted=True)
    cal = predictor.predict_bgr(image)
    np.testing.assert_allclose(cal.hyp_cov_enu_m2[0, 0], 3.0 * plain.hyp_cov_enu_m2[0, 0])
    assert cal.hyp_weight[0, 0] > plain.hyp_weight[0, 0]  # a colder softmax: the top mode gains


# ------------------------------------------------------------------------------------- calibration


def test_reliability_of_calibrated_weights_is_near_zero_and_of_overconfident_ones_is_not():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, 20000)
    right = rng.uniform(0, 1, 20000) < w
    table, ece = reliability(w, right)
    assert ece < 0.02 and sum(b["count"] for b in table) == 20000
    _, ece_over = reliability(np.sqrt(w), right)  # says more than it knows
    assert ece_over > 0.1


def _errors(dist: np.ndarray, weight: np.ndarray, m2: np.ndarray) -> PoseErrors:
    n = len(dist)
    return PoseErrors(dist[:, 0], np.zeros((n, 2)), np.full(n, 1.0), np.full(n, np.nan), np.full(n, np.nan),
                      np.ones(n), dist, weight, m2, np.ones(n, bool), np.full(n, "", object))


def test_recall_counts_the_nearest_hypothesis_and_right_means_nearest_within_the_radius():
    dist = np.array([[3.0, 50.0], [40.0, 8.0], [30.0, 60.0], [12.0, 7.0]])
    weight = np.array([[0.9, 0.1], [0.6, 0.3], [0.5, 0.5], [0.5, 0.4]])
    m2 = np.array([[1.0, 9.0], [1.0, 7.0], [1.0, 1.0], [1.0, 2.0]])
    e = _errors(dist, weight, m2)
    assert e.right_hypothesis(10.0).tolist() == [[True, False], [False, True], [False, False], [False, True]]
    s = summarize_pose_errors(e, radius_m=10.0)
    assert s["top1_recall_5m"] == 0.25 and s["top1_recall_10m"] == 0.25
    assert s["topk_recall_5m"] == 0.25 and s["topk_recall_10m"] == 0.75
    assert s["frames_with_right_hypothesis"] == 3
    assert s["right_hypothesis_within_95_ellipse"] == pytest.approx(2 / 3)  # 7.0 > 5.99
    assert s["position_error_over_20m"] == 0.5 and s["hypotheses_k"] == 2


def test_flagged_fixes_are_counted_by_reason():
    e = _errors(np.full((4, 1), 3.0), np.full((4, 1), 0.9), np.ones((4, 1)))
    e.valid = np.array([True, False, False, True])
    e.reason = np.array(["", "black_frame", "black_frame,out_of_area", ""], dtype=object)
    s = summarize_pose_errors(e, radius_m=10.0)
    assert s["valid_fraction"] == 0.5
    assert s["flag_reasons"] == {"black_frame": 2, "out_of_area": 1}


def test_coverage_is_called_too_narrow_too_wide_or_calibrated():
    assert coverage_verdict(0.80) == "too narrow"
    assert coverage_verdict(0.95) == "calibrated"
    assert coverage_verdict(0.995) == "too wide"
    assert coverage_verdict(float("nan")) == "-"


def test_drive_conditions_come_from_the_sim_metadata():
    assert drive_condition({"time_of_day_h": 12.0, "traffic": "normal"}) == "day"
    assert drive_condition({"time_of_day_h": 18.5, "traffic": "heavy"}) == "dusk, heavy traffic"
    assert drive_condition({"time_of_day_h": 22.0, "camera_noise": True, "city_seed": 3}) == "night, noise, city seed 3"
    assert drive_condition({}) == ""


# ------------------------------------------------------------------------------------------ drives


def test_hypotheses_and_reason_survive_a_drive_round_trip(tmp_path):
    hyps = [FixHypothesis(55.71, 13.2, 0.62, (4.0, 0.5, 0.5, 9.0), 87.5, 2.0),
            FixHypothesis(55.72, 13.21, 0.2, (4.0, 0.5, 0.5, 9.0), None, None)]
    fixes = [GeoFix(Header(T0_NS, frame_id="posenet"), 55.71, 13.2, heading_deg=87.5, cov_enu_m2=(25.0, 0.0, 0.0, 25.0),
                    heading_std_deg=2.0, source="posenet-x", hypotheses=hyps),
             GeoFix(Header(T0_NS + 1, frame_id="posenet"), 55.71, 13.2, source="posenet-x", valid=False,
                    reason="black_frame,frozen")]
    path = tmp_path / "fixes.mcap"
    with DriveWriter(path, DriveMetadata(source="test", geo_origin=ORIGIN)) as w:
        for fix in fixes:
            w.write(POSENET_TOPIC, fix)
    with DriveReader(path) as r:
        back = list(r.fixes(POSENET_TOPIC))
    assert back[0].hypotheses == hyps and back[0].valid and back[0].reason == ""
    assert back[1].hypotheses == [] and not back[1].valid and back[1].reason == "black_frame,frozen"


def test_a_hypothesis_that_json_cannot_hold_is_refused_not_altered():
    topic = get_topic(POSENET_TOPIC)
    fix = GeoFix(Header(T0_NS), 55.7, 13.19, hypotheses=[FixHypothesis(55.7, 13.19, weight=math.nan)])
    with pytest.raises(ValueError, match="hypothesis"):
        encode(topic, fix)
    schema, proto = encode(topic, GeoFix(Header(T0_NS), 55.7, 13.19, hypotheses=[FixHypothesis(55.7, 13.19, 1.0)]))
    [h] = decode(topic, schema, T0_NS, 0, proto.SerializeToString()).hypotheses
    assert (h.lat_deg, h.lon_deg, h.weight, h.heading_deg) == (55.7, 13.19, 1.0, None)
    assert math.isnan(h.cov_enu_m2[0]) and math.isnan(h.cov_enu_m2[3])  # unknown stays unknown, not 0 or 1


# ---------------------------------------------------------------------------------------- geometry


def _wide_frame(w: int, h: int) -> np.ndarray:
    """A w x h frame: a red centre of the 4:3 aspect, blue bands outside it."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (255, 0, 0)  # blue (BGR)
    cw = int(round(h * 4 / 3))
    x0 = (w - cw) // 2
    image[:, x0:x0 + cw] = (0, 0, 255)  # red
    return image


def test_a_wide_frame_is_centre_cropped_to_the_input_aspect_never_stretched():
    rgb = fit_to_input(_wide_frame(426, 240), (128, 96))
    assert rgb.shape == (3, 96, 128)
    assert rgb[2].max() <= 2 and rgb[0].min() >= 253  # all red: the blue sides were cut, not squeezed in
    tall = np.zeros((400, 240, 3), np.uint8)
    tall[:50] = tall[-50:] = (255, 0, 0)  # blue top and bottom bands beyond 4:3
    tall[50:-50] = (0, 0, 255)
    rgb = fit_to_input(tall, (128, 96))
    assert rgb[2].max() <= 2
    same = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_to_input(same, (128, 96)),
                                  cv2.resize(same, (128, 96), interpolation=cv2.INTER_AREA)[:, :, ::-1].transpose(2, 0, 1))


def test_evaluate_reads_a_16_9_drive_the_way_the_node_sees_it(tmp_path):
    """Same rule in evaluate and in the predictor: the frames evaluate scores are the cropped ones."""
    from perception.models.posenet.data import load_pose_frames

    frame = LocalFrame(ORIGIN)
    path = tmp_path / "wide.mcap"
    with DriveWriter(path, DriveMetadata(source="wide", geo_origin=ORIGIN,
                                         camera=CameraInfo.from_hfov(96, 54, 70))) as w:
        lat, lon, _ = frame.to_geodetic(1.0, 2.0)
        w.add_image(T0_NS, _wide_frame(96, 54))
        w.add_gps(T0_NS, lat_deg=float(lat), lon_deg=float(lon), heading_deg=0.0, horizontal_std_m=0.1)
    frames = load_pose_frames([str(path)], size_px=(32, 24))
    with DriveReader(path) as r:
        stored = next(iter(r.frames())).image.to_bgr()  # the JPEG as decoded
    np.testing.assert_array_equal(frames.images[0], fit_to_input(stored, (32, 24)))
    assert frames.images[0][2].max() < 40  # no blue band squeezed in


def test_evaluate_says_when_it_crops_and_when_the_view_is_narrower():
    from perception.models.posenet.evaluation import geometry_note

    wide = geometry_note(CameraInfo.from_hfov(426, 240, 70.0), (128, 96), 70.0)
    assert "426x240" in wide and "4:3" in wide and "55 deg" in wide and "70 deg" in wide
    assert "deg" not in geometry_note(CameraInfo.from_hfov(426, 240, 90.0), (128, 96), 70.0)  # same view after crop
    assert geometry_note(CameraInfo.from_hfov(320, 240, 70.0), (128, 96), 70.0) == ""  # nothing done


# ------------------------------------------------------------------------------------------ reports


def _sim_like_drive(path, *, hour: float, traffic: str, frames: int = 12) -> str:
    frame = LocalFrame(ORIGIN)
    rng = np.random.default_rng(int(hour))
    meta = DriveMetadata(source="sim-like", geo_origin=ORIGIN, camera=CameraInfo.from_hfov(32, 24, 70),
                         extra={"time_of_day_h": hour, "traffic": traffic})
    with DriveWriter(path, meta) as w:
        for i in range(frames):
            lat, lon, _ = frame.to_geodetic(3.0 * i, 0.0)
            stamp = T0_NS + i * 200_000_000
            w.add_image(stamp, rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
            w.add_gps(stamp, lat_deg=float(lat), lon_deg=float(lon), heading_deg=90.0, horizontal_std_m=0.1)
    return str(path)


def test_calibrate_stores_the_fit_and_evaluate_reports_per_condition(tmp_path, capsys):
    ckpt = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict(), anchor_spacing_m=20.0)
    val = _sim_like_drive(tmp_path / "val.mcap", hour=12.0, traffic="normal")
    day = _sim_like_drive(tmp_path / "day.mcap", hour=10.0, traffic="normal")
    dusk = _sim_like_drive(tmp_path / "dusk.mcap", hour=18.5, traffic="heavy")
    out = tmp_path / "cal.pt"
    assert cli(["calibrate", "posenet", "--model", ckpt, "--data", val, "-o", str(out), "--device", "cpu"]) == 0
    assert "temperature" in capsys.readouterr().out
    record = Checkpoint.load(out).meta["calibration"]["hypotheses"]
    assert record["fitted"] and record["fitted_on"] == [val] and record["frames"] == 12
    assert Checkpoint.load(out).model_id == Checkpoint.load(ckpt).model_id  # the weights are untouched
    assert PosePredictor(str(out), device="cpu").calibration.temperature == pytest.approx(record["temperature"])

    png = tmp_path / "rel.png"
    assert cli(["evaluate", "posenet", "--model", str(out), "--data", day, dusk, "--device", "cpu",
                "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "condition" in text and "dusk, heavy traffic" in text and "day " in text
    assert "more than 20 m off" in text and "top-5" in text and "ECE" in text
    assert any(v in text for v in ("too wide", "too narrow", "calibrated"))
    assert cv2.imread(str(png)) is not None
    assert cli(["evaluate", "posenet", "--model", str(out), "--data", day, dusk, "--device", "cpu", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("position_error_m_median", "within_95_ellipse", "position_error_over_20m", "topk_recall_10m",
                "top1_recall_5m", "hypothesis_weight_ece", "valid_fraction", "ellipse", "calibration"):
        assert key in r, key
    assert set(r["per_condition"]) == {"day", "dusk, heavy traffic"}
    assert r["per_condition"]["day"]["frames"] == 12 and r["calibration"]["fitted"]


def test_calibrating_on_a_training_drive_is_refused(tmp_path, capsys):
    path = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict())
    ckpt = Checkpoint.load(path)
    ckpt.meta["trained_on"] = [{"path": "/elsewhere/train.mcap@::3"}]
    ckpt.save(path)
    train = _sim_like_drive(tmp_path / "train.mcap", hour=12.0, traffic="normal")
    assert cli(["calibrate", "posenet", "--model", path, "--data", train, "-o", str(tmp_path / "x.pt"),
                "--device", "cpu"]) == 2
    assert "trained on train.mcap" in capsys.readouterr().out


def test_plot_needs_no_hypotheses_to_draw(tmp_path):
    plot_report({"frames": 0, "hypothesis_weight_reliability": []}, tmp_path / "empty.png")
    assert cv2.imread(str(tmp_path / "empty.png")).shape[2] == 3


def test_fusion_eval_feeds_the_filter_what_the_node_publishes(tmp_path):
    """benchmarks/fusion_eval.py's hypotheses are the predictor's (weights, covariances, order), in the
    drive's ENU; its raw row is the top-level fix."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "fusion_eval", Path(__file__).resolve().parents[2] / "benchmarks" / "fusion_eval.py")
    fusion_eval = importlib.util.module_from_spec(spec)
    sys.modules["fusion_eval"] = fusion_eval  # its dataclasses look their module up
    spec.loader.exec_module(fusion_eval)
    ckpt = save_tiny_posenet(tmp_path / "tiny.pt", origin=ORIGIN.to_dict(), anchor_spacing_m=20.0)
    images = [np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8) for i in range(4)]
    frame = LocalFrame(GeoOrigin(55.7001, 13.1899, 0.0))  # another origin than the checkpoint's
    hyps, summary = fusion_eval.posenet_hypotheses(images, frame, ckpt, 3)
    est = PosePredictor(ckpt, device="cpu", hypotheses=3).predict_bgr(images)
    for i in range(4):
        n = int(est.hypothesis_count()[i])
        assert len(hyps[i]) == n
        np.testing.assert_allclose([h.weight for h in hyps[i]], est.hyp_weight[i, :n])
        np.testing.assert_allclose(hyps[i][0].cov_enu_m2, est.hyp_cov_enu_m2[i, 0])
        e, nn, _ = frame.to_enu(est.lat_deg[i], est.lon_deg[i])
        assert (hyps[i][0].east_m, hyps[i][0].north_m) == pytest.approx((float(e), float(nn)), abs=1e-6)
        assert (summary[i].east_m, summary[i].north_m) == pytest.approx((float(e), float(nn)), abs=1e-6)
        np.testing.assert_allclose(summary[i].cov_enu_m2, est.cov_enu_m2[i])
    one, _ = fusion_eval.posenet_hypotheses(images, frame, ckpt, 1)
    assert all(len(h) == 1 and h[0].weight == 1.0 for h in one)
