"""PoseNet's figures against a drive's ground truth (``streetloc evaluate posenet``).

Position error in metres (median, mean, 95th percentile, max), heading error in degrees, and whether
the uncertainty is honest: the share of frames whose true position lies inside the predicted 95%
ellipse (should be near 0.95: much lower means over-confident fixes that a filter would trust too much;
much higher means fixes it would underuse) and the same for the heading's 95% interval.

Hypotheses (the mixture a filter reads, `perception.models.posenet.predictor`): top-1 and top-k recall
(truth within 5 / 10 m of the best / of some hypothesis), and whether the weights are probabilities:
a hypothesis is *right* when it is the one nearest the truth and within the calibration radius (10 m);
the reliability table bins the weights and compares each bin's mean weight with its share of right
hypotheses (expected calibration error, ECE: the frame-weighted mean gap). The right hypothesis' 95 %
ellipse should hold the truth 95 % of the time. Coverages are called "too narrow" below 90 %, "too
wide" above 98 %, "calibrated" between.

Drives that carry their conditions in the metadata (`streetloc sim`: time of day, traffic, sky, camera
noise, city) are also reported per condition.

`fit_hypothesis_calibration` (``streetloc calibrate posenet``) fits the hypotheses' softmax temperature
and covariance scale on validation drives and stores them in the checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from localization.metrics import (  # noqa: F401 - the figures live with the other accuracy metrics (numpy only)
    CHI2_1DOF_95,
    CHI2_2DOF_95,
    COVERAGE_NARROW,
    COVERAGE_WIDE,
    FAR_M,
    RECALL_RADII_M,
    RELIABILITY_BINS,
    PoseErrors,
    calibrate_scales,
    coverage_verdict,
    hypothesis_figures,
    merge_pose_errors,
    pose_errors,
    reliability,
    summarize_pose_errors,
    summary_stats,
)
from perception.datasets import DriveSpec
from perception.evaluation import DriveScore, EvalConfig, evaluate_drives, record_metrics
from perception.models.posenet.data import load_pose_frames
from perception.models.posenet.places import PlaceConfig, PlaceRecognizer, fit_place_calibration, fit_places
from perception.models.posenet.predictor import (
    ASPECT_TOLERANCE,
    HypothesisCalibration,
    PosePredictor,
    cropped_hfov_deg,
    raw_to_estimates,
    with_places,
)
from perception.models.posenet.validity import FrameValidity, OutOfAreaError, drives_outside_area


def drive_condition(extra: dict[str, Any]) -> str:
    """A drive's conditions from its metadata (``streetloc sim`` writes them), e.g. "dusk, heavy traffic";
    "" when the drive does not say."""
    if "time_of_day_h" not in extra:
        return ""
    h = float(extra["time_of_day_h"]) % 24.0
    words = ["day" if 7.0 <= h < 17.0 else "dusk" if 5.0 <= h < 20.0 else "night"]
    if extra.get("traffic", "normal") != "normal":
        words.append(f"{extra['traffic']} traffic")
    if extra.get("camera_noise"):
        words.append("noise")
    if extra.get("motion_blur"):
        words.append("blur")
    if int(extra.get("city_seed", 0)) != 0:
        words.append(f"city seed {extra['city_seed']}")
    return ", ".join(words)


def geometry_note(camera: Any, size_px: tuple[int, int], model_hfov_deg: float | None) -> str:
    """What `fit_to_input` does to a drive's frames, when it crops: e.g. "426x240 frames centre-cropped
    to the model's 4:3 aspect; the view keeps 55 deg across, the model's camera 70 deg"; "" otherwise."""
    if camera is None or not camera.width_px or not camera.height_px:
        return ""
    w, h = size_px
    if abs(camera.width_px / camera.height_px - w / h) <= ASPECT_TOLERANCE * w / h:
        return ""
    g = math.gcd(w, h)
    note = f"{camera.width_px}x{camera.height_px} frames centre-cropped to the model's {w // g}:{h // g} aspect"
    hfov = cropped_hfov_deg(camera.width_px, camera.height_px, camera.fx_px, size_px)
    if model_hfov_deg is not None and abs(hfov - model_hfov_deg) > 0.1 * model_hfov_deg:
        note += f"; the view keeps {hfov:.0f} deg across, the model's camera {model_hfov_deg:.0f} deg (a zoom)"
    return note


