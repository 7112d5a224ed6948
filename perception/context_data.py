"""Per-frame context features and PoseNet's error on drives: the data `localization.context` is fitted on.

For each camera frame of a drive (every ``step``-th): the shipped segmenter's class fractions, the
shipped detector's boxes, and PoseNet's fix (the node's predictor: top-level position and covariance, the
weight of its top hypothesis, the node's validity flags), against the drive's ``gps/fix`` truth at the
frame's stamp. The three predictors are the ones the nodes run (``nodes/{segmenter,detector,posenet}.py``
load the same classes), so the features match what the fusion node computes from the bus messages.

Cached per drive in ``cache_dir`` (keyed by the drive's content digest, the three model ids and ``step``):
the CNNs cost ~0.1 s a frame on one CPU thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localization.context import (
    FEATURES,
    ContextModel,
    detection_features,
    fit_context,
    fix_features,
    score_context,
    segmentation_features,
)
from localization.geodesy import LocalFrame
from perception.datasets import file_digest

CACHE_VERSION = 2


@dataclass
class DriveContext:
    """One drive's frames. stamps_ns int64 [T]; x float [T, F] features (`localization.context.FEATURES`
    order); err_m float [T] PoseNet's top-level fix vs the truth (m); mahal2 float [T] its squared
    Mahalanobis distance under its top hypothesis' covariance (the offset covariance "if this one is right",
    what the filter takes; the top-level covariance also holds the other anchors' spread); valid bool [T] the node's validity check passed."""

    path: str
    sha256: str
    stamps_ns: np.ndarray
    x: np.ndarray
    err_m: np.ndarray
    mahal2: np.ndarray
    valid: np.ndarray

    def record(self) -> dict:
        return {"path": self.path, "frames": int(len(self.stamps_ns)), "sha256": self.sha256}


class ContextExtractor:
    """The three predictors, loaded once (PoseNet with the node's hypotheses, so its top weight is the
    node's)."""

    def __init__(
        self,
        *,
        posenet: str | None = None,
        segmenter: str | None = None,
        detector: str | None = None,
        hypotheses: int = 5,
        score_threshold: float = 0.5,
        batch: int = 16,
    ) -> None:
        from perception.models import PosePredictor
        from perception.models.detector.predictor import DetectorPredictor
        from perception.models.segmenter import SegmenterPredictor

        self.posenet = PosePredictor(posenet, device="cpu")
        self.posenet.hypotheses = hypotheses
        self.segmenter = SegmenterPredictor(segmenter, device="cpu")
        self.detector = DetectorPredictor(detector, device="cpu")
        self.score_threshold = score_threshold
        self.batch = batch

    @property
    def key(self) -> str:
        return "|".join(
            [
                self.posenet.model_id,
                self.segmenter.checkpoint.model_id,
                self.detector.checkpoint.model_id,
                str(self.posenet.hypotheses),
                str(self.score_threshold),
            ]
        )

    def drive(self, path: str | Path, *, step: int = 1, cache_dir: str | Path | None = None) -> DriveContext:
        """The drive's frames (every ``step``-th), from ``cache_dir`` when extracted before."""
        path = Path(path)
        digest = file_digest(path)
        cache = None
        if cache_dir is not None:
            key = hashlib.sha256(f"{CACHE_VERSION}|{digest}|{self.key}|{step}".encode()).hexdigest()[:20]
            cache = Path(cache_dir) / f"context-{path.stem}-{key}.npz"
            if cache.is_file():
                z = np.load(cache)
                return DriveContext(
                    str(path), digest, z["stamps_ns"], z["x"], z["err_m"], z["mahal2"], z["valid"]
                )
        out = self._extract(path, digest, step)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                cache, stamps_ns=out.stamps_ns, x=out.x, err_m=out.err_m, mahal2=out.mahal2, valid=out.valid
            )
        return out

    def _extract(self, path: Path, digest: str, step: int) -> DriveContext:
        import torch

        from perception.classes import CLASS_NAMES
        from perception.drives import DriveReader
        from perception.models.detector.predictor import to_frame_pixels
        from perception.models.posenet.validity import FrameValidity
        from perception.models.segmenter.predictor import class_fractions

        validity = FrameValidity(self.posenet)
        with DriveReader(path) as reader:
            frame = LocalFrame(reader.metadata.geo_origin)
            frames = [
                f for k, f in enumerate(reader.frames(decode=True)) if k % step == 0 and f.gps is not None
            ]
        stamps, xs, errs, m2s, valid = [], [], [], [], []
        seg_names = list(self.segmenter.class_names)
        for i in range(0, len(frames), self.batch):
            chunk = frames[i : i + self.batch]
            bgr = [f.image.to_bgr() for f in chunk]
            prepared = np.stack([self.posenet.prepare_bgr(im) for im in bgr])
            est = self.posenet.predict(torch.from_numpy(prepared))
            flags = validity.assess(
                prepared,
                [(im.shape[1], im.shape[0]) for im in bgr],
                stamps_ns=np.array([f.stamp_ns for f in chunk], np.int64),
            )
            masks = self.segmenter.predict(
                torch.from_numpy(np.stack([self.segmenter.prepare_bgr(im) for im in bgr]))
            )
            fractions = class_fractions(masks)
            dprep = [self.detector.prepare_bgr(im) for im in bgr]
            det = self.detector.predict(
                torch.from_numpy(np.stack([p[0] for p in dprep])), score_threshold=self.score_threshold
            )
            pe, pn, _ = frame.to_enu(est.lat_deg, est.lon_deg)
            te, tn, _ = frame.to_enu([f.gps.lat_deg for f in chunk], [f.gps.lon_deg for f in chunk])
            for j, f in enumerate(chunk):
                boxes, _, labels = to_frame_pixels(
                    det.boxes[j], det.scores[j], det.labels[j], dprep[j][1], bgr[j].shape[1], bgr[j].shape[0]
                )
                table_ids = np.asarray(self.detector.class_ids, int)[np.asarray(labels, int)]
                feats = {
                    **segmentation_features(seg_names, fractions[j]),
                    **detection_features(CLASS_NAMES, table_ids, boxes, bgr[j].shape[1], bgr[j].shape[0]),
                    **fix_features(
                        est.cov_enu_m2[j], float(est.hyp_weight[j, 0]) if est.hyp_weight is not None else 1.0
                    ),
                }
                e = np.array([pe[j] - te[j], pn[j] - tn[j]])
                cov = np.asarray(
                    est.cov_enu_m2[j] if est.hyp_cov_enu_m2 is None else est.hyp_cov_enu_m2[j, 0], float
                )
                stamps.append(f.stamp_ns)
                xs.append([feats[name] for name in FEATURES])
                errs.append(float(np.hypot(*e)))
                m2s.append(float(e @ np.linalg.solve(cov, e)))
                valid.append(not flags[j])
        return DriveContext(
            str(path),
            digest,
            np.array(stamps, np.int64),
            np.array(xs, float).reshape(-1, len(FEATURES)),
            np.array(errs),
            np.array(m2s),
            np.array(valid, bool),
        )


