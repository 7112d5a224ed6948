"""Detector inference: a checkpoint ready to find boxes in camera frames.

Geometry (`fit_to_input`): a frame is letterboxed (black rows or columns at the bottom or right to the
input's aspect, `perception.transforms.pad_to_aspect`) and resized; boxes come back in the frame's own
pixels (divided by the one scale factor, clipped to the frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from perception.models._api import Checkpoint, resolve_checkpoint
from perception.models.detector.data import letterbox_scale
from perception.models.detector.network import DetectionBatch, decode, detector
from perception.transforms import normalize, pad_to_aspect, resize_to_input

DEFAULT_SCORE_THRESHOLD = 0.5  # the node's: boxes below this are not published (evaluation keeps 0.01+)
DEFAULT_NMS_IOU = 0.6


def fit_to_input(image_bgr: np.ndarray, size_px: tuple[int, int]) -> tuple[np.ndarray, float]:
    """One BGR frame (any size, or mono) -> (uint8 RGB [3, H, W] at ``size_px``, input px per frame px);
    ValueError saying what is wrong when it is not an image."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim not in (2, 3) or 0 in image_bgr.shape[:2]:
        raise ValueError(f"image must be uint8 [H, W, 3] BGR; got {getattr(image_bgr, 'shape', type(image_bgr))}")
    scale = letterbox_scale(image_bgr.shape[1], image_bgr.shape[0], size_px)
    return resize_to_input(pad_to_aspect(image_bgr, size_px[0] / size_px[1]), size_px), scale


class DetectorPredictor:
    """A loaded detector checkpoint: batching, fp16 and channels_last on CUDA (fp32 on CPU), decoding and
    class-wise NMS.

    >>> predictor = DetectorPredictor()                       # the default checkpoint (or a file, a name)
    >>> boxes, scores, labels = predictor.detect_bgr([image_bgr])[0]   # frame pixels, detector classes
    """

    def __init__(self, checkpoint: Checkpoint | str | Path | None = None, *, device: str | torch.device = "auto",
                 half: bool | None = None, channels_last: bool | None = None, max_batch: int = 64,
                 nms_iou: float = DEFAULT_NMS_IOU, max_detections: int = 100) -> None:
        from perception.training import resolve_device

        self.checkpoint = resolve_checkpoint(checkpoint if not isinstance(checkpoint, Path) else str(checkpoint),
                                             model="detector")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else (half and cuda)  # fp16 kernels on CPU are slow, not fast
        self.channels_last = cuda if channels_last is None else channels_last
        self.max_batch = max(1, int(max_batch))
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.model_id = self.checkpoint.model_id
        self.input_size_px = self.checkpoint.input_size_px
        meta = self.checkpoint.meta
        self.class_ids = [int(c) for c in meta["class_ids"]]  # detector index -> perception.classes id
        self.class_names = [str(n) for n in meta["classes"]]
        norm = meta["normalization"]
        self.mean = torch.tensor(norm["mean"], device=self.device)
        self.std = torch.tensor(norm["std"], device=self.device)
        model = detector(weights=self.checkpoint).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.half() if self.half else model

    def prepare_bgr(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        return fit_to_input(image_bgr, self.input_size_px)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, *, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> DetectionBatch:
        """uint8 [N, 3, H, W] RGB at the input size -> boxes in input pixels, in chunks of max_batch."""
        out = DetectionBatch([], [], [])
        for chunk in images.split(self.max_batch):
            x = normalize(chunk.to(self.device, non_blocking=True), self.mean, self.std)
            if self.half:
                x = x.half()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            got = decode(self.model(x), self.input_size_px, score_threshold=score_threshold, nms_iou=self.nms_iou,
                         max_detections=self.max_detections)
            out.boxes += [b.float().cpu() for b in got.boxes]
            out.scores += [s.float().cpu() for s in got.scores]
            out.labels += [a.cpu() for a in got.labels]
        return out

    def detect_bgr(self, images_bgr: Sequence[np.ndarray], *, score_threshold: float = DEFAULT_SCORE_THRESHOLD
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """BGR frames (any size) -> per frame (boxes float32 [n, 4] xyxy frame pixels, scores float32 [n],
        detector class index int64 [n])."""
        prepared = [self.prepare_bgr(im) for im in images_bgr]
        if not prepared:
            return []
        det = self.predict(torch.from_numpy(np.stack([p[0] for p in prepared])), score_threshold=score_threshold)
        return [to_frame_pixels(b, s, a, scale, im.shape[1], im.shape[0])
                for b, s, a, (_, scale), im in zip(det.boxes, det.scores, det.labels, prepared, images_bgr, strict=True)]


def to_frame_pixels(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, scale: float, width_px: int,
                    height_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of the input (letterboxed) back in the frame's pixels, clipped to it; boxes wholly in the
    letterbox's padding are dropped."""
    from torchvision.ops import clip_boxes_to_image

    b = clip_boxes_to_image(boxes.float() / scale, (height_px, width_px))
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return (b[keep].numpy().astype(np.float32), scores[keep].numpy().astype(np.float32),
            labels[keep].numpy().astype(np.int64))
