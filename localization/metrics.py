"""Accuracy metrics of position/heading estimates against a truth: pure numpy, no torch, no zmq.

Used by `streetloc evaluate posenet`, `streetloc demo` and the fusion scoring alike, so that every figure
of the project (median, p95, > 20 m, ellipse coverage) is computed one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localization.geodesy import heading_difference_deg

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


def pose_errors(est, east_m: np.ndarray, north_m: np.ndarray, heading_deg: np.ndarray) -> PoseErrors:
    """Errors of ``est`` against the truth (ENU metres of the same frame [N], heading in degrees or NaN [N]).

    ``est`` has ``east_m``, ``north_m`` [N], ``cov_enu_m2`` [N, 2, 2], ``heading_deg``, ``heading_std_deg`` [N]
    (a PoseNet ``PoseEstimates``, or any record with those arrays)."""
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


def summary_stats(values: np.ndarray, *, name: str, unit: str) -> dict[str, float]:
    """``{name}_{unit}_median/_mean/_p95/_max`` of the finite values (empty when none is finite)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {}
    return {f"{name}_{unit}_median": float(np.median(v)), f"{name}_{unit}_mean": float(np.mean(v)),
            f"{name}_{unit}_p95": float(np.percentile(v, 95)), f"{name}_{unit}_max": float(np.max(v))}