class PoseScorer:
    """PoseNet's `perception.evaluation.Scorer`: per-frame errors of a checkpoint on each drive (kept in
    ``scored``, with each drive's condition, for the per-condition tables)."""

    model = "posenet"

    def __init__(self, predictor: PosePredictor, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.predictor = predictor
        self.model_id = predictor.model_id
        self.device = predictor.device
        self.cache_dir = cache_dir
        self.radius_m = predictor.calibration.radius_m
        self.scored: list[tuple[str, PoseErrors]] = []
        self.geometry: list[str] = []  # per drive whose frames are cropped: what the model sees
        self._warm = False
        self.flags: dict[str, int] = {"frames": 0, "flagged": 0}  # validity flags, per reason (validity.py)

    def score_drive(self, spec: DriveSpec) -> DriveScore[PoseErrors]:
        from perception.drives import DriveReader

        p = self.predictor
        frames = load_pose_frames([spec], size_px=p.input_size_px, frame=p.frame, cache_dir=self.cache_dir)
        with DriveReader(spec.path) as reader:
            condition = drive_condition(reader.metadata.extra)
            geometry = geometry_note(reader.metadata.camera, p.input_size_px, p.camera_hfov_deg)
        if not self._warm:
            p.predict_raw(frames.images[:1])  # warm-up (lazy init, allocator): not part of the rate
            self._warm = True
        t0 = time.perf_counter()
        est = p.predict(frames.images)
        infer_s = time.perf_counter() - t0
        errors = pose_errors(est, frames.east_m, frames.north_m, frames.heading_deg)
        extra = {"source": frames.drives[0]["source"], "skipped": frames.skipped}
        if condition:
            extra["condition"] = condition
        if geometry:
            extra["geometry"] = geometry
        validity = FrameValidity(p)  # a new stream per drive
        assessed = validity.assess(frames.images, stamps_ns=frames.stamp_ns)
        flagged = sum(bool(r) for r in assessed)
        # the node publishes a frame the validity checks flag as not valid (out of area, black ...): so does
        # "valid (not flagged)" here
        newly_flagged = np.array([bool(r) for r in assessed], bool) & errors.valid
        errors.reason = np.asarray(errors.reason, object)
        errors.reason[newly_flagged] = [",".join(r) for r, m in zip(assessed, newly_flagged, strict=True) if m]
        errors.valid = errors.valid & ~newly_flagged
        extra["flagged"] = flagged / max(len(frames), 1)
        # accumulated by keep() (under torchrun another process may have scored this drive)
        kept = {"condition": condition, "geometry": f"{spec.path.name}: {geometry}" if geometry else "",
                "flags": {"frames": len(frames), "flagged": flagged, **validity.counts}}
        return DriveScore(errors, len(frames), infer_s, extra, kept)

    def keep(self, spec: DriveSpec, score: DriveScore[PoseErrors]) -> None:
        """Accumulate a scored drive's condition, crop note and validity counts (drive order)."""
        self.scored.append((score.kept["condition"], score.partial))
        if score.kept["geometry"]:
            self.geometry.append(score.kept["geometry"])
        for key, n in score.kept["flags"].items():
            self.flags[key] = self.flags.get(key, 0) + n

    def merge(self, partials: list[PoseErrors]) -> PoseErrors:
        return merge_pose_errors(partials)

    def summarize(self, partial: PoseErrors) -> dict[str, Any]:
        return summarize_pose_errors(partial, radius_m=self.radius_m)

    def per_condition(self) -> dict[str, dict[str, Any]]:
        """Figures per drive condition (drives without conditions left out)."""
        groups: dict[str, list[PoseErrors]] = {}
        for condition, errors in self.scored:
            if condition:
                groups.setdefault(condition, []).append(errors)
        return {c: {**self.summarize(self.merge(parts)), "drives": len(parts)} for c, parts in groups.items()}


def evaluate(checkpoint: str | os.PathLike | None, drives: Sequence[str | DriveSpec], *,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             cache_dir: str | os.PathLike | None = EvalConfig.cache_dir,
             record: bool = EvalConfig.record, hypotheses: int = 5,
             allow_out_of_area: bool = False, places: bool = True) -> dict[str, Any]:
    """Score a PoseNet checkpoint (file, weights name, None: the default) on drives (each ``PATH`` or
    ``PATH@START:STOP:STEP``), with its top-``hypotheses`` modes.

    Returns `perception.evaluation.evaluate_drives`'s report with the figures of `summarize_pose_errors`,
    ``per_condition`` (condition -> figures) when the drives carry conditions, and ``calibration`` (the
    checkpoint's hypothesis calibration; ``places``: the place index's figures when it is used, which
    ``places=False`` turns off to score the regression alone). With ``record`` the figures are written into the checkpoint
    file's ``meta.metrics`` under ``"eval:<drive>"`` (its measured accuracy). A drive whose GPS lies outside
    the model's training area raises `OutOfAreaError` unless ``allow_out_of_area`` (then
    ``result["out_of_area"]`` says so); the validity flags are in ``result["flag_rates"]`` (share of frames,
    per reason).
    """
    predictor = PosePredictor(None if checkpoint is None else str(checkpoint), device=device, max_batch=batch_size,
                              hypotheses=hypotheses, places=places)
    outside = drives_outside_area(predictor, [str(d) for d in drives])
    if outside and not allow_out_of_area:
        raise OutOfAreaError(f"{outside[0]}; its errors would measure the distance, not the model "
                             "(--allow-out-of-area to score it anyway)")
    scorer = PoseScorer(predictor, cache_dir=cache_dir)
    result = evaluate_drives(scorer, drives, checkpoint=checkpoint)
    result["out_of_area"] = outside
    n = max(scorer.flags["frames"], 1)
    result["flag_rates"] = {k: v / n for k, v in scorer.flags.items() if k != "frames"}
    per_condition = scorer.per_condition()
    if per_condition:
        result["per_condition"] = per_condition
    if scorer.geometry:
        result["geometry"] = scorer.geometry
    result["calibration"] = asdict(predictor.calibration)
    if predictor.places is not None:
        result["places"] = {**asdict(predictor.places.config), "bank_frames": len(predictor.places.bank)}
    if record:
        record_metrics("posenet", checkpoint, result)
    return result


# ------------------------------------------------------------------------------- hypothesis calibration

TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))


