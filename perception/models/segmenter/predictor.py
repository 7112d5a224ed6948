"""Segmenter inference: a checkpoint ready to label images."""

from __future__ import annotations

from pathlib import Path

import torch

from perception.models._api import Checkpoint, resolve_checkpoint
from perception.models.segmenter.network import segmenter
from perception.transforms import normalize


class SegmenterPredictor:
    """A loaded segmenter checkpoint: uint8 RGB images at its input size -> uint8 label masks."""

    def __init__(self, checkpoint: Checkpoint | str | Path | None = None, *, device: str | torch.device = "auto",
                 max_batch: int = 64) -> None:
        from perception.training import resolve_device

        self.checkpoint = resolve_checkpoint(checkpoint if not isinstance(checkpoint, Path) else str(checkpoint),
                                             model="segmenter")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.max_batch = max(1, int(max_batch))
        self.model_id = self.checkpoint.model_id
        self.input_size_px = self.checkpoint.input_size_px
        norm = self.checkpoint.meta["normalization"]
        self.mean = torch.tensor(norm["mean"], device=self.device)
        self.std = torch.tensor(norm["std"], device=self.device)
        self.model = segmenter(weights=self.checkpoint).to(self.device)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] RGB at the input size -> uint8 [N, H, W] class ids (`perception.classes`)."""
        outs = [self.model(normalize(chunk.to(self.device), self.mean, self.std)).argmax(1).to(torch.uint8).cpu()
                for chunk in images.split(self.max_batch)]
        w, h = self.input_size_px
        return torch.cat(outs) if outs else torch.zeros(0, h, w, dtype=torch.uint8)
