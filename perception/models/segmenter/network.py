"""The small segmenter network: strided conv blocks, a 1x1 classifier, bilinear upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.classes import NUM_CLASSES
from perception.models._api import Checkpoint, register_model, resolve_checkpoint


class SmallSegmenter(nn.Module):
    """Image -> per-pixel class scores at the input size.

    forward: float [B, 3, H, W] (normalized RGB) -> float [B, num_classes, H, W] logits.
    ``depth`` conv blocks of stride 2 (features at 1/2^depth resolution), widths ``width * 2^i``.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth={depth!r} and width={width!r} must be at least 1")
        blocks: list[nn.Module] = []
        channels = 3
        for i in range(depth):
            out = width * 2**i
            blocks += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model("segmenter", description="per-pixel classes (small FCN baseline; PSPNet replaces it)",
                training="perception.models.segmenter.training",
                evaluation="perception.models.segmenter.evaluation")
def segmenter(*, weights: Checkpoint | str | None = None, num_classes: int = NUM_CLASSES, width: int = 16,
              depth: int = 3) -> SmallSegmenter:
    """Build the segmenter. With ``weights`` (a Checkpoint, a file, or a registered name) the
    architecture comes from the checkpoint and the model is returned loaded, in eval mode."""
    if weights is None:
        return SmallSegmenter(num_classes=num_classes, width=width, depth=depth)
    ckpt = resolve_checkpoint(weights, model="segmenter")
    model = SmallSegmenter(**ckpt.arch)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()
