"""The detector's figures (``streetloc evaluate detector``): COCO mAP@0.5 and mAP@[.5:.95], per class and
over the classes, computed by `pycocotools` (the COCO reference code) on the predictions.

COCO's definition: per class and IoU threshold (0.50, 0.55, ..., 0.95), detections sorted by score are
matched greedily to unmatched truth boxes; AP is the mean of the interpolated precision at 101 recall
points; up to 100 detections per image. mAP@0.5 is AP at IoU 0.5 averaged over the classes that have
truth; mAP@[.5:.95] averages over the ten thresholds too. A class without truth in the data has no AP
(NaN, null in JSON) and does not count in the mean.

Tiny objects: a truth box under `MIN_HEIGHT_PX` pixels tall *in the frame* (before any resize) is an
ignore region (COCO's ``iscrowd``): a detection on it is neither a hit nor a false alarm, missing it is
no miss — as KITTI's benchmark does below 25 px. The synthetic city boxes every car to the horizon (a
quarter of them are under 6 px tall); the report also gives the figures with every box scored
(``all_boxes``), honestly lower.

Boxes are scored in the model's input pixels (the letterboxed frame); that scales every box by the same
factor, which changes no IoU.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from perception.datasets import DriveSpec
from perception.evaluation import DriveScore, EvalConfig, evaluate_drives, record_metrics
from perception.models.detector.network import DETECTOR_CLASS_NAMES
from perception.models.detector.predictor import DetectorPredictor

MIN_HEIGHT_PX = 8.0  # frame pixels: smaller truth boxes are ignore regions (see the module docstring)
EVAL_SCORE_THRESHOLD = 0.01  # COCO scores the whole ranking: keep low-score boxes
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def coco_map(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray],
             truth_boxes: Sequence[np.ndarray], truth_labels: Sequence[np.ndarray], *,
             ignore: Sequence[np.ndarray] | None = None,
             class_names: Sequence[str] = DETECTOR_CLASS_NAMES) -> dict[str, Any]:
    """COCO AP with pycocotools. Per image: predicted boxes float [n, 4] xyxy, scores [n], labels int [n]
    (class index), truth boxes [m, 4] xyxy, labels [m], ``ignore`` bool [m] (ignore regions).

    Returns ``map50``, ``map50_95``, ``ap50_per_class`` and ``ap50_95_per_class`` (name -> AP, NaN where the
    class has no truth), ``truth_per_class`` (scored truth boxes per class), ``detections``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    truth_count = dict.fromkeys(class_names, 0)
    for i, (tb, tl) in enumerate(zip(truth_boxes, truth_labels, strict=True)):
        images.append({"id": i, "width": 1, "height": 1})
        tb = np.asarray(tb, np.float64).reshape(-1, 4)
        ig = np.zeros(len(tb), bool) if ignore is None else np.asarray(ignore[i], bool)
        for box, label, crowd in zip(tb, np.asarray(tl).reshape(-1), ig, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(label) + 1, "iscrowd": int(crowd),
                         "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h})
            if not crowd:
                truth_count[class_names[int(label)]] += 1
        pb = np.asarray(pred_boxes[i], np.float64).reshape(-1, 4)
        for box, score, label in zip(pb, np.asarray(pred_scores[i]).reshape(-1), np.asarray(pred_labels[i]).reshape(-1),
                                     strict=True):
            dets.append({"image_id": i, "category_id": int(label) + 1, "score": float(score),
                         "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    nan_classes = {name: float("nan") for name in class_names}
    result: dict[str, Any] = {"map50": float("nan"), "map50_95": float("nan"), "ap50_per_class": dict(nan_classes),
                              "ap50_95_per_class": dict(nan_classes), "truth_per_class": truth_count,
                              "detections": len(dets)}
    if not images:
        return result
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": k + 1, "name": n} for k, n in enumerate(class_names)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        if not dets:
            return result
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = IOU_THRESHOLDS
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [T, R, K, A, M]: IoU thr, recall, class, area (all), max dets (100)
    ap50, ap = {}, {}
    for k, name in enumerate(class_names):
        p50 = precision[0, :, k, 0, -1]
        pall = precision[:, :, k, 0, -1]
        ap50[name] = float(np.mean(p50)) if truth_count[name] and (p50 > -1).all() else float("nan")
        ap[name] = float(np.mean(pall)) if truth_count[name] and (pall > -1).all() else float("nan")
    result["calibration"] = score_calibration(ev)
    finite50 = [v for v in ap50.values() if np.isfinite(v)]
    finite = [v for v in ap.values() if np.isfinite(v)]
    result.update({"map50": float(np.mean(finite50)) if finite50 else float("nan"),
                   "map50_95": float(np.mean(finite)) if finite else float("nan"),
                   "ap50_per_class": ap50, "ap50_95_per_class": ap})
    return result


CALIBRATION_BINS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def score_calibration(ev: Any) -> list[dict[str, float]]:
    """How honest the scores are: per score bin, the detections in it and the share that are hits at IoU 0.5
    (from pycocotools' per-image matches; detections on ignore regions left out). An honest detector's
    0.7-0.8 bin holds about 75 % hits."""
    scores, hits = [], []
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(ev.params.areaRng[0]):
            continue
        keep = ~np.asarray(e["dtIgnore"][0], bool)
        scores.append(np.asarray(e["dtScores"])[keep])
        hits.append(np.asarray(e["dtMatches"][0])[keep] > 0)
    s = np.concatenate(scores) if scores else np.zeros(0)
    h = np.concatenate(hits) if hits else np.zeros(0, bool)
    out = []
    for lo, hi in zip(CALIBRATION_BINS[:-1], CALIBRATION_BINS[1:], strict=True):
        inside = (s >= lo) & (s < hi) if hi < 1.0 else (s >= lo)
        n = int(inside.sum())
        out.append({"score_lo": lo, "score_hi": hi, "detections": n,
                    "hit_share_iou50": float(h[inside].mean()) if n else float("nan")})
    return out


def ignore_masks(truth_boxes: Sequence[np.ndarray], scales: Sequence[float], *,
                 min_height_px: float = MIN_HEIGHT_PX) -> list[np.ndarray]:
    """bool [m] per image: truth boxes (input px) under ``min_height_px`` tall in the frame (input px / scale)."""
    return [(np.asarray(b).reshape(-1, 4)[:, 3] - np.asarray(b).reshape(-1, 4)[:, 1]) / float(s) < min_height_px
            for b, s in zip(truth_boxes, scales, strict=True)]


def box_figures(partial: dict[str, list]) -> dict[str, Any]:
    """The report's figures from predictions and truth (`BoxScorer`'s partial)."""
    ig = ignore_masks(partial["truth_boxes"], partial["scale"])
    scored = coco_map(partial["boxes"], partial["scores"], partial["labels"], partial["truth_boxes"],
                      partial["truth_labels"], ignore=ig)
    everything = coco_map(partial["boxes"], partial["scores"], partial["labels"], partial["truth_boxes"],
                          partial["truth_labels"])
    return {**scored, "frames": len(partial["boxes"]), "min_height_px": MIN_HEIGHT_PX,
            "ignored_small": int(sum(int(m.sum()) for m in ig)),
            "all_boxes": {k: everything[k] for k in ("map50", "map50_95", "ap50_per_class", "ap50_95_per_class")}}


class BoxScorer:
    """The detector's `perception.evaluation.Scorer`: predictions and truth per drive (or label folder),
    pooled before COCO scores them (AP is not an average of per-drive APs)."""

    model = "detector"

    def __init__(self, predictor: DetectorPredictor, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.predictor = predictor
        self.model_id = predictor.model_id
        self.device = predictor.device
        self.cache_dir = cache_dir

    def score_drive(self, spec: DriveSpec) -> DriveScore[dict[str, list]]:
        from perception.models.detector.data import as_list, load_box_frames

        frames = load_box_frames([spec], size_px=self.predictor.input_size_px, cache_dir=self.cache_dir)
        t0 = time.perf_counter()
        det = self.predictor.predict(frames.images, score_threshold=EVAL_SCORE_THRESHOLD)
        infer_s = time.perf_counter() - t0
        partial = {"boxes": [b.numpy() for b in det.boxes], "scores": [s.numpy() for s in det.scores],
                   "labels": [a.numpy() for a in det.labels], "truth_boxes": as_list(frames.truth["boxes"]),
                   "truth_labels": as_list(frames.truth["labels"]), "scale": list(np.asarray(frames.truth["scale"]))}
        return DriveScore(partial, len(frames), infer_s, {"skipped": frames.skipped})

    def merge(self, partials: list[dict[str, list]]) -> dict[str, list]:
        return {k: [v for p in partials for v in p[k]] for k in partials[0]}

    def summarize(self, partial: dict[str, list]) -> dict[str, Any]:
        return box_figures(partial)


def evaluate(checkpoint: str | os.PathLike | None, drives: Sequence[str | DriveSpec], *,
             device: str = EvalConfig.device, batch_size: int = EvalConfig.batch_size,
             cache_dir: str | os.PathLike | None = EvalConfig.cache_dir,
             record: bool = EvalConfig.record) -> dict[str, Any]:
    """Score a detector checkpoint on drives with ``truth/boxes`` and on KITTI / YOLO label folders;
    `evaluate_drives`'s report with `box_figures`."""
    predictor = DetectorPredictor(None if checkpoint is None else str(checkpoint), device=device,
                                  max_batch=batch_size)
    result = evaluate_drives(BoxScorer(predictor, cache_dir=cache_dir), drives, checkpoint=checkpoint)
    if record:
        record_metrics("detector", checkpoint, result)
    return result


def _fmt(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"  # NaN, or null from JSON: no truth


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `evaluate`'s result."""
    lines = [f"detector {r['model_id']} on {', '.join(r['drives'])}: {r['frames']} frames, {r['detections']} "
             f"detections; {r.get('images_per_s', float('nan')):.0f} images/s on {r.get('device', '?')}",
             f"mAP@0.5 {_fmt(r['map50'])}, mAP@[.5:.95] {_fmt(r['map50_95'])} (truth under {r['min_height_px']:g} px "
             f"tall ignored: {r['ignored_small']} boxes; every box scored: {_fmt(r['all_boxes']['map50'])}, "
             f"{_fmt(r['all_boxes']['map50_95'])})",
             "class        truth  AP@0.5  AP@[.5:.95]"]
    lines += [f"{name:<12} {r['truth_per_class'][name]:>5}  {_fmt(r['ap50_per_class'][name]):>6}  "
              f"{_fmt(r['ap50_95_per_class'][name]):>6}" for name in DETECTOR_CLASS_NAMES]
    if r.get("calibration"):
        lines.append("score bin   detections  hits at IoU 0.5")
        lines += [f"{b['score_lo']:.1f}-{b['score_hi']:.1f}   {b['detections']:>10}  {_fmt(b['hit_share_iou50']):>6}"
                  for b in r["calibration"]]
    return "\n".join(lines)
