"""The detector: a single-stage, anchor-free, YOLOX/FCOS-style network (one box per feature-map point).

A torchvision backbone trained from scratch gives features at strides 8, 16 and 32; torchvision's
`FeaturePyramidNetwork` mixes them top-down; one small decoupled head per level (YOLOX) predicts, at every
point of its grid:

| output channels | meaning                                                                          |
|-----------------|----------------------------------------------------------------------------------|
| ``CLS``         | class logits [C], one sigmoid per detectable class (`DETECTOR_CLASSES`)          |
| ``BOX``         | (dx, dy, log w, log h): box centre = (point + d) * stride, size = exp(.) * stride  |
| ``QUALITY``     | logit of the IoU the predicted box will have with its object (IoU-aware scoring)   |

A point's score for class c is ``sqrt(sigmoid(cls_c) * sigmoid(quality))``: the classifier says *what*,
the quality branch how well the box fits, so a confident class on a badly placed box scores low and the
scores rank boxes as COCO's mAP wants (PP-YOLO's IoU-aware branch). Boxes are parameterised by their
centre offset and log size (YOLOX) rather than FCOS's distances to the sides, because the synthetic
city's signs are 3-5 px wide: the grid point nearest such a box often lies outside it, where
side distances would be negative.

Outputs are raw: `decode` turns them into boxes (xyxy pixels of the input), scores and classes with
`torchvision.ops.batched_nms`. Training targets and losses are in `loss`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.ops import FeaturePyramidNetwork, batched_nms, box_convert, clip_boxes_to_image
from torchvision.ops.misc import Conv2dNormActivation

from perception.classes import CLASS_NAMES, DETECTABLE_CLASSES
from perception.models._api import (
    Checkpoint,
    WeightsEntry,
    register_model,
    register_weights,
    resolve_checkpoint,
)

# The detector's classes, index -> project class id (perception.classes): sign, car, pedestrian, bicyclist.
DETECTOR_CLASSES: tuple[int, ...] = tuple(DETECTABLE_CLASSES)
DETECTOR_CLASS_NAMES: tuple[str, ...] = tuple(CLASS_NAMES[c] for c in DETECTOR_CLASSES)
NUM_DETECTOR_CLASSES = len(DETECTOR_CLASSES)

STRIDES: tuple[int, ...] = (8, 16, 32)
BACKBONES = ("mobilenet_v3_small", "mobilenet_v3_large", "resnet18")
DEFAULT_BACKBONE = "mobilenet_v3_small"
DEFAULT_INPUT_SIZE_PX = (320, 240)  # (width, height): the synthetic camera's own size, no downscaling
MAX_LOG_SIZE = 6.0  # exp(6) = 400 strides: bounds exp() of an untrained head

# Named slices of a level's output [B, 4 + 1 + C, h, w]
BOX = slice(0, 4)
QUALITY = 4
CLS_START = 5


def _stage_ends(features: nn.Sequential) -> list[int]:
    """Indices of the last module of ``features`` at strides 8, 16 and 32 (a probe on a 64x64 input)."""
    ends: dict[int, int] = {}
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        for i, m in enumerate(features):
            x = m(x)
            ends[64 // x.shape[-1]] = i
    return [ends[s] for s in STRIDES]


class _Body(nn.Module):
    """Backbone features at strides 8, 16, 32: [B,3,H,W] -> OrderedDict of 3 maps."""

    def __init__(self, name: str, width_mult: float) -> None:
        super().__init__()
        if name.startswith("mobilenet_v3"):
            net = getattr(torchvision.models, name)(weights=None, width_mult=width_mult)
            # the last 1x1 expansion (576/960 channels) only feeds ImageNet's classifier: left out
            feats = net.features[:-1]
            ends = _stage_ends(feats)
            self.stages = nn.ModuleList([feats[: ends[0] + 1], feats[ends[0] + 1: ends[1] + 1],
                                         feats[ends[1] + 1: ends[2] + 1]])
        elif name == "resnet18":
            if width_mult != 1.0:
                raise ValueError("resnet18 has no width multiplier; use width_mult=1.0")
            net = torchvision.models.resnet18(weights=None)
            self.stages = nn.ModuleList([
                nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2),
                net.layer3, net.layer4])
        else:
            raise ValueError(f"backbone {name!r} is not one of {', '.join(BACKBONES)}")
        with torch.no_grad():
            x = torch.zeros(1, 3, 64, 64)
            self.out_channels = []
            for stage in self.stages:
                x = stage(x)
                self.out_channels.append(int(x.shape[1]))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1  # torchvision's 0.01 is tuned for ImageNet's 600k steps (see PoseNet)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[str(i)] = x
        return out


def _dw_block(channels: int) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BN and SiLU (YOLOX's activation): a 3x3 receptive field at
    a tenth of a full 3x3 convolution's cost."""
    return nn.Sequential(
        Conv2dNormActivation(channels, channels, 3, groups=channels, activation_layer=nn.SiLU),
        Conv2dNormActivation(channels, channels, 1, activation_layer=nn.SiLU))


class _Head(nn.Module):
    """One level's decoupled head (YOLOX): a classification branch and a box + quality branch."""

    def __init__(self, channels: int, num_classes: int, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.cls_branch = _dw_block(channels)
        self.reg_branch = _dw_block(channels)
        self.cls_out = nn.Conv2d(channels, num_classes, 1)
        self.reg_out = nn.Conv2d(channels, 5, 1)
        # focal-loss prior (RetinaNet): every point starts at p = 0.01, so the many background points do
        # not swamp the first steps
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -torch.log(torch.tensor((1 - prior_prob) / prior_prob)).item())
        nn.init.normal_(self.reg_out.weight, std=0.01)
        nn.init.zeros_(self.reg_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.reg_out(self.reg_branch(x)), self.cls_out(self.cls_branch(x))], 1)