def fit_drives(
    fit: list[str | Path],
    check: list[str | Path],
    *,
    extractor: ContextExtractor | None = None,
    step: int = 1,
    cache_dir: str | Path | None = None,
    l2: float = 1.0,
    scale_l2: float = 300.0,
    outlier_m: float = 20.0,
) -> ContextModel:
    """The context model fitted on the valid frames (the node's validity check passed: the fusion uses
    no others) of ``fit`` drives, with its figures on ``check`` drives (`score_context`) and every drive's
    path, frame count and content hash recorded (``data``, ``check["drives"]``, the check drives each with
    their inliers' 95 % coverage before and after the scale: calibration varies more between drives than
    between frames)."""
    extractor = extractor or ContextExtractor()
    fit_data = [extractor.drive(p, step=step, cache_dir=cache_dir) for p in fit]
    check_data = [extractor.drive(p, step=step, cache_dir=cache_dir) for p in check]

    def stack(drives: list[DriveContext]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.concatenate([d.x[d.valid] for d in drives]),
            np.concatenate([d.err_m[d.valid] for d in drives]),
            np.concatenate([d.mahal2[d.valid] for d in drives]),
        )

    model = fit_context(*stack(fit_data), l2=l2, scale_l2=scale_l2, outlier_m=outlier_m)
    model.data = [d.record() for d in fit_data]
    model.recipe.update(
        {"step": step, "models": extractor.key, "fit_score": score_context(model, *stack(fit_data))}
    )
    if check_data:
        per_drive = []
        for d in check_data:
            s = score_context(model, *stack([d])) if d.valid.any() else {}
            keys = ("inlier_coverage_raw", "inlier_coverage_scaled", "outlier_rate")
            per_drive.append(d.record() | {k: s[k] for k in keys if k in s})
        model.check = {**score_context(model, *stack(check_data)), "drives": per_drive}
    return model
