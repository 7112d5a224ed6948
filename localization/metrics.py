"""Accuracy metrics of position/heading estimates against a truth: pure numpy, no torch, no zmq.

Used by `streetloc evaluate posenet`, `streetloc demo` and the fusion scoring alike, so that every figure
of the project (median, p95, > 20 m, ellipse coverage, hypothesis recall and calibration) is computed one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localization.geodesy import heading_difference_deg

CHI2_2DOF_95 = 5.991464547107979  # 95% quantile of chi-square, 2 dof: the 95% ellipse
CHI2_1DOF_95 = 3.841458820694124
RECALL_RADII_M = (5.0, 10.0)
# a hypothesis is right when it is the one nearest the truth and within this (PoseNet's calibration default)
HYPOTHESIS_RADIUS_M = 10.0
FAR_M = 20.0  # a fix this far off is on another street: the "> 20 m" share
RELIABILITY_BINS = 10
# coverage of a 95 % ellipse called calibrated between these (300 frames give about +-2.5 %)
COVERAGE_NARROW, COVERAGE_WIDE = 0.90, 0.98


def coverage_verdict(coverage: float) -> str:
    """"too narrow" (over-confident), "too wide" (under-used) or "calibrated", from the share of truths
    inside the 95 % ellipses; "-" when unknown."""
    if not np.isfinite(coverage):
        return "-"
    if coverage < COVERAGE_NARROW:
        return "too narrow"
    if coverage > COVERAGE_WIDE:
        return "too wide"
    return "calibrated"


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
        hyp_distance_m: float [N, k], distance of each hypothesis to the truth (NaN where absent).
        hyp_weight: float [N, k], its weight (0 where absent).
        hyp_mahalanobis2: float [N, k], squared Mahalanobis distance of the truth under its covariance.
        valid: bool [N], the fix's own verdict (False: flagged; `PoseEstimates.valid` when the predictor
            gives one, else finite outputs).
        reason: str [N], why flagged ("" when valid).
    """

    position_error_m: np.ndarray
    error_enu_m: np.ndarray
    mahalanobis2: np.ndarray
    heading_error_deg: np.ndarray
    heading_z2: np.ndarray
    horizontal_std_m: np.ndarray
    hyp_distance_m: np.ndarray
    hyp_weight: np.ndarray
    hyp_mahalanobis2: np.ndarray
    valid: np.ndarray
    reason: np.ndarray

    def right_hypothesis(self, radius_m: float) -> np.ndarray:
        """bool [N, k]: the hypothesis nearest the truth, when within ``radius_m`` (at most one per frame)."""
        d = np.where(np.isfinite(self.hyp_distance_m), self.hyp_distance_m, np.inf)
        out = np.zeros(d.shape, bool)
        if d.shape[1]:
            j = d.argmin(1)
            rows = np.arange(len(d))
            out[rows, j] = d[rows, j] <= radius_m
        return out


def _mahalanobis2(err: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """err [..., 2], cov [..., 2, 2] -> e' S^-1 e [...] (NaN where cov is NaN), solved, not inverted."""
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    det = a * c - b * b
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c * err[..., 0] ** 2 - 2 * b * err[..., 0] * err[..., 1] + a * err[..., 1] ** 2) / det


def pose_errors(est, east_m: np.ndarray, north_m: np.ndarray, heading_deg: np.ndarray) -> PoseErrors:
    """Errors of ``est`` against the truth (ENU metres of the same frame [N], heading in degrees or NaN [N]).

    ``est`` has ``east_m``, ``north_m`` [N], ``cov_enu_m2`` [N, 2, 2], ``heading_deg``, ``heading_std_deg`` [N]
    and optionally ``hyp_east_m``/``hyp_north_m``/``hyp_weight`` [N, k], ``hyp_cov_enu_m2`` [N, k, 2, 2],
    ``valid``/``reason`` [N] (a PoseNet ``PoseEstimates``, or any record with those arrays)."""
    err = np.stack([np.asarray(east_m) - est.east_m, np.asarray(north_m) - est.north_m], axis=1)
    cov = np.asarray(est.cov_enu_m2, dtype=np.float64)
    # d^2 = e' S^-1 e, solved rather than inverted (S can be thin along a street)
    sol = np.linalg.solve(cov, err[:, :, None])[:, :, 0]
    m2 = np.einsum("ni,ni->n", err, sol)
    dh = np.abs(heading_difference_deg(est.heading_deg, heading_deg))
    z2 = (dh / np.maximum(est.heading_std_deg, 1e-6)) ** 2
    hstd = np.sqrt(np.maximum(0.0, (cov[:, 0, 0] + cov[:, 1, 1]) / 2.0))
    n = len(err)
    if getattr(est, "hyp_weight", None) is not None:  # a bare record (the demo's fixes) has none
        herr = np.stack([np.asarray(east_m)[:, None] - est.hyp_east_m, np.asarray(north_m)[:, None] - est.hyp_north_m],
                        axis=-1)  # [N, k, 2]
        hdist = np.hypot(herr[..., 0], herr[..., 1])
        hweight = np.asarray(est.hyp_weight, np.float64)
        hm2 = _mahalanobis2(herr, est.hyp_cov_enu_m2)
    else:
        hdist = hweight = hm2 = np.zeros((n, 0))
    finite = np.isfinite(est.east_m) & np.isfinite(est.north_m) & np.all(np.isfinite(cov), axis=(1, 2))
    valid = np.asarray(getattr(est, "valid", None) if getattr(est, "valid", None) is not None else finite, bool)
    reason = getattr(est, "reason", None)
    reason = (np.asarray(reason, dtype=object) if reason is not None
              else np.where(finite, "", "non_finite").astype(object))
    return PoseErrors(np.hypot(err[:, 0], err[:, 1]), err, m2, dh, z2, hstd, hdist, hweight, hm2, valid, reason)


