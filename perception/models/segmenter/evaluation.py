"""The segmenter's figures against label masks of drives or CamVid-style folders (``streetloc evaluate
segmenter``): per-class IoU and their mean (mIoU) over the 11 classes of `perception.classes`, pixels of
the ignore label skipped, and pixel accuracy. IoU = TP / (TP + FP + FN) from a confusion matrix summed
over all frames (the definition of torchmetrics' ``MulticlassJaccardIndex(average=None,
ignore_index=11)``, checked against it in tests/perception/test_segmenter.py); a class that neither the
truth nor the prediction contains has no IoU (NaN) and does not count in the mean.

Scored at the labels' own resolution (a drive's 320x240, CamVid's 480x360): the network's logits are
upsampled bilinearly to it before the arg-max, as PSPNet and SegNet report, not the labels shrunk to the
model's input (which would drop thin poles and distant pedestrians from the truth)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from perception.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from perception.datasets import DriveSpec
from perception.evaluation import DriveScore, EvalConfig, evaluate_drives, record_metrics
from perception.models.segmenter.data import load_mask_frames
from perception.models.segmenter.predictor import SegmenterPredictor
from perception.training import log


def confusion_matrix(pred: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, *,
                     num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """int64 [C, C], rows the true class, columns the predicted one, over pixels whose truth is not
    ``ignore_index`` (pred, truth: integer [..., H, W] of the same shape)."""
    p = torch.as_tensor(pred).long().reshape(-1)
    t = torch.as_tensor(truth).long().reshape(-1)
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    p = p[keep].clamp(0, num_classes - 1)
    counts = torch.bincount(t[keep] * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def segmentation_figures(cm: np.ndarray) -> dict[str, Any]:
    """``miou``, ``pixel_accuracy``, ``iou_per_class`` (name -> IoU or NaN), ``pixels`` from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = cm.sum()
    return {"miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "pixels": int(total),
            "iou_per_class": {CLASS_NAMES[i]: float(v) for i, v in enumerate(iou)}}


class MaskScorer:
    """The segmenter's `perception.evaluation.Scorer`: a confusion matrix per drive."""

    model = "segmenter"

    def __init__(self, predictor: SegmenterPredictor, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.predictor = predictor
        self.model_id = predictor.model_id
        self.device = predictor.device
        self.cache_dir = cache_dir
        self.label_sizes: set[tuple[int, int]] = set()

    def score_drive(self, spec: DriveSpec) -> DriveScore[np.ndarray]:
        frames = load_mask_frames([spec], size_px=self.predictor.input_size_px, mask_size_px=(0, 0),
                                  cache_dir=self.cache_dir)
        skipped = {k: v for k, v in frames.skipped.items() if v}
        if skipped:  # frames without a mask, undecodable or not images: said, not silently dropped
            log(f"{spec}: {sum(skipped.values())} frame(s) skipped ({', '.join(f'{k}: {v}' for k, v in skipped.items())})")
        masks = frames.truth["mask"]
        label_size = (int(masks.shape[2]), int(masks.shape[1]))
        t0 = time.perf_counter()
        pred = self.predictor.predict(frames.images, out_size_px=label_size)
        infer_s = time.perf_counter() - t0
        cm = confusion_matrix(pred, masks)
        # the label size is accumulated in `keep`, which every process runs over every drive (torchrun)
        return DriveScore(cm, len(frames), infer_s, {"frames": len(frames), "skipped": frames.skipped,
                                                     "label_size_px": list(label_size)}, label_size)

    def keep(self, spec: DriveSpec, score: DriveScore[np.ndarray]) -> None:
        self.label_sizes.add(tuple(score.kept))

    def merge(self, partials: list[np.ndarray]) -> np.ndarray:
        return np.sum(partials, axis=0)

    def summarize(self, partial: np.ndarray) -> dict[str, Any]:
        return {**segmentation_figures(partial), "input_size_px": list(self.predictor.input_size_px),
                "label_size_px": [list(s) for s in sorted(self.label_sizes)]}


def evaluate(checkpoint: str | os.PathLike | None, drives: Sequence[str | DriveSpec], *,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             cache_dir: str | os.PathLike | None = EvalConfig.cache_dir,
             record: bool = EvalConfig.record) -> dict[str, Any]:
    """Score a segmenter checkpoint on drives with label masks and CamVid-style split folders;
    `evaluate_drives`'s report with `segmentation_figures`, ``input_size_px``, ``label_size_px``."""
    predictor = SegmenterPredictor(None if checkpoint is None else str(checkpoint), device=device,
                                   max_batch=batch_size)
    scorer = MaskScorer(predictor, cache_dir=cache_dir)
    result = evaluate_drives(scorer, drives, checkpoint=checkpoint)
    if record:
        record_metrics("segmenter", checkpoint, result)
    return result


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s result."""
    sizes = ", ".join("x".join(map(str, s)) for s in r.get("label_size_px", []))
    lines = [f"segmenter {r['model_id']} on {', '.join(r['drives'])}: {r['pixels']} labelled pixels "
             f"(input {'x'.join(map(str, r.get('input_size_px', [])))}, scored at the labels' {sizes})",
             f"mIoU {r['miou']:.3f}, pixel accuracy {r['pixel_accuracy']:.3f}; "
             f"{r.get('images_per_s', float('nan')):.0f} images/s on {r.get('device', '?')}",
             "class        IoU"]
    lines += [f"{name:<12} {'-' if not np.isfinite(v) else f'{v:.3f}'}" for name, v in r["iou_per_class"].items()]
    return "\n".join(lines)
