"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017) on a small dilated ResNet.

    image [B, 3, H, W]
      └─ backbone: a stem and four stages of residual blocks (two 3x3 convolutions each); the first
         blocks stride 2 until the output stride (8 or 16), the later ones dilate instead (the paper's
         dilated ResNet): features [B, C, ceil(H/os), ceil(W/os)]
           ├─ (training only) auxiliary head on stage 3 (the paper's res4b22):
           │    3x3 conv, BN, ReLU, dropout 0.1, 1x1 classifier, bilinear to H x W -> aux logits [B, K, H, W]
           └─ pyramid pooling module: average-pooled to 1x1, 2x2, 3x3 and 6x6 bins, a 1x1 conv to C/4
              channels each, upsampled back and concatenated with the features -> [B, 2C, H/os, W/os]
                └─ head: 3x3 conv, BN, ReLU, dropout 0.1, then either
                     a 1x1 classifier, bilinear to H x W (the paper's; ``decoder_channels=0``), or
                     the stride-4 skip decoder (`SkipDecoder`, with stage 1's features), bilinear x4
                   -> logits [B, K, H, W]

Two configurations are in use (docs/segmenter.md, "The network"): the first checkpoints' output stride 8
at 160x120 / 192x144 with the paper's head (the builder's defaults, so those checkpoints still load), and
since round 5 the synthetic default's 320x240, output stride 16, narrower early stages and the skip
decoder: twice the resolution for thin poles and signs at the same CPU cost a frame.

Why this backbone and not the paper's ResNet-101: nothing is pretrained here, and every checkpoint is
trained from scratch on 2 shared CPU cores in about an hour, so the network must be cheap where the last
stages run dilated. torchvision's ResNet-18/34 ``BasicBlock`` refuses dilation
(``replace_stride_with_dilation`` raises), and its dilated ResNet-50 (Bottleneck, 1024-2048 channels at
stride 8) is far beyond the budget. A dilated MobileNetV3-Small (torchvision's ``InvertedResidual`` blocks
take a dilation; ``backbone="mobilenet_v3_small"``) has fewer multiply-adds, but its dilated depthwise
convolutions are slow on CPU: measured on this machine at 160x120, batch 8, one thread, training ran at 5
images/s against 21 for the dilated ResNet of ``backbone="resnet_dilated"`` (default widths
24/32/64/96/128, blocks 1/2/2/1; ~1 M parameters), which is the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig, _mobilenet_v3_conf
from torchvision.ops.misc import Conv2dNormActivation

from perception.classes import NUM_CLASSES
from perception.models._api import (
    Checkpoint,
    WeightsEntry,
    register_model,
    register_weights,
    resolve_checkpoint,
)

BACKBONES = ("resnet_dilated", "mobilenet_v3_small", "mobilenet_v3_large")
RESNET_WIDTHS = (24, 32, 64, 96, 128)  # stem, stages 1-4 (times width_mult)
RESNET_BLOCKS = (1, 2, 2, 1)  # residual blocks per stage
PYRAMID_BINS = (1, 2, 3, 6)  # the paper's bins
AUX_LOSS_WEIGHT = 0.4  # the paper's weight of the auxiliary loss


@dataclass
class Backbone:
    """A built backbone: ``features`` maps [B, 3, H, W] to [B, out_channels, H/os, W/os]; the output of
    ``features[aux_index]`` ([B, aux_channels, H/os, W/os], the last block of the stage before the last)
    feeds the auxiliary head, that of ``features[low_index]`` ([B, low_channels, H/4, W/4], the last block
    at stride 4) the skip decoder."""

    features: nn.Sequential
    aux_index: int
    aux_channels: int
    out_channels: int
    low_index: int
    low_channels: int


class DilatedBasicBlock(nn.Module):
    """ResNet's basic block with a dilation (torchvision's ``BasicBlock`` refuses one): two 3x3
    convolutions, the first of stride ``stride``, and a 1x1 projection on the shortcut where the shape
    changes. [B, in, H, W] -> [B, out, H/stride, W/stride]."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2dNormActivation(in_channels, out_channels, kernel_size=3, stride=stride,
                                          padding=dilation, dilation=dilation)
        self.conv2 = Conv2dNormActivation(out_channels, out_channels, kernel_size=3, padding=dilation,
                                          dilation=dilation, activation_layer=None)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels else
                         Conv2dNormActivation(in_channels, out_channels, kernel_size=1, stride=stride,
                                              activation_layer=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def dilated_resnet(*, width_mult: float = 1.0, output_stride: int = 8,
                   widths: Sequence[int] | None = None) -> Backbone:
    """The small dilated ResNet: a stride-2 stem, then stages of `DilatedBasicBlock` (RESNET_BLOCKS)
    whose first blocks stride 2 until ``output_stride`` (8 or 16) and dilate (2, 4) after it. ``widths``:
    the stem's and the four stages' channels (None: RESNET_WIDTHS x ``width_mult``)."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride={output_stride!r} must be 8 or 16")
    if widths is None:
        widths = [max(8, int(round(w * width_mult / 8)) * 8) for w in RESNET_WIDTHS]
    elif len(widths) != len(RESNET_WIDTHS) or min(widths) < 1:
        raise ValueError(f"widths={list(widths)!r}: give {len(RESNET_WIDTHS)} positive channel counts "
                         "(stem, stages 1-4)")
    widths = [int(w) for w in widths]
    layers: list[nn.Module] = [Conv2dNormActivation(3, widths[0], kernel_size=3, stride=2)]
    stride, dilation, channels = 2, 1, widths[0]
    for width, blocks in zip(widths[1:], RESNET_BLOCKS, strict=True):
        first_stride = 1
        if stride < output_stride:
            stride, first_stride = stride * 2, 2
        else:
            dilation *= 2
        for i in range(blocks):
            layers.append(DilatedBasicBlock(channels, width, stride=first_stride if i == 0 else 1,
                                            dilation=dilation))
            channels = width
    aux_index = len(layers) - 1 - RESNET_BLOCKS[-1]  # the last block of stage 3
    low_index = RESNET_BLOCKS[0]  # the last block of stage 1: stride 4
    return Backbone(nn.Sequential(*layers), aux_index, widths[-2], widths[-1], low_index, widths[1])


def dilated_mobilenet_v3(arch: str, *, width_mult: float = 1.0, output_stride: int = 8) -> Backbone:
    """MobileNetV3 feature blocks whose stride stops at ``output_stride`` (8 or 16): each later stride-2
    block becomes stride 1 with its dilation doubled, and the blocks after it keep that dilation.

    The auxiliary head takes the last block before the final stage. Without the classification
    network's final 1x1 expansion (576/960 channels): the pyramid pooling module takes the blocks' output.
    """
    if arch not in BACKBONES[1:]:
        raise ValueError(f"backbone {arch!r} is not one of {', '.join(BACKBONES)}")
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride={output_stride!r} must be 8 or 16")
    settings, _ = _mobilenet_v3_conf(arch, width_mult=width_mult)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    first = settings[0].input_channels
    layers: list[nn.Module] = [Conv2dNormActivation(3, first, kernel_size=3, stride=2, norm_layer=norm,
                                                    activation_layer=nn.Hardswish)]
    stride, dilation = 2, 1
    stage_starts: list[int] = []  # index in ``layers`` of each stride-2 block
    for cnf in settings:
        cnf = InvertedResidualConfig(cnf.input_channels, cnf.kernel, cnf.expanded_channels, cnf.out_channels,
                                     cnf.use_se, "HS" if cnf.use_hs else "RE", cnf.stride, dilation, 1.0)
        if cnf.stride == 2:
            stage_starts.append(len(layers))
            if stride >= output_stride:
                # InvertedResidual runs a block of dilation > 1 at stride 1 (torchvision's rule)
                dilation *= 2
                cnf.dilation = dilation
            else:
                stride *= 2
        layers.append(InvertedResidual(cnf, norm))
    aux_index = stage_starts[-1] - 1
    aux_channels = settings[aux_index - 1].out_channels
    low_index = stage_starts[1] - 1  # the last block before the second stride-2 one: stride 4
    return Backbone(nn.Sequential(*layers), aux_index, aux_channels, settings[-1].out_channels, low_index,
                    settings[low_index - 1].out_channels)


class PyramidPooling(nn.Module):
    """The pyramid pooling module: [B, C, h, w] -> [B, C + len(bins) * branch, h, w] (input first)."""

    def __init__(self, in_channels: int, branch_channels: int, bins: tuple[int, ...] = PYRAMID_BINS) -> None:
        super().__init__()
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b),
                          Conv2dNormActivation(in_channels, branch_channels, kernel_size=1))
            for b in self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
                                for branch in self.branches], dim=1)