def merge_pose_errors(parts: Sequence[PoseErrors]) -> PoseErrors:
    k = max((e.hyp_weight.shape[1] for e in parts), default=0)

    def padded(e: PoseErrors, f: str) -> np.ndarray:
        a = getattr(e, f)
        if f.startswith("hyp_") and a.shape[1] < k:  # drives scored with fewer hypotheses: pad as absent
            fill = 0.0 if f == "hyp_weight" else np.nan
            a = np.concatenate([a, np.full((len(a), k - a.shape[1]), fill)], axis=1)
        return a

    return PoseErrors(*(np.concatenate([padded(e, f) for e in parts]) for f in PoseErrors.__dataclass_fields__))


def reliability(weight: np.ndarray, right: np.ndarray, *, bins: int = RELIABILITY_BINS) -> tuple[list[dict], float]:
    """Reliability table of probabilities ``weight`` [M] against outcomes ``right`` [M] (bool): per bin of
    equal width on [0, 1] its range, count, mean weight and share right; and the expected calibration
    error (count-weighted mean |share right - mean weight|; NaN without samples)."""
    weight, right = np.asarray(weight, np.float64), np.asarray(right, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(weight, edges[1:-1]), 0, bins - 1)
    table, gap = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        conf = float(weight[sel].mean()) if n else float("nan")
        acc = float(right[sel].mean()) if n else float("nan")
        table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n, "mean_weight": conf,
                      "fraction_right": acc})
        if n:
            gap += n * abs(acc - conf)
    return table, (gap / len(weight) if len(weight) else float("nan"))


def hypothesis_figures(e: PoseErrors, *, radius_m: float) -> dict[str, Any]:
    """Recall, weight calibration and right-hypothesis ellipse coverage of ``e``'s hypotheses."""
    out: dict[str, Any] = {"hypotheses_k": int(e.hyp_weight.shape[1]), "hypothesis_radius_m": float(radius_m)}
    n = len(e.position_error_m)
    nearest = (np.nanmin(np.where(np.isfinite(e.hyp_distance_m), e.hyp_distance_m, np.inf), axis=1)
               if e.hyp_weight.shape[1] else np.full(n, np.inf))
    for r in RECALL_RADII_M:
        out[f"top1_recall_{r:g}m"] = float(np.mean(e.position_error_m <= r)) if n else float("nan")
        out[f"topk_recall_{r:g}m"] = float(np.mean(nearest <= r)) if n and e.hyp_weight.shape[1] else float("nan")
    present = np.isfinite(e.hyp_distance_m)
    right = e.right_hypothesis(radius_m)
    table, ece = reliability(e.hyp_weight[present], right[present])
    out["hypothesis_weight_ece"] = ece
    out["hypothesis_weight_reliability"] = table
    has = right.any(1)
    m2 = e.hyp_mahalanobis2[right]
    out["frames_with_right_hypothesis"] = int(has.sum())
    out["right_hypothesis_within_95_ellipse"] = float(np.mean(m2 <= CHI2_2DOF_95)) if m2.size else float("nan")
    out["right_hypothesis_ellipse"] = coverage_verdict(out["right_hypothesis_within_95_ellipse"])
    out["mean_hypothesis_weight_sum"] = float(np.mean(e.hyp_weight.sum(1))) if n else float("nan")
    return out


def summarize_pose_errors(e: PoseErrors, *, radius_m: float = HYPOTHESIS_RADIUS_M) -> dict[str, Any]:
    """The figures ``streetloc evaluate posenet`` prints (flat, JSON-ready)."""
    out: dict[str, Any] = {"frames": int(len(e.position_error_m))}
    out.update(summary_stats(e.position_error_m, name="position_error", unit="m"))
    out.update(summary_stats(e.heading_error_deg, name="heading_error", unit="deg"))
    out["within_95_ellipse"] = float(np.mean(e.mahalanobis2 <= CHI2_2DOF_95)) if len(e.mahalanobis2) else float("nan")
    hz = e.heading_z2[np.isfinite(e.heading_z2)]
    out["heading_within_95"] = float(np.mean(hz <= CHI2_1DOF_95)) if hz.size else float("nan")
    out["frames_with_heading"] = int(hz.size)
    out["predicted_std_m_median"] = float(np.median(e.horizontal_std_m)) if len(e.horizontal_std_m) else float("nan")
    n = len(e.position_error_m)
    out[f"position_error_over_{FAR_M:g}m"] = float(np.mean(e.position_error_m > FAR_M)) if n else float("nan")
    out["ellipse"] = coverage_verdict(out["within_95_ellipse"])
    out["valid_fraction"] = float(np.mean(e.valid)) if n else float("nan")
    reasons: dict[str, int] = {}
    for r in e.reason[~e.valid]:
        for word in str(r).split(",") if r else ["unspecified"]:
            reasons[word] = reasons.get(word, 0) + 1
    out["flag_reasons"] = reasons
    out.update(hypothesis_figures(e, radius_m=radius_m))
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


def summary_stats(values: np.ndarray, *, name: str, unit: str) -> dict[str, float]:
    """``{name}_{unit}_median/_mean/_p95/_max`` of the finite values (empty when none is finite)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {}
    return {f"{name}_{unit}_median": float(np.median(v)), f"{name}_{unit}_mean": float(np.mean(v)),
            f"{name}_{unit}_p95": float(np.percentile(v, 95)), f"{name}_{unit}_max": float(np.max(v))}