class Detector(nn.Module):
    """Image -> raw outputs per level.

    forward: float [B, 3, H, W] (normalized RGB; H, W multiples of 32) -> list of 3 tensors
    [B, 5 + C, H/s, W/s] for s in `STRIDES` (channel layout: ``BOX``, ``QUALITY``, classes from
    ``CLS_START``; see the module docstring).
    """

    def __init__(self, *, backbone: str = DEFAULT_BACKBONE, width_mult: float = 1.0, fpn_channels: int = 64,
                 num_classes: int = NUM_DETECTOR_CLASSES) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.strides = STRIDES
        self.body = _Body(backbone, float(width_mult))
        self.fpn = FeaturePyramidNetwork(self.body.out_channels, fpn_channels)
        self.heads = nn.ModuleList([_Head(fpn_channels, self.num_classes) for _ in STRIDES])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.fpn(self.body(x))
        return [head(f) for head, f in zip(self.heads, feats.values(), strict=True)]


@register_model("detector", description="YOLO-style boxes of signs, cars, pedestrians and bicyclists",
                training="perception.models.detector.training", evaluation="perception.models.detector.evaluation")
def detector(*, weights: Checkpoint | str | None = None, backbone: str = DEFAULT_BACKBONE, width_mult: float = 1.0,
             fpn_channels: int = 64, num_classes: int = NUM_DETECTOR_CLASSES) -> Detector:
    """Build the detector. With ``weights`` (a Checkpoint, a file, or a registered name) the architecture
    comes from the checkpoint and the model is returned loaded, in eval mode."""
    if weights is None:
        return Detector(backbone=backbone, width_mult=width_mult, fpn_channels=fpn_channels,
                        num_classes=num_classes)
    ckpt = resolve_checkpoint(weights, model="detector")
    model = Detector(**ckpt.arch)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


register_weights(WeightsEntry(
    name="detector_synthetic_city", model="detector", filename="detector_synthetic_city.pt", default=True,
    description="MobileNetV3-small + FPN, 320x240, trained on the default synthetic city by day and by night "
                "(docs/detector.md)"))


# ---------------------------------------------------------------------------------------------- outputs


def grid_points(outputs: list[torch.Tensor], strides: tuple[int, ...] = STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """The points of every level, flattened in the order of `flatten_outputs`: (xy [P, 2] grid
    coordinates in units of their stride (column, row), stride [P])."""
    xy, stride = [], []
    for out, s in zip(outputs, strides, strict=True):
        h, w = out.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, device=out.device), torch.arange(w, device=out.device), indexing="ij")
        xy.append(torch.stack([xs, ys], -1).reshape(-1, 2).float())
        stride.append(torch.full((h * w,), float(s), device=out.device))
    return torch.cat(xy), torch.cat(stride)


def flatten_outputs(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Levels [B, 5 + C, h, w] -> [B, P, 5 + C] (level by level, row-major), float32."""
    return torch.cat([o.float().flatten(2).transpose(1, 2) for o in outputs], 1)


def decode_boxes(raw_box: torch.Tensor, xy: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """raw (dx, dy, log w, log h) [..., P, 4] -> boxes xyxy [..., P, 4] in input pixels."""
    centre = (xy + 0.5 + raw_box[..., :2]) * stride[:, None]
    size = raw_box[..., 2:].clamp(max=MAX_LOG_SIZE).exp() * stride[:, None]
    return box_convert(torch.cat([centre, size], -1), "cxcywh", "xyxy")


@dataclass
class DetectionBatch:
    """Detections of N images, one entry per image: boxes float32 [n_i, 4] xyxy pixels of the input,
    scores float32 [n_i] in [0, 1], labels int64 [n_i] detector class index (`DETECTOR_CLASSES`)."""

    boxes: list[torch.Tensor]
    scores: list[torch.Tensor]
    labels: list[torch.Tensor]


@torch.no_grad()
def decode(outputs: list[torch.Tensor], input_size_px: tuple[int, int], *, score_threshold: float = 0.05,
           nms_iou: float = 0.6, pre_nms: int = 1000, max_detections: int = 100) -> DetectionBatch:
    """Raw outputs -> per-image boxes, scores, labels, after class-wise NMS (`batched_nms`)."""
    flat = flatten_outputs(outputs)
    xy, stride = grid_points(outputs)
    boxes = clip_boxes_to_image(decode_boxes(flat[..., BOX], xy, stride), (input_size_px[1], input_size_px[0]))
    scores = (flat[..., CLS_START:].sigmoid() * flat[..., QUALITY: QUALITY + 1].sigmoid()).sqrt()  # [B, P, C]
    out = DetectionBatch([], [], [])
    num_classes = scores.shape[-1]
    for b in range(flat.shape[0]):
        s = scores[b].reshape(-1)
        keep = torch.nonzero(s > score_threshold).squeeze(1)
        if keep.numel() > pre_nms:
            keep = keep[s[keep].topk(pre_nms).indices]
        point, label = keep // num_classes, keep % num_classes
        bx, sc = boxes[b, point], s[keep]
        nonempty = (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])
        bx, sc, label = bx[nonempty], sc[nonempty], label[nonempty]
        kept = batched_nms(bx, sc, label, nms_iou)[:max_detections]
        out.boxes.append(bx[kept])
        out.scores.append(sc[kept])
        out.labels.append(label[kept])
    return out
