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
from typing import Any

import numpy as np

from localization.metrics import (  # noqa: F401 - the figures live with the other accuracy metrics
    CHI2_1DOF_95,
    CHI2_2DOF_95,
    PoseErrors,
    calibrate_scales,
    merge_pose_errors,
    pose_errors,
    summarize_pose_errors,
)
from perception.datasets import DriveSpec
from perception.evaluation import DriveScore, EvalConfig, evaluate_drives, record_metrics
from perception.models.posenet.data import load_pose_frames
from perception.models.posenet.predictor import PosePredictor


class PoseScorer:
    """PoseNet's `perception.evaluation.Scorer`: per-frame errors of a checkpoint on each drive."""

    model = "posenet"

    def __init__(self, predictor: PosePredictor, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.predictor = predictor
        self.model_id = predictor.model_id
        self.device = predictor.device
        self.cache_dir = cache_dir
        self._warm = False

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
        return DriveScore(errors, len(frames), infer_s,
                          {"source": frames.drives[0]["source"], "skipped": frames.skipped})

    def merge(self, partials: list[PoseErrors]) -> PoseErrors:
        return merge_pose_errors(partials)

    def summarize(self, partial: PoseErrors) -> dict[str, Any]:
        return summarize_pose_errors(partial)


def evaluate(checkpoint: str | os.PathLike | None, drives: Sequence[str | DriveSpec], *,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             cache_dir: str | os.PathLike | None = EvalConfig.cache_dir,
             record: bool = EvalConfig.record) -> dict[str, Any]:
    """Score a PoseNet checkpoint (file, weights name, None: the default) on drives (each ``PATH`` or
    ``PATH@START:STOP:STEP``).

    Returns `perception.evaluation.evaluate_drives`'s report with the figures of `summarize_pose_errors`.
    With ``record`` the figures are written into the checkpoint file's ``meta.metrics`` under
    ``"eval:<drive>"`` (its measured accuracy).
    """
    predictor = PosePredictor(None if checkpoint is None else str(checkpoint), device=device, max_batch=batch_size)
    result = evaluate_drives(PoseScorer(predictor, cache_dir=cache_dir), drives, checkpoint=checkpoint)
    if record:
        record_metrics("posenet", checkpoint, result)
    return result


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s result."""
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