def _log_loss(weight: np.ndarray, right: np.ndarray) -> float:
    w = np.clip(weight, 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(right, np.log(w), np.log1p(-w))))


def fit_hypothesis_calibration(predictor: PosePredictor, drives: Sequence[str | DriveSpec], *, k: int = 5,
                               radius_m: float = HypothesisCalibration.radius_m,
                               merge_m: float = HypothesisCalibration.merge_m,
                               cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fit the hypotheses' softmax temperature (least log-loss of "this hypothesis is the right one")
    and covariance scale (95 % of right hypotheses' truths inside their 95 % ellipse) on ``drives``.

    Returns the ``meta.calibration.hypotheses`` record: the `HypothesisCalibration` fields, ``fitted_on``
    (the drives), ``frames``, and the figures before/after (ECE, coverage) on these drives.
    """
    frames = load_pose_frames(drives, size_px=predictor.input_size_px, frame=predictor.frame, cache_dir=cache_dir)
    raw = predictor.predict_raw(frames.images)
    base = replace(HypothesisCalibration(), radius_m=float(radius_m), merge_m=float(merge_m), fitted=True)

    def errors(cal: HypothesisCalibration) -> PoseErrors:
        p = predictor
        est = raw_to_estimates(raw, p.anchors, p.offset_scale, frame=p.frame, center_enu_m=p.center_enu_m,
                               scale_m=p.scale_m, cov_scale=p.cov_scale, heading_var_scale=p.heading_var_scale,
                               hypotheses=k, calibration=cal)
        return pose_errors(est, frames.east_m, frames.north_m, frames.heading_deg)

    def loss(e: PoseErrors) -> float:
        present = np.isfinite(e.hyp_distance_m)
        return _log_loss(e.hyp_weight[present], e.right_hypothesis(radius_m)[present])

    before = errors(base)
    losses = [loss(errors(replace(base, temperature=float(t)))) for t in TEMPERATURES]
    temperature = float(TEMPERATURES[int(np.argmin(losses))])
    fitted = errors(replace(base, temperature=temperature))
    m2 = fitted.hyp_mahalanobis2[fitted.right_hypothesis(radius_m)]
    # both ways: these drives are validation drives no weight was trained on, so shrinking is as
    # justified as widening
    cov_scale = float(np.percentile(m2, 95) / CHI2_2DOF_95) if m2.size >= 20 else 1.0
    cal = replace(base, temperature=temperature, cov_scale=cov_scale)
    after = errors(cal)
    fb, fa = hypothesis_figures(before, radius_m=radius_m), hypothesis_figures(after, radius_m=radius_m)
    return {**asdict(cal), "fitted_on": [str(d) for d in drives], "frames": int(len(frames)), "k": int(k),
            "before": {key: fb[key] for key in ("hypothesis_weight_ece", "right_hypothesis_within_95_ellipse")},
            "after": {key: fa[key] for key in ("hypothesis_weight_ece", "right_hypothesis_within_95_ellipse")}}


def calibrate(checkpoint: str | os.PathLike | None, drives: Sequence[str | DriveSpec], output: str | os.PathLike,
              *, k: int = 5, radius_m: float = HypothesisCalibration.radius_m,
              merge_m: float = HypothesisCalibration.merge_m, device: str = "auto",
              cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fit the hypothesis calibration of ``checkpoint`` on validation ``drives`` and write the checkpoint
    with it (``meta.calibration.hypotheses``) to ``output`` (may be the same file). ValueError when a
    drive is one the checkpoint was trained on: calibration on training views flatters the model."""
    predictor = PosePredictor(None if checkpoint is None else str(checkpoint), device=device, hypotheses=k)
    ckpt = predictor.checkpoint
    trained = {Path(str(d.get("path", "")).split("@")[0]).name for d in ckpt.meta.get("trained_on", [])}
    for d in drives:
        name = Path(str(d).split("@")[0]).name
        if name in trained:
            raise ValueError(f"drive {d}: the checkpoint was trained on {name}; calibrate on validation drives")
    record = fit_hypothesis_calibration(predictor, drives, k=k, radius_m=radius_m, merge_m=merge_m,
                                        cache_dir=cache_dir)
    calib = dict(ckpt.meta.get("calibration", {}))
    calib["hypotheses"] = record
    ckpt.meta["calibration"] = calib
    ckpt.save(output)
    return record


def index_places(checkpoint: str | os.PathLike | None, bank_drives: Sequence[str | DriveSpec],
                 drives: Sequence[str | DriveSpec], output: str | os.PathLike, *, k: int = 5,
                 config: PlaceConfig | None = None, device: str = "auto",
                 cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Give ``checkpoint`` a place index (`places`): the frames of ``bank_drives`` (the training drives:
    the views it has seen) with their poses, its weights and temperature fitted on validation ``drives``
    (never a bank drive), written to ``output`` (``meta["places"]``). Returns the record without the
    tensors, with the place hypotheses' figures on the validation drives before/after calibration."""
    predictor = PosePredictor(None if checkpoint is None else str(checkpoint), device=device, hypotheses=k,
                              places=False)
    bank_names = {Path(str(d).split("@")[0]).name for d in bank_drives}
    for d in drives:
        if Path(str(d).split("@")[0]).name in bank_names:
            raise ValueError(f"drive {d}: it is in the place index; calibrate on other drives")
    size = predictor.input_size_px
    bank = load_pose_frames(bank_drives, size_px=size, frame=predictor.frame, cache_dir=cache_dir)
    meta = fit_places(bank.images, bank.east_m, bank.north_m, bank.heading_deg, config=config,
                      sources=[str(d) for d in bank_drives])
    del bank
    val = load_pose_frames(drives, size_px=size, frame=predictor.frame, cache_dir=cache_dir)
    recognizer = PlaceRecognizer(meta)

    regression = predictor.estimates(predictor.predict_raw(val.images))  # the network runs once
    neighbours = recognizer.neighbours(val.images)  # and the search: calibration changes only the figures

    def figures(rec: PlaceRecognizer) -> dict[str, Any]:
        est = with_places(regression, rec.from_neighbours(*neighbours, k=k), predictor.frame)
        f = hypothesis_figures(pose_errors(est, val.east_m, val.north_m, val.heading_deg),
                               radius_m=rec.config.radius_m)
        return {key: f[key] for key in ("hypothesis_weight_ece", "right_hypothesis_within_95_ellipse",
                                        "topk_recall_10m")}

    before = figures(recognizer)
    fit = fit_place_calibration(recognizer, val.images, val.east_m, val.north_m, val.heading_deg, k=k)
    meta["config"] = fit["config"]
    after = figures(PlaceRecognizer(meta))
    meta["calibration"] = {"fitted_on": [str(d) for d in drives], "frames": fit["frames"],
                           "before": before, "after": after}
    ckpt = predictor.checkpoint
    ckpt.meta["places"] = meta
    # the fixes' ``source`` must tell an indexed model from the bare one (same weights, other answers)
    digest = hashlib.sha1(meta["bits"].numpy().tobytes() + meta["east_m"].numpy().tobytes()).hexdigest()[:8]
    ckpt.model_id = f"{ckpt.model_id.split('+')[0]}+places-{digest}"
    ckpt.save(output)
    return {key: v for key, v in meta.items() if not isinstance(v, torch.Tensor)}


def _fmt(v: Any, fmt: str = "{:.2f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def _condition_table(rows: dict[str, dict[str, Any]], title: str) -> list[str]:
    """One line per drive or condition: the figures a reader compares across conditions."""
    k = next((d.get("hypotheses_k", 0) for d in rows.values()), 0)
    head = (f"{title:<28} {'frames':>6} {'median':>7} {'p95':>7} {'>20 m':>6} {'in 95%':>7} {'ellipse':>11} "
            f"{'top1@5':>6} {'top' + str(k) + '@10':>7} {'ECE':>5} {'valid':>6}")
    lines = [head]

    def label(name: str) -> str:  # a drive by its file name (the table's width is for the figures)
        return (Path(name.split("@")[0]).name if title == "drive" else name)[-28:]

    for name, d in rows.items():
        lines.append(
            f"{label(name):<28} {d['frames']:>6} {_fmt(d.get('position_error_m_median')):>7} "
            f"{_fmt(d.get('position_error_m_p95'), '{:.1f}'):>7} {_fmt(d.get('position_error_over_20m'), '{:.0%}'):>6} "
            f"{_fmt(d.get('within_95_ellipse'), '{:.1%}'):>7} {d.get('ellipse', '-'):>11} "
            f"{_fmt(d.get('top1_recall_5m'), '{:.0%}'):>6} {_fmt(d.get('topk_recall_10m'), '{:.0%}'):>7} "
            f"{_fmt(d.get('hypothesis_weight_ece'), '{:.3f}'):>5} {_fmt(d.get('valid_fraction'), '{:.0%}'):>6}")
    return lines


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s result."""
    def f(key: str, fmt: str = "{:.2f}") -> str:
        return _fmt(r.get(key), fmt)

    k = r.get("hypotheses_k", 0)
    cal = r.get("calibration", {})
    lines = [
        *r.get("out_of_area", []),
        f"PoseNet {r['model_id']} on {', '.join(r['drives'])}: {r['frames']} frames",
        "                       median     mean      p95      max",
        f"position error (m)   {f('position_error_m_median'):>8} {f('position_error_m_mean'):>8} "
        f"{f('position_error_m_p95'):>8} {f('position_error_m_max'):>8}",
        f"heading error (deg)  {f('heading_error_deg_median'):>8} {f('heading_error_deg_mean'):>8} "
        f"{f('heading_error_deg_p95'):>8} {f('heading_error_deg_max'):>8}",
        f"more than 20 m off: {f('position_error_over_20m', '{:.1%}')}; valid (not flagged): "
        f"{f('valid_fraction', '{:.1%}')}"
        + (f" (flagged: {', '.join(f'{w} {n}' for w, n in r['flag_reasons'].items())})" if r.get("flag_reasons") else ""),
        f"truth inside predicted 95% ellipse: {f('within_95_ellipse', '{:.1%}')} ({r.get('ellipse', '-')}); "
        f"heading inside 95% interval: {f('heading_within_95', '{:.1%}')} "
        f"({coverage_verdict(r.get('heading_within_95') if r.get('heading_within_95') is not None else math.nan)})",
        f"median predicted 1-sigma: {f('predicted_std_m_median')} m; "
        f"{f('images_per_s', '{:.0f}')} images/s on {r.get('device', '?')}",
    ]
    if r.get("flag_rates"):
        lines.append("flagged invalid: " + ", ".join(f"{k} {v:.1%}" for k, v in r["flag_rates"].items()))
    if k:
        lines += [
            f"hypotheses (top {k}, merged within {_fmt(cal.get('merge_m'), '{:g}')} m; "
            f"{'calibrated' if cal.get('fitted') else 'NOT calibrated: streetloc calibrate posenet'}):",
            f"  recall within 5 m: top-1 {f('top1_recall_5m', '{:.1%}')}, top-{k} {f('topk_recall_5m', '{:.1%}')}; "
            f"within 10 m: top-1 {f('top1_recall_10m', '{:.1%}')}, top-{k} {f('topk_recall_10m', '{:.1%}')}",
            f"  weights as P(nearest and within {f('hypothesis_radius_m', '{:g}')} m): ECE "
            f"{f('hypothesis_weight_ece', '{:.3f}')}; right hypothesis' 95% ellipse holds the truth "
            f"{f('right_hypothesis_within_95_ellipse', '{:.1%}')} ({r.get('right_hypothesis_ellipse', '-')}, "
            f"{r.get('frames_with_right_hypothesis', 0)} frames)",
            "  reliability: " + "  ".join(
                f"[{b['lo']:.1f},{b['hi']:.1f}) {_fmt(b['mean_weight'])}->{_fmt(b['fraction_right'])} n={b['count']}"
                for b in r.get("hypothesis_weight_reliability", []) if b["count"]),
        ]
    lines += [f"input geometry: {g}" for g in r.get("geometry", [])]
    if r.get("per_condition"):
        lines += ["", *_condition_table(r["per_condition"], "condition")]
    if r.get("per_drive"):
        lines += ["", *_condition_table(r["per_drive"], "drive")]
    return "\n".join(lines)


def plot_report(r: dict[str, Any], path: str | os.PathLike) -> None:
    """The hypothesis weights' reliability diagram of `evaluate`'s result as a PNG: per bin the share of
    right hypotheses against the mean weight (the diagonal is perfect calibration), bar shade by count."""
    import cv2

    size, pad = 480, 60
    img = np.full((size + 2 * pad, size + 2 * pad, 3), 255, np.uint8)

    def xy(w: float, a: float) -> tuple[int, int]:
        return int(pad + w * size), int(pad + (1.0 - a) * size)

    table = r.get("hypothesis_weight_reliability", [])
    total = max(1, sum(b["count"] for b in table))
    for b in table:
        if not b["count"]:
            continue
        shade = int(230 - 180 * min(1.0, 5 * b["count"] / total))
        cv2.rectangle(img, xy(b["lo"], b["fraction_right"]), xy(b["hi"], 0.0), (shade, shade, 255), -1)
        cv2.rectangle(img, xy(b["lo"], b["fraction_right"]), xy(b["hi"], 0.0), (0, 0, 160), 1)
        cv2.circle(img, xy(b["mean_weight"], b["fraction_right"]), 4, (0, 0, 0), -1)
    cv2.line(img, xy(0, 0), xy(1, 1), (120, 120, 120), 1, cv2.LINE_AA)
    cv2.rectangle(img, xy(0, 1), xy(1, 0), (0, 0, 0), 1)
    for t in np.linspace(0, 1, 6):
        cv2.putText(img, f"{t:.1f}", (xy(t, 0)[0] - 12, pad + size + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{t:.1f}", (pad - 35, xy(0, t)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cal = "calibrated" if r.get("calibration", {}).get("fitted") else "uncalibrated"
    title = f"hypothesis weights ({cal}): ECE {_fmt(r.get('hypothesis_weight_ece'), '{:.3f}')}, {r['frames']} frames"
    cv2.putText(img, title, (pad, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "weight", (pad + size // 2 - 20, pad + size + 45), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "share right", (5, pad - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the PNG")
