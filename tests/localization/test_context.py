"""Scene context -> fix trust: the fit recovers a known relation, the model file round-trips and refuses a
bad one in one line, and the fusion node inflates a fix seen in a risky scene and says so in the pose (a
fix without context keeps trust 1, "no context")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from localization.context import (
    CHI2_2DOF_95,
    EULER_GAMMA,
    FEATURES,
    NO_CONTEXT,
    ContextModel,
    detection_features,
    fit_context,
    fit_ridge,
    score_context,
    segmentation_features,
)
from localization.filter import FilterParams, PoseFilter
from localization.measurements import POSENET, FixMeasurement, Hypothesis, check_measurement

SKY = FEATURES.index("seg_sky")
CARS = FEATURES.index("det_cars_count")


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames whose outlier odds rise with the sky share and whose inlier covariance is too small by a
    factor exp(1.5 * cars / 4) (a known relation)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, len(FEATURES)))
    x[:, CARS] = rng.integers(0, 8, n)
    p_out = 1 / (1 + np.exp(-(8.0 * (x[:, SKY] - 0.5))))
    outlier = rng.uniform(size=n) < p_out
    scale = np.exp(1.5 * x[:, CARS] / 4)
    mahal2 = rng.chisquare(2, n) * scale
    err_m = np.where(outlier, rng.uniform(30, 300, n), rng.uniform(0, 15, n))
    return x, err_m, mahal2


def test_fit_recovers_a_known_relation():
    x, err_m, mahal2 = synthetic(6000, 0)
    model = fit_context(x, err_m, mahal2, l2=0.1, scale_l2=10.0)
    coef = np.asarray(model.outlier_coef) / np.asarray(model.std)  # per raw unit
    assert coef[SKY] == pytest.approx(8.0, rel=0.15)
    others = np.delete(coef, SKY)
    assert np.all(np.abs(others) < 1.0)  # the features that do not matter get ~nothing
    scale_per_car = np.asarray(model.scale_coef)[CARS] / model.std[CARS]
    assert scale_per_car == pytest.approx(1.5 / 4, rel=0.15)
    # at 0 cars the covariance is right: the scale is ~1
    x0 = np.asarray(model.mean, float).copy()
    x0[CARS] = 0.0
    assert float(model.cov_scale(x0)) == pytest.approx(1.0, abs=0.15)
    # on other frames of the same relation: a useful outlier probability, and honest inlier ellipses
    check = score_context(model, *synthetic(3000, 1))
    assert check["auc"] > 0.85
    assert check["log_loss"] < check["log_loss_constant"]
    assert check["inlier_coverage_raw"] < 0.85 < check["inlier_coverage_scaled"]


def calibrated_posenet_like(n: int, seed: int, exact_share: float = 0.35):
    """Frames whose inlier ellipses are already right at 95 % (d^2 < 5.991 for 95 % of them) but whose d^2
    is not chi-square: a share of the fixes sit almost exactly on the truth (place recognition snapping to
    a surveyed place), the others are a little wider than chi-square. No feature says anything."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, len(FEATURES)))
    exact = rng.uniform(size=n) < exact_share
    k = CHI2_2DOF_95 / (-2 * np.log(1 - (0.95 - exact_share) / (1 - exact_share)))  # the rest: 92.3 % in
    mahal2 = np.where(exact, 1e-4 * rng.chisquare(2, n), k * rng.chisquare(2, n))
    return x, rng.uniform(0, 15, n), mahal2


def test_a_scale_fitted_on_calibrated_fixes_stays_near_1():
    """PoseNet's covariance is calibrated at 95 % on validation drives; the context scale must not undo it.
    Fitting the mean log(d^2/2) (model version 1) assumed chi-square d^2 and, dragged by the near-exact
    fixes, shrank every ellipse (the shipped one took the check drives' inlier coverage 95 % -> 83 %)."""
    x, err_m, mahal2 = calibrated_posenet_like(4000, 5)
    assert np.mean(mahal2 < CHI2_2DOF_95) == pytest.approx(0.95, abs=0.01)
    model = fit_context(x, err_m, mahal2)
    lo, mid, hi = np.percentile(model.cov_scale(x), [5, 50, 95])
    assert 0.8 < lo and abs(mid - 1.0) < 0.1 and hi < 1.25  # what is left is the noise of 21 features
    # the old fit on the same frames: a mean log ratio far below that of chi-square
    _, icpt = fit_ridge((x - x.mean(0)) / x.std(0), np.log(mahal2 / 2), l2=1.0)
    assert np.exp(icpt + EULER_GAMMA) < 0.5
    # on other frames of the same kind: still 95 % covered, and no worse a forecast
    check = score_context(model, *calibrated_posenet_like(4000, 6))
    assert check["inlier_coverage_raw"] == pytest.approx(0.95, abs=0.01)
    assert abs(check["inlier_coverage_scaled"] - 0.95) <= 0.015
    assert check["inlier_nll_change"] < 0.02


