"""Segmenter inference: a checkpoint ready to label images (batching, fp16 + channels_last on CUDA)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from perception.classes import CLASS_NAMES, NUM_LABELS
from perception.models._api import Checkpoint, resolve_checkpoint
from perception.models.segmenter.network import segmenter
from perception.transforms import normalize, resize_to_input


class SegmenterPredictor:
    """A loaded segmenter checkpoint: uint8 RGB images at its input size -> uint8 label masks.

    >>> predictor = SegmenterPredictor("segmenter_synthetic_city")   # or a file, or None: the default
    >>> masks = predictor.predict_bgr([image_bgr])                    # uint8 [1, h, w] at the input size

    Frames of any size are stretched to the input size (as the training frames were: a segmenter labels
    pixels, it does not infer a pose from the geometry). On CUDA the network runs in fp16 with
    channels_last unless told otherwise; on CPU in fp32 (fp16 kernels on CPU are slow, not fast).
    """

    def __init__(self, checkpoint: Checkpoint | str | Path | None = None, *, device: str | torch.device = "auto",
                 half: bool | None = None, channels_last: bool | None = None, max_batch: int = 64) -> None:
        from perception.training import resolve_device

        self.checkpoint = resolve_checkpoint(checkpoint if not isinstance(checkpoint, Path) else str(checkpoint),
                                             model="segmenter")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else (half and cuda)
        self.channels_last = cuda if channels_last is None else channels_last
        self.max_batch = max(1, int(max_batch))
        self.model_id = self.checkpoint.model_id
        self.input_size_px = self.checkpoint.input_size_px
        self.class_names = list(CLASS_NAMES)  # the table the mask's ids index (12 labels, unlabelled last)
        norm = self.checkpoint.meta["normalization"]
        self.mean = torch.tensor(norm["mean"], device=self.device)
        self.std = torch.tensor(norm["std"], device=self.device)
        model = segmenter(weights=self.checkpoint).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.half() if self.half else model

    def prepare_bgr(self, image_bgr: np.ndarray) -> np.ndarray:
        """One BGR frame (any size, or mono) -> uint8 RGB [3, H, W] at the input size; ValueError when it
        is not a uint8 image of 1 or 3 channels."""
        return resize_to_input(image_bgr, self.input_size_px)

    def predict_bgr(self, images_bgr: Sequence[np.ndarray]) -> torch.Tensor:
        """BGR frames -> uint8 [N, h, w] label masks at the input size."""
        return self.predict(torch.from_numpy(np.stack([self.prepare_bgr(im) for im in images_bgr])))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, *, out_size_px: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 [N, 3, H, W] RGB at the input size -> uint8 [N, h, w] class ids (`perception.classes`)
        at the input size, or at ``out_size_px`` = (w, h) (logits upsampled bilinearly before the arg-max:
        scoring against full-resolution labels)."""
        w, h = out_size_px or self.input_size_px
        outs = []
        # chunks: the logits of a full-size batch at 480x360 would be 11 x 4 bytes a pixel
        chunk_size = self.max_batch if out_size_px is None else min(self.max_batch, 8)
        for chunk in images.split(chunk_size):
            x = normalize(chunk.to(self.device, non_blocking=True), self.mean, self.std)
            if self.half:
                x = x.half()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.model(x)
            if out_size_px is not None and tuple(logits.shape[-2:]) != (h, w):
                logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
            outs.append(logits.argmax(1).to(torch.uint8).cpu())
        return torch.cat(outs) if outs else torch.zeros(0, h, w, dtype=torch.uint8)


def class_fractions(masks: torch.Tensor | np.ndarray) -> np.ndarray:
    """float64 [N, 12]: the share of each label's pixels (`perception.classes` order, unlabelled last) in
    each uint8 [N, h, w] mask."""
    m = torch.as_tensor(np.asarray(masks)).long().reshape(len(masks), -1).clamp(0, NUM_LABELS - 1)
    n = m.shape[0]
    offsets = (NUM_LABELS * torch.arange(n)).unsqueeze(1)
    counts = torch.bincount((m + offsets).reshape(-1), minlength=n * NUM_LABELS).reshape(n, NUM_LABELS)
    return (counts.double() / max(1, m.shape[1])).numpy()