def _head(in_channels: int, mid_channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    """3x3 conv, BN, ReLU, dropout, and a 1x1 classifier (none when ``num_classes`` is 0: the features)."""
    layers: list[nn.Module] = [Conv2dNormActivation(in_channels, mid_channels, kernel_size=3), nn.Dropout2d(dropout)]
    if num_classes:
        layers.append(nn.Conv2d(mid_channels, num_classes, 1))
    return nn.Sequential(*layers)


class SkipDecoder(nn.Module):
    """DeepLabv3+'s decoder, made cheap for the stride-4 resolution on CPU: the head's features reduced
    by a 1x1 convolution at their stride, upsampled to stride 4, concatenated with the stride-4 backbone
    features (reduced by a 1x1 convolution), then a depthwise-separable 3x3 convolution and the 1x1
    classifier. [B, head, h, w] + [B, low, H/4, W/4] -> logits [B, K, H/4, W/4].

    Why: at output stride 8-16 a pole 3-6 pixels wide covers under a feature cell, and logits upsampled
    bilinearly from there can only draw blobs a stride wide; the stride-4 features still see the pole."""

    def __init__(self, head_channels: int, low_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        skip = max(8, channels // 2)
        self.reduce = Conv2dNormActivation(head_channels, channels, kernel_size=1)
        self.skip = Conv2dNormActivation(low_channels, skip, kernel_size=1)
        self.fuse = nn.Sequential(
            Conv2dNormActivation(channels + skip, channels + skip, kernel_size=3, groups=channels + skip),
            Conv2dNormActivation(channels + skip, channels, kernel_size=1))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([x, self.skip(low)], dim=1)))


class PSPNet(nn.Module):
    """Image -> per-pixel class scores at the input size.

    forward: float [B, 3, H, W] (normalized RGB) -> float [B, num_classes, H, W] logits in eval mode; in
    training mode with an auxiliary head, the tuple (logits, aux logits), both [B, num_classes, H, W].
    H and W need not be multiples of the output stride (features are ceil(H/os) x ceil(W/os), the logits
    upsampled to H x W).

    Architecture options (all recorded in a checkpoint's ``arch``; their defaults are the first
    checkpoints' network, so those still load): ``output_stride`` 8 or 16, ``widths`` (stem and the four
    stages of the dilated ResNet; None: RESNET_WIDTHS x ``width_mult``), ``decoder_channels`` (0: the
    paper's head, logits upsampled from the output stride; > 0: a `SkipDecoder` at stride 4).
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, backbone: str = "resnet_dilated",
                 width_mult: float = 1.0, head_channels: int = 128, aux: bool = True,
                 output_stride: int = 8, widths: Sequence[int] | None = None, decoder_channels: int = 0) -> None:
        super().__init__()
        if backbone == "resnet_dilated":
            built = dilated_resnet(width_mult=width_mult, output_stride=output_stride, widths=widths)
        else:
            if widths is not None:
                raise ValueError(f"widths apply to the resnet_dilated backbone, not {backbone!r}")
            built = dilated_mobilenet_v3(backbone, width_mult=width_mult, output_stride=output_stride)
        self.features, self.aux_index, self.low_index = built.features, built.aux_index, built.low_index
        channels = built.out_channels
        # the paper: each pyramid branch reduces to 1/4 of the features' channels
        self.ppm = PyramidPooling(channels, max(8, channels // 4))
        ppm_channels = channels + len(PYRAMID_BINS) * max(8, channels // 4)
        if decoder_channels > 0:
            self.head = _head(ppm_channels, head_channels, 0, 0.1)
            self.decoder: SkipDecoder | None = SkipDecoder(head_channels, built.low_channels, decoder_channels,
                                                           num_classes)
        else:
            self.head = _head(ppm_channels, head_channels, num_classes, 0.1)
            self.decoder = None
        self.aux_head = _head(built.aux_channels, max(16, head_channels // 2), num_classes, 0.1) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        aux_features = low = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.aux_index:
                aux_features = x
            if i == self.low_index:
                low = x
        x = self.head(self.ppm(x))
        if self.decoder is not None and low is not None:
            x = self.decoder(x, low)
        logits = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.training and self.aux_head is not None and aux_features is not None:
            aux = F.interpolate(self.aux_head(aux_features), size=size, mode="bilinear", align_corners=False)
            return logits, aux
        return logits


@register_model("segmenter", description="PSPNet: per-pixel classes (dilated ResNet, pyramid pooling, "
                "optional stride-4 skip decoder)",
                training="perception.models.segmenter.training",
                evaluation="perception.models.segmenter.evaluation")
def segmenter(*, weights: Checkpoint | str | None = None, num_classes: int = NUM_CLASSES,
              backbone: str = "resnet_dilated", width_mult: float = 1.0, head_channels: int = 128,
              aux: bool = True, output_stride: int = 8, widths: Sequence[int] | None = None,
              decoder_channels: int = 0) -> PSPNet:
    """Build the segmenter (PSPNet). With ``weights`` (a Checkpoint, a file, or a registered name) the
    architecture comes from the checkpoint and the model is returned loaded, in eval mode."""
    if weights is None:
        return PSPNet(num_classes=num_classes, backbone=backbone, width_mult=width_mult,
                      head_channels=head_channels, aux=aux, output_stride=output_stride, widths=widths,
                      decoder_channels=decoder_channels)
    ckpt = resolve_checkpoint(weights, model="segmenter")
    try:
        model = PSPNet(**ckpt.arch)
        model.load_state_dict(ckpt.state_dict)
    except (TypeError, RuntimeError) as exc:  # an older (FCN) segmenter checkpoint, or a foreign arch
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"checkpoint {ckpt.model_id}: its arch {ckpt.arch} is not this PSPNet's ({reason})") from None
    return model.eval()


register_weights(WeightsEntry(
    name="segmenter_synthetic_city", model="segmenter", filename="segmenter_synthetic_city.pt", default=True,
    description="PSPNet on the default synthetic city (day and night drives), 320x240, output stride 16 + "
                "stride-4 decoder; docs/segmenter.md"))
register_weights(WeightsEntry(
    name="segmenter_camvid", model="segmenter", filename="segmenter_camvid.pt",
    description="PSPNet on CamVid train (real street frames), 192x144; docs/segmenter.md"))