def test_the_scale_widens_too_narrow_ellipses_to_95_percent():
    """Ellipses too narrow by a factor 3 everywhere: the fit widens them until 95 % of the inliers on
    other frames are inside (coverage-matched), not until the median d^2 is chi-square's."""
    x, err_m, mahal2 = calibrated_posenet_like(4000, 7)
    model = fit_context(x, err_m, 3.0 * mahal2)
    assert float(np.median(model.cov_scale(x))) == pytest.approx(3.0, rel=0.15)
    x2, err2, m2 = calibrated_posenet_like(4000, 8)
    check = score_context(model, x2, err2, 3.0 * m2)
    assert check["inlier_coverage_raw"] < 0.85
    assert check["inlier_coverage_scaled"] == pytest.approx(0.95, abs=0.015)


def test_a_version_1_file_loads_with_the_same_scale(tmp_path):
    model = fit_context(*synthetic(1000, 9))
    raw = json.loads(model.to_json())
    raw["version"] = 1
    raw["scale_intercept"] = model.scale_intercept - EULER_GAMMA  # version 1 stored the mean log(d^2/2)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(raw))
    old = ContextModel.load(path)
    assert old.version == 2
    x = synthetic(20, 10)[0]
    np.testing.assert_allclose(old.cov_scale(x), model.cov_scale(x), rtol=1e-12)


def test_the_reason_names_the_feature_that_raised_the_doubt():
    model = fit_context(*synthetic(3000, 2), l2=0.1)
    risky = dict(zip(FEATURES, model.mean, strict=True)) | {"seg_sky": 0.95}
    calm = dict(zip(FEATURES, model.mean, strict=True)) | {"seg_sky": 0.05}
    a, b = model.assess(risky), model.assess(calm)
    assert a.trust < 0.2 < 0.8 < b.trust
    assert a.reason == "sky 0.95"
    assert a.inflation > b.inflation


def test_model_file_round_trip_and_one_line_refusals(tmp_path):
    model = fit_context(*synthetic(500, 3))
    path = tmp_path / "context.json"
    model.save(path)
    again = ContextModel.load(path)
    assert again.assess({"seg_sky": 0.7}) == model.assess({"seg_sky": 0.7})
    raw = json.loads(path.read_text())
    raw["version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"context model .*context.json: version 99"):
        ContextModel.load(path)
    raw["version"] = 1
    raw["outlier_coef"] = raw["outlier_coef"][:-1]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="outlier_coef must be"):
        ContextModel.load(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="context model"):
        ContextModel.load(path)


def test_features_from_the_messages_fields():
    seg = segmentation_features(["sky", "building", "car"], [0.5, 0.3, 0.2])
    assert seg["seg_sky"] == 0.5 and seg["seg_car"] == 0.2 and seg["seg_road"] == 0.0
    det = detection_features(
        ["sky", "car", "pedestrian"],
        np.array([1, 1, 2]),
        np.array([[0, 0, 10, 10], [0, 0, 20, 10], [5, 5, 6, 7]], float),
        100,
        100,
    )
    assert det["det_cars_count"] == 2 and det["det_cars_area"] == pytest.approx(0.03)
    assert det["det_people_count"] == 1 and det["det_signs_count"] == 0


def test_noise_scale_hook_widens_the_fix_and_is_checked():
    fix = [Hypothesis(0.0, 0.0, None, np.eye(2) * 4.0, 180.0, 1.0)]
    assert check_measurement(POSENET, FixMeasurement(fix, noise_scale=float("nan"))) is not None
    f = PoseFilter(FilterParams(fix_cov_scale=1.0))
    assert [h.cov_enu_m2[0, 0] for h in f._hypotheses(FixMeasurement(fix, noise_scale=3.0))] == [12.0]


# ------------------------------------------------------------------------------------------ the fusion node
def _node_and_model(tmp_path):
    from nodes.fusion import FusionNode, FusionParams

    model = fit_context(*synthetic(3000, 4), l2=0.1)
    path = tmp_path / "context.json"
    model.save(path)
    node = FusionNode(FusionParams(context=str(path), use_odometry=False, tick_hz=0.0))
    return node


