"""Scoring models against a drive's ground truth (``streetloc evaluate``).

PoseNet: position error in metres (median, mean, 95th percentile, max), heading error in degrees, and
whether the uncertainty is honest — the share of frames whose true position lies inside the predicted
95% ellipse (should be near 0.95: much lower means over-confident fixes that a filter would trust too
much; much higher means fixes it would underuse) and the same for the heading's 95% interval.
"""

from __future__ import annotations

import os
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
    """Errors of ``est`` (`perception.models.posenet.PoseEstimates`) against the truth (ENU metres of the
    same frame, heading in degrees or NaN)."""
    err = np.stack([np.asarray(east_m) - est.east_m, np.asarray(north_m) - est.north_m], axis=1)
    cov = np.asarray(est.cov_enu_m2, dtype=np.float64)
    # d^2 = e' S^-1 e, solved rather than inverted (S can be thin along a street)
    sol = np.linalg.solve(cov, err[:, :, None])[:, :, 0]
    m2 = np.einsum("ni,ni->n", err, sol)
    dh = np.abs(heading_difference_deg(est.heading_deg, heading_deg))
    z2 = (dh / np.maximum(est.heading_std_deg, 1e-6)) ** 2
    hstd = np.sqrt(np.maximum(0.0, (cov[:, 0, 0] + cov[:, 1, 1]) / 2.0))
    return PoseErrors(np.hypot(err[:, 0], err[:, 1]), err, m2, dh, z2, hstd)


def _stats(values: np.ndarray, unit: str, name: str) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {}
    return {f"{name}_{unit}_median": float(np.median(v)), f"{name}_{unit}_mean": float(np.mean(v)),
            f"{name}_{unit}_p95": float(np.percentile(v, 95)), f"{name}_{unit}_max": float(np.max(v))}


def summarize_pose_errors(e: PoseErrors) -> dict[str, Any]:
    """The figures ``streetloc evaluate posenet`` prints (flat, JSON-ready)."""
    out: dict[str, Any] = {"frames": int(len(e.position_error_m))}
    out.update(_stats(e.position_error_m, "m", "position_error"))
    out.update(_stats(e.heading_error_deg, "deg", "heading_error"))
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


def evaluate_posenet(model: str | os.PathLike | None, drives: Sequence[str], *, device: str = "auto",
                     batch_size: int = 64, cache_dir: str | None = None, record: bool = False) -> dict[str, Any]:
    """Score a PoseNet checkpoint on drives (each ``PATH`` or ``PATH@START:STOP:STEP``).

    Returns the figures of `summarize_pose_errors` plus ``model_id``, ``model`` and ``drives``, per drive
    under ``per_drive`` when there are several. With ``record`` the figures are written into the
    checkpoint file's ``meta.metrics`` under ``"eval:<drive>"`` (its measured accuracy).
    """
    import time

    from perception.datasets import DriveSpec, load_pose_frames
    from perception.models.posenet import PosePredictor

    predictor = PosePredictor(None if model is None else str(model), device=device, max_batch=batch_size)
    specs = [DriveSpec.parse(d) for d in drives]
    per_drive: dict[str, dict[str, Any]] = {}
    all_errors: list[PoseErrors] = []
    infer_s, n_total = 0.0, 0
    for spec in specs:
        frames = load_pose_frames([spec], size_px=predictor.input_size_px, frame=predictor.frame, cache_dir=cache_dir)
        if n_total == 0 and len(frames):
            predictor.predict_raw(frames.images[:1])  # warm-up (lazy init, allocator): not part of the rate
        t0 = time.perf_counter()
        est = predictor.predict(frames.images)
        infer_s += time.perf_counter() - t0
        n_total += len(frames)
        errors = pose_errors(est, frames.east_m, frames.north_m, frames.heading_deg)
        all_errors.append(errors)
        per_drive[str(spec)] = {**summarize_pose_errors(errors), "source": frames.drives[0]["source"],
                                "skipped": frames.skipped}
    merged = PoseErrors(*(np.concatenate([getattr(e, f) for e in all_errors])
                          for f in PoseErrors.__dataclass_fields__))
    result: dict[str, Any] = {"model": "posenet", "model_id": predictor.model_id,
                              "checkpoint": str(model) if model else "(default)",
                              "drives": [str(s) for s in specs], **summarize_pose_errors(merged),
                              "images_per_s": n_total / infer_s if infer_s > 0 else float("nan"),
                              "device": str(predictor.device)}
    if len(specs) > 1:
        result["per_drive"] = per_drive
    if record:
        _record(model, predictor, result)
    return result


def _record(model, predictor, result: dict[str, Any]) -> None:
    from perception.models._api import Checkpoint, get_weights

    path = get_weights(str(model)).path if model and not os.path.exists(str(model)) else model
    if path is None:
        from perception.models._api import default_weights

        path = default_weights("posenet").path
    ckpt = Checkpoint.load(path)
    metrics = dict(ckpt.meta.get("metrics", {}))
    figures = {k: v for k, v in result.items() if isinstance(v, int | float)}
    metrics["eval:" + ",".join(os.path.basename(d) for d in result["drives"])] = figures
    ckpt.meta["metrics"] = metrics
    ckpt.save(path)


def format_pose_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate_posenet`'s result."""
    def f(key: str, fmt: str = "{:.2f}") -> str:
        v = r.get(key)
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)

    lines = [
        f"PoseNet {r['model_id']} on {', '.join(r['drives'])}: {r['frames']} frames",
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
    for name, d in r.get("per_drive", {}).items():
        lines.append(f"  {name}: median {d.get('position_error_m_median', float('nan')):.2f} m, "
                     f"p95 {d.get('position_error_m_p95', float('nan')):.2f} m, heading median "
                     f"{d.get('heading_error_deg_median', float('nan')):.1f} deg, "
                     f"in ellipse {d.get('within_95_ellipse', float('nan')):.1%} ({d['frames']} frames)")
    return "\n".join(lines)
