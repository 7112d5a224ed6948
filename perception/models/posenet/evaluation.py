"""PoseNet's figures against a drive's ground truth (``streetloc evaluate posenet``).

Position error in metres (median, mean, 95th percentile, max), heading error in degrees, and whether
the uncertainty is honest: the share of frames whose true position lies inside the predicted 95%
ellipse (should be near 0.95: much lower means over-confident fixes that a filter would trust too much;
much higher means fixes it would underuse) and the same for the heading's 95% interval.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localization.geodesy import heading_difference_deg
from perception.datasets import DriveSpec
from perception.evaluation import DriveScore, EvalConfig, evaluate_drives, record_metrics, summary_stats
from perception.models.posenet.data import load_pose_frames
from perception.models.posenet.predictor import PoseEstimates, PosePredictor
from perception.models.posenet.validity import FrameValidity, OutOfAreaError, drives_outside_area

CHI2_2DOF_95 = 5.991464547107979  # 95% quantile of chi-square, 2 dof: the 95% ellipse
CHI2_1DOF_95 = 3.841458820694124


@dataclass
class PoseErrors:
    """Per-frame errors of N predictions.

    Attributes:
        position_error_m: float [N], horizontal distance prediction-truth.
        error_enu_m: float [N, 2], truth - prediction (east, north).
        mahalanobis2: float [N], squared Mahalanobis distance of the truth under the predicted covariance.
        heading_error_deg: float [N], |predicted - true| wrapped to [0, 180]; NaN where truth is unknown.
        heading_z2: float [N], (heading error / predicted std)^2; NaN where truth is unknown.
        horizontal_std_m: float [N], sqrt of the mean of the predicted east and north variances.
    """

    position_error_m: np.ndarray
    error_enu_m: np.ndarray
    mahalanobis2: np.ndarray
    heading_error_deg: np.ndarray
    heading_z2: np.ndarray
    horizontal_std_m: np.ndarray


def pose_errors(est: PoseEstimates, east_m: np.ndarray, north_m: np.ndarray, heading_deg: np.ndarray) -> PoseErrors:
    """Errors of ``est`` against the truth (ENU metres of the same frame [N], heading in degrees or NaN [N])."""
    err = np.stack([np.asarray(east_m) - est.east_m, np.asarray(north_m) - est.north_m], axis=1)
    cov = np.asarray(est.cov_enu_m2, dtype=np.float64)
    # d^2 = e' S^-1 e, solved rather than inverted (S can be thin along a street)
    sol = np.linalg.solve(cov, err[:, :, None])[:, :, 0]
    m2 = np.einsum("ni,ni->n", err, sol)
    dh = np.abs(heading_difference_deg(est.heading_deg, heading_deg))
    z2 = (dh / np.maximum(est.heading_std_deg, 1e-6)) ** 2
    hstd = np.sqrt(np.maximum(0.0, (cov[:, 0, 0] + cov[:, 1, 1]) / 2.0))
    return PoseErrors(np.hypot(err[:, 0], err[:, 1]), err, m2, dh, z2, hstd)


def merge_pose_errors(parts: Sequence[PoseErrors]) -> PoseErrors:
    return PoseErrors(*(np.concatenate([getattr(e, f) for e in parts]) for f in PoseErrors.__dataclass_fields__))


def summarize_pose_errors(e: PoseErrors) -> dict[str, Any]:
    """The figures ``streetloc evaluate posenet`` prints (flat, JSON-ready)."""
    out: dict[str, Any] = {"frames": int(len(e.position_error_m))}
    out.update(summary_stats(e.position_error_m, name="position_error", unit="m"))
    out.update(summary_stats(e.heading_error_deg, name="heading_error", unit="deg"))
    out["within_95_ellipse"] = float(np.mean(e.mahalanobis2 <= CHI2_2DOF_95)) if len(e.mahalanobis2) else float("nan")
    hz = e.heading_z2[np.isfinite(e.heading_z2)]
    out["heading_within_95"] = float(np.mean(hz <= CHI2_1DOF_95)) if hz.size else float("nan")
    out["frames_with_heading"] = int(hz.size)
    out["predicted_std_m_median"] = float(np.median(e.horizontal_std_m)) if len(e.horizontal_std_m) else float("nan")
    return out


def calibrate_scales(e: PoseErrors, *, min_scale: float = 1.0) -> dict[str, float]:
    """Covariance inflation factors that put 95% of these frames inside the 95% ellipse / interval.

    Never below ``min_scale`` (1): calibration data from the training route flatters the model, so a
    covariance is only ever widened on its evidence, never shrunk.
    """
    out = {"position_cov_scale": 1.0, "heading_var_scale": 1.0}
    if len(e.mahalanobis2):
        out["position_cov_scale"] = float(max(min_scale, np.percentile(e.mahalanobis2, 95) / CHI2_2DOF_95))
    hz = e.heading_z2[np.isfinite(e.heading_z2)]
    if hz.size:
        out["heading_var_scale"] = float(max(min_scale, np.percentile(hz, 95) / CHI2_1DOF_95))
    return out



class PoseScorer:
    """PoseNet's `perception.evaluation.Scorer`: per-frame errors of a checkpoint on each drive."""

    model = "posenet"

    def __init__(self, predictor: PosePredictor, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.predictor = predictor
        self.model_id = predictor.model_id
        self.device = predictor.device
        self.cache_dir = cache_dir
        self._warm = False
        self.flags: dict[str, int] = {"frames": 0, "flagged": 0}  # validity flags, per reason (validity.py)

    def score_drive(self, spec: DriveSpec) -> DriveScore[PoseErrors]:
        p = self.predictor
        frames = load_pose_frames([spec], size_px=p.input_size_px, frame=p.frame, cache_dir=self.cache_dir)
        if not self._warm:
            p.predict_raw(frames.images[:1])  # warm-up (lazy init, allocator): not part of the rate
            self._warm = True
        t0 = time.perf_counter()
        est = p.predict(frames.images)
        infer_s = time.perf_counter() - t0
        errors = pose_errors(est, frames.east_m, frames.north_m, frames.heading_deg)
        validity = FrameValidity(p)  # a new stream per drive
        flagged = sum(bool(r) for r in validity.assess(frames.images))
        for key, n in (("frames", len(frames)), ("flagged", flagged), *validity.counts.items()):
            self.flags[key] = self.flags.get(key, 0) + n
        return DriveScore(errors, len(frames), infer_s,
                          {"source": frames.drives[0]["source"], "skipped": frames.skipped,
                           "flagged": flagged / max(len(frames), 1)})

    def merge(self, partials: list[PoseErrors]) -> PoseErrors:
        return merge_pose_errors(partials)

    def summarize(self, partial: PoseErrors) -> dict[str, Any]:
        return summarize_pose_errors(partial)


def evaluate(checkpoint: str | os.PathLike | None, drives: Sequence[str | DriveSpec], *,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             cache_dir: str | os.PathLike | None = EvalConfig.cache_dir,
             record: bool = EvalConfig.record, allow_out_of_area: bool = False) -> dict[str, Any]:
    """Score a PoseNet checkpoint (file, weights name, None: the default) on drives (each ``PATH`` or
    ``PATH@START:STOP:STEP``).

    Returns `perception.evaluation.evaluate_drives`'s report with the figures of `summarize_pose_errors`.
    With ``record`` the figures are written into the checkpoint file's ``meta.metrics`` under
    ``"eval:<drive>"`` (its measured accuracy). A drive whose GPS lies outside the model's training area
    raises `OutOfAreaError` unless ``allow_out_of_area`` (then ``result["out_of_area"]`` says so); the
    validity flags are in ``result["flag_rates"]`` (share of frames, per reason).
    """
    predictor = PosePredictor(None if checkpoint is None else str(checkpoint), device=device, max_batch=batch_size)
    outside = drives_outside_area(predictor, [str(d) for d in drives])
    if outside and not allow_out_of_area:
        raise OutOfAreaError(f"{outside[0]}; its errors would measure the distance, not the model "
                             "(--allow-out-of-area to score it anyway)")
    scorer = PoseScorer(predictor, cache_dir=cache_dir)
    result = evaluate_drives(scorer, drives, checkpoint=checkpoint)
    result["out_of_area"] = outside
    n = max(scorer.flags["frames"], 1)
    result["flag_rates"] = {k: v / n for k, v in scorer.flags.items() if k != "frames"}
    if record:
        record_metrics("posenet", checkpoint, result)
    return result


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s result."""
    def f(key: str, fmt: str = "{:.2f}") -> str:
        v = r.get(key)
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)

    lines = [*r.get("out_of_area", []), f"PoseNet {r['model_id']} on {', '.join(r['drives'])}: {r['frames']} frames",
        "                       median     mean      p95      max",
        f"position error (m)   {f('position_error_m_median'):>8} {f('position_error_m_mean'):>8} "
        f"{f('position_error_m_p95'):>8} {f('position_error_m_max'):>8}",
        f"heading error (deg)  {f('heading_error_deg_median'):>8} {f('heading_error_deg_mean'):>8} "
        f"{f('heading_error_deg_p95'):>8} {f('heading_error_deg_max'):>8}",
        f"truth inside predicted 95% ellipse: {f('within_95_ellipse', '{:.1%}')} (honest: ~95%); "
        f"heading inside 95% interval: {f('heading_within_95', '{:.1%}')}",
        f"median predicted 1-sigma: {f('predicted_std_m_median')} m; "
        f"{f('images_per_s', '{:.0f}')} images/s on {r.get('device', '?')}",
    ]
    if r.get("flag_rates"):
        lines.append("flagged invalid: " + ", ".join(f"{k} {v:.1%}" for k, v in r["flag_rates"].items()))
    for name, d in r.get("per_drive", {}).items():
        lines.append(f"  {name}: median {d.get('position_error_m_median', float('nan')):.2f} m, "
                     f"p95 {d.get('position_error_m_p95', float('nan')):.2f} m, heading median "
                     f"{d.get('heading_error_deg_median', float('nan')):.1f} deg, "
                     f"in ellipse {d.get('within_95_ellipse', float('nan')):.1%}, flagged "
                     f"{d.get('flagged', float('nan')):.1%} ({d['frames']} frames)")
    return "\n".join(lines)