def _messages(stamp_ns: int, north_m: float, sky: float):
    from localization.geodesy import GeoOrigin, LocalFrame
    from nodes.bus.messages import Detections, GeoFix, Header, Segmentation

    frame = LocalFrame(GeoOrigin())
    lat, lon, _ = frame.to_geodetic(0.0, north_m)
    names = ["sky", "building", "road", "car"]
    seg = Segmentation(Header(stamp_ns), np.zeros((4, 4), np.uint8), names, [sky, 1 - sky, 0.0, 0.0])
    det = Detections(
        Header(stamp_ns),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int32),
        np.zeros(0, np.float32),
        names,
        320,
        240,
    )
    fix = GeoFix(
        Header(stamp_ns),
        float(lat),
        float(lon),
        heading_deg=0.0,
        cov_enu_m2=(9.0, 0.0, 0.0, 9.0),
        heading_std_deg=10.0,
    )
    return seg, det, fix


def test_fusion_inflates_a_fix_seen_in_a_risky_scene(tmp_path):
    from perception.drives.topics import DETECTIONS_TOPIC, POSENET_TOPIC, SEGMENTATION_TOPIC

    node = _node_and_model(tmp_path)
    assert list(node.subscribes)[:2] == [SEGMENTATION_TOPIC, DETECTIONS_TOPIC]  # a frame's context first
    scales = []
    handle = node.filter.handle
    node.filter.handle = lambda kind, stamp, m: (scales.append(m.noise_scale), handle(kind, stamp, m))[1]
    poses = []
    for k, sky in enumerate([0.05, 0.05, 0.95]):
        seg, det, fix = _messages(1_000_000_000 * (k + 1), 8.0 * k, sky)
        node.on_message(SEGMENTATION_TOPIC, seg, 0)
        node.on_message(DETECTIONS_TOPIC, det, 0)
        poses += [p for _, p in node.on_message(POSENET_TOPIC, fix, 0)]
    assert scales[2] > 4 * scales[0]
    assert poses[-1].fix_trust < 0.2 and poses[-1].fix_trust_reason == "sky 0.95"
    assert poses[0].fix_trust > 0.8


def test_a_fix_without_context_keeps_trust_1(tmp_path):
    from perception.drives.topics import POSENET_TOPIC

    node = _node_and_model(tmp_path)
    _, _, fix = _messages(1_000_000_000, 0.0, 0.9)
    poses = [p for _, p in node.on_message(POSENET_TOPIC, fix, 0)]
    assert poses and poses[0].fix_trust == 1.0 and poses[0].fix_trust_reason == NO_CONTEXT
    assert node.context is not None and node.context.missing == 1


def test_fusion_refuses_a_bad_model_file_in_one_line(tmp_path):
    from nodes.fusion import FusionNode, FusionParams

    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(ValueError, match=r"^context model .*bad.json: version 'list'"):
        FusionNode(FusionParams(context=str(bad)))


def test_trust_survives_a_recording_and_eval_plot_marks_the_fixes(tmp_path):
    """A run's per-fix poses keep fix_trust/fix_trust_reason through the drive format; `eval --plot`'s
    marks find the gated and the doubted fixes."""
    from localization.geodesy import GeoOrigin, LocalFrame
    from nodes.bus.messages import GeoFix, Header, Pose
    from nodes.commands.eval_plot import fix_marks
    from perception.drives import DriveMetadata, DriveReader, DriveWriter
    from perception.drives.topics import POSE_TOPIC, POSENET_TOPIC

    frame = LocalFrame(GeoOrigin())
    run = tmp_path / "run.mcap"
    with DriveWriter(str(run), DriveMetadata(source="test", geo_origin=GeoOrigin())) as w:
        for k, (trust, reason, gated) in enumerate(
            [(0.9, "ordinary view", False), (0.2, "sky 0.81", False), (0.3, "cars 4", True), (1.0, "", False)]
        ):
            lat, lon, _ = frame.to_geodetic(0.0, 10.0 * k)
            stamp = 1_000_000_000 * (k + 1)
            w.write(
                POSENET_TOPIC, GeoFix(Header(stamp), float(lat), float(lon), cov_enu_m2=(4.0, 0.0, 0.0, 4.0))
            )
            w.write(
                POSE_TOPIC,
                Pose(
                    Header(stamp),
                    float(lat),
                    float(lon),
                    fix_trust=trust,
                    fix_trust_reason=reason,
                    inputs_gated=[POSENET_TOPIC] if gated else [],
                ),
            )
    with DriveReader(run) as r:
        poses = list(r.fixes(POSE_TOPIC))
    assert [(p.fix_trust, p.fix_trust_reason) for p in poses] == [
        (0.9, "ordinary view"),
        (0.2, "sky 0.81"),
        (0.3, "cars 4"),
        (1.0, ""),
    ]
    assert fix_marks(str(run)) == {"gated": {3_000_000_000}, "low_trust": {2_000_000_000, 3_000_000_000}}
