"""PoseNet (Kendall et al., ICCV 2015): from one street image, the camera's position and heading.

A MobileNetV3 or ResNet backbone (torchvision's, written out here; trained from scratch) and a small
head give, per image, the position as *anchor + offset* (Saha et al., BMVC 2018, "Improved visual relocalization by
discovering anchor points"): K anchor points spread over the training area (k-means of the training
positions, stored in the checkpoint) are scored by a softmax, and each anchor regresses the offset from
itself to the camera. Plain east/north regression from scratch crawled to ~40 m after 15 epochs on the
synthetic city; deciding *which stretch of street* is a classification a CNN learns far faster, and the
offset regression then only has to resolve metres.

| output slice          | meaning                                                                    |
|-----------------------|----------------------------------------------------------------------------|
| ``HEADING``           | (sin, cos) of the heading (clockwise from north); any length, direction counts |
| ``POS_LOG_VAR``       | log-variances of the east and north offset error, normalized units squared  |
| ``POS_CORR``          | east-north correlation of that error, through tanh (scaled to +-0.95)       |
| ``HEADING_LOG_VAR``   | log-variance of the heading in rad^2 (a von Mises concentration 1/var)      |
| ``logits_slice(K)``   | anchor scores [K]                                                           |
| ``offsets_slice(K)``  | per-anchor (east, north) offsets [K, 2], in units of the anchor spacing     |

Positions are normalized, ``(x - center_enu_m) / scale_m`` in the checkpoint's ENU frame (pyproj).
The learned log-variances are Kendall & Cipolla's (CVPR 2017) uncertainty weighting of the position and
heading losses, made per image (heteroscedastic) so that each fix gets its own covariance: the loss is
the negative log-likelihood of the truth under a 2-D Gaussian for the offset and a von Mises density for
the heading, plus the cross-entropy of the anchor scores. A fix's covariance is the offset covariance
plus the spread of the anchors' candidate positions under the softmax (moment matching the mixture), so
a view that could be one of two streets gets an ellipse covering both — not a confident wrong answer.

Outputs become lat/lon with the geo origin stored in the checkpoint (`PosePredictor`).

This module is the network, its builder and weights, and the layout of its output (`decode`); the loss
is in `loss`, inference in `predictor`, the training task in `training`, the anchors' k-means in
`anchors`, the figures in `evaluation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from perception.models._api import (
    Checkpoint,
    WeightsEntry,
    register_model,
    register_weights,
    resolve_checkpoint,
)

# Named slices of the head's output [B, NUM_FIXED + 3K] (never bare indices).
HEADING = slice(0, 2)
POS_LOG_VAR = slice(2, 4)
POS_CORR = 4
HEADING_LOG_VAR = 5
NUM_FIXED = 6


def logits_slice(num_anchors: int) -> slice:
    return slice(NUM_FIXED, NUM_FIXED + num_anchors)


def offsets_slice(num_anchors: int) -> slice:
    return slice(NUM_FIXED + num_anchors, NUM_FIXED + 3 * num_anchors)


BACKBONES = ("mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet34")
DEFAULT_BACKBONE = "mobilenet_v3_small"
DEFAULT_INPUT_SIZE_PX = (160, 120)  # (width, height): 4:3 like the synthetic camera
DEFAULT_ANCHORS = 256
# log-variance bounds (normalized units): keep exp() finite and stop the NLL from paying any error
# off by blowing up the variance, or from chasing exact fits with a vanishing one
LOG_VAR_MIN, LOG_VAR_MAX = -18.0, 4.0
HEADING_LOG_VAR_MIN, HEADING_LOG_VAR_MAX = -12.0, 3.0
MAX_CORR = 0.95
SOFT_LABEL_SIGMA = 0.5  # anchor soft labels: Gaussian of this many anchor spacings around the truth
OFFSET_ANCHORS = 3  # the nearest anchors that learn to point at the truth (and so matter in the mixture)


# ---------------------------------------------------------------------------------------------- backbones
# torchvision's MobileNetV3 and ResNet feature extractors, written out in plain torch.nn so that a PoseNet
# node starts without importing torchvision: its import pulls in torch._dynamo (for ``torchvision.ops``),
# a third of a respawned node's start (BENCHMARKS.md, "PoseNet node start after a respawn"). Module names,
# parameter names and shapes are torchvision's (checkpoints trained with torchvision's load unchanged),
# the forward pass is the same arithmetic (bit-identical outputs), and a from-scratch build draws the same
# random numbers in the same order (same initial weights for a seed): tests/perception/test_posenet_backbone.py
# compares all three with torchvision while it is installed.

# MobileNetV3 inverted residual blocks (Howard et al. 2019, tables 1 and 2; torchvision's
# ``_mobilenet_v3_conf`` at width 1.0, dilation 1): (in, kernel, expanded, out, squeeze-excite,
# activation "RE" ReLU / "HS" hard-swish, stride)
_MOBILENET_V3_BLOCKS = {
    "mobilenet_v3_small": [
        (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
        (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1)],
    "mobilenet_v3_large": [
        (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1)],
}
# torchvision's classifier widths: built and initialised only to draw the same random numbers (see _init)
_MOBILENET_V3_LAST_CHANNEL = {"mobilenet_v3_small": 1024, "mobilenet_v3_large": 1280}
_RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
_IMAGENET_CLASSES = 1000


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never down by more than 10 % (MobileNet's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _ConvNormAct(nn.Sequential):
    """conv (no bias) -> batch norm -> activation: torchvision's ``Conv2dNormActivation`` (keys ``0``, ``1``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.Hardswish) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class _SqueezeExcitation(nn.Module):
    """Channel attention of MobileNetV3 (torchvision's ``SqueezeExcitation`` with a hard sigmoid)."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class _InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project (+ input when shapes match)."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, use_se: bool, activation: str,
                 stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if activation == "HS" else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_ConvNormAct(cin, expanded, 1, activation=act))
        layers.append(_ConvNormAct(expanded, expanded, kernel, stride, groups=expanded, activation=act))
        if use_se:
            layers.append(_SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
        layers.append(_ConvNormAct(expanded, cout, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class _BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 conv + BN, added to the input (downsampled by a 1x1 conv when needed)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def _init(modules: list[nn.Module], *, resnet: bool) -> None:
    """torchvision's initialisation of these networks, in its module order (so the same random draws)."""
    for m in modules:
        if isinstance(m, nn.Conv2d):
            if resnet:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and not resnet:
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _mobilenet_v3_features(name: str) -> nn.Sequential:
    """torchvision's ``mobilenet_v3_*(weights=None).features``: [B,3,H,W] -> [B,C,H/32,W/32]."""
    blocks = _MOBILENET_V3_BLOCKS[name]
    last_in = blocks[-1][3]
    features = nn.Sequential(_ConvNormAct(3, blocks[0][0], 3, 2), *(_InvertedResidual(*b) for b in blocks),
                             _ConvNormAct(last_in, 6 * last_in, 1))
    # torchvision builds its classifier next (random draws of its default init) and then re-initialises
    # every module in order: the same draws here give the same initial backbone for a seed
    classifier = nn.Sequential(nn.Linear(6 * last_in, _MOBILENET_V3_LAST_CHANNEL[name]),
                               nn.Linear(_MOBILENET_V3_LAST_CHANNEL[name], _IMAGENET_CLASSES))
    _init([*features.modules(), *classifier.modules()], resnet=False)
    return features


def _resnet_features(name: str) -> nn.Sequential:
    """torchvision's ``resnet*(weights=None)`` without its pool and classifier: [B,3,H,W] -> [B,512,H/32,W/32]."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (blocks, width) in enumerate(zip(_RESNET_LAYERS[name], (64, 128, 256, 512), strict=True)):
        stage = []
        for j in range(blocks):
            stage.append(_BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1))
            cin = width
        layers.append(nn.Sequential(*stage))
    features = nn.Sequential(*layers)
    nn.Linear(512, _IMAGENET_CLASSES)  # torchvision's fc: its default init's random draws come here
    _init(list(features.modules()), resnet=True)
    return features


def _backbone(name: str) -> tuple[nn.Module, int]:
    """(feature extractor [B,3,H,W] -> [B,C,h,w], C), randomly initialised (no weights can be downloaded)."""
    if name in _MOBILENET_V3_BLOCKS:
        features = _mobilenet_v3_features(name)
        return features, features[-1].out_channels
    if name in _RESNET_LAYERS:
        return _resnet_features(name), 512
    raise ValueError(f"backbone {name!r} is not one of {', '.join(BACKBONES)}")


class PoseNet(nn.Module):
    """Image -> raw pose outputs.

    forward: float [B, 3, H, W] (normalized RGB) -> float [B, NUM_FIXED + 3K] (see the module docstring).
    Buffers: ``anchors`` [K, 2] (normalized east/north), ``offset_scale`` [] (normalized units per unit
    of offset output: the anchor spacing), set from the training data with `set_anchors`.
    """

    def __init__(self, *, backbone: str = DEFAULT_BACKBONE, hidden: int = 256, dropout: float = 0.2,
                 num_anchors: int = DEFAULT_ANCHORS, pool_grid: tuple[int, int] | list[int] = (3, 4)) -> None:
        super().__init__()
        if num_anchors < 1:
            raise ValueError(f"num_anchors={num_anchors!r} must be at least 1")
        self.num_anchors = int(num_anchors)
        self.features, channels = _backbone(backbone)
        for m in self.features.modules():
            if isinstance(m, nn.BatchNorm2d):
                # torchvision's MobileNetV3 uses momentum 0.01, tuned for ImageNet's 600k steps; a few
                # thousand steps would leave the running statistics (used at inference) far from the
                # batch statistics the network trained with
                m.momentum = 0.1
        # pool to a coarse grid, not to one vector: *where* in the view a facade or a gap between
        # buildings appears says where the camera is; a global average throws that layout away
        grid = (int(pool_grid[0]), int(pool_grid[1]))
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * grid[0] * grid[1], hidden), nn.Hardswish(),
                                  nn.Dropout(dropout), nn.Linear(hidden, NUM_FIXED + 3 * self.num_anchors))
        self.register_buffer("anchors", torch.zeros(self.num_anchors, 2))
        self.register_buffer("offset_scale", torch.ones(()))
        last = self.head[-1]
        nn.init.normal_(last.weight, std=0.01)  # start with uniform anchor scores, zero offsets
        nn.init.zeros_(last.bias)
        with torch.no_grad():
            last.bias[HEADING] = torch.tensor([0.0, 1.0])  # a unit vector: the angle loss is defined at once
            last.bias[POS_LOG_VAR] = 0.0  # one anchor spacing
            last.bias[HEADING_LOG_VAR] = 0.0

    def set_anchors(self, anchors: torch.Tensor, offset_scale: float) -> None:
        """anchors: float [K, 2] normalized positions; offset_scale: their typical spacing (normalized)."""
        if tuple(anchors.shape) != (self.num_anchors, 2):
            raise ValueError(f"anchors shaped {tuple(anchors.shape)}, model has {self.num_anchors}")
        with torch.no_grad():
            self.anchors.copy_(anchors)
            self.offset_scale.fill_(float(offset_scale))
            # the offset log-variance starts at one anchor spacing squared
            self.head[-1].bias[POS_LOG_VAR] = 2.0 * math.log(max(float(offset_scale), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


@register_model("posenet", description="position (lat/lon) and heading with covariance from one image",
                training="perception.models.posenet.training", evaluation="perception.models.posenet.evaluation")
def posenet(*, weights: Checkpoint | str | None = None, backbone: str = DEFAULT_BACKBONE, hidden: int = 256,
            dropout: float = 0.2, num_anchors: int = DEFAULT_ANCHORS,
            pool_grid: tuple[int, int] | list[int] = (3, 4)) -> PoseNet:
    """Build PoseNet. With ``weights`` (a Checkpoint, a file, or a registered name) the architecture
    comes from the checkpoint and the model is returned loaded, in eval mode."""
    if weights is None:
        return PoseNet(backbone=backbone, hidden=hidden, dropout=dropout, num_anchors=num_anchors,
                       pool_grid=pool_grid)
    ckpt = resolve_checkpoint(weights, model="posenet")
    model = PoseNet(**ckpt.arch)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


register_weights(WeightsEntry(
    name="posenet_synthetic_city", model="posenet", filename="posenet_synthetic_city.pt", default=True,
    description="MobileNetV3-small, 128x96, trained on the default synthetic city (3x2 blocks, city seed 0): "
                "every street both ways in both lanes at four times of day, with a place index of its 15 239 "
                "day + night training views and 3 788 surveyed turning views that gives its hypotheses "
                "(docs/posenet.md)"))
register_weights(WeightsEntry(
    name="posenet_synthetic_city_night", model="posenet", filename="posenet_synthetic_city_night.pt",
    description="posenet_synthetic_city fine-tuned on the same routes at night with heavy traffic, noise and "
                "blur (day + night); better at night and in its top-5, not yet the fusion's default "
                "(docs/posenet.md, 'Night and traffic')"))


# ---------------------------------------------------------------------------------------------- outputs


@dataclass
class DecodedPose:
    """Raw outputs in normalized units (B images, K anchors).

    prob [B, K] anchor probabilities; candidates [B, K, 2] anchor + offset; best [B] the top anchor;
    position [B, 2] its candidate; heading_vec [B, 2] unit (sin, cos); heading_norm [B]; heading_rad [B];
    pos_log_var [B, 2]; corr [B]; heading_log_var [B]; logits [B, K].
    """

    logits: torch.Tensor
    prob: torch.Tensor
    candidates: torch.Tensor
    best: torch.Tensor
    position: torch.Tensor
    heading_vec: torch.Tensor
    heading_norm: torch.Tensor
    heading_rad: torch.Tensor
    pos_log_var: torch.Tensor
    corr: torch.Tensor
    heading_log_var: torch.Tensor

    def offset_covariance(self) -> torch.Tensor:
        """[B, 2, 2] covariance of the offset error, normalized units squared."""
        var = self.pos_log_var.exp()
        std = var.sqrt()
        off = self.corr * std[:, 0] * std[:, 1]
        return torch.stack([torch.stack([var[:, 0], off], -1), torch.stack([off, var[:, 1]], -1)], -2)

    def covariance(self) -> torch.Tensor:
        """[B, 2, 2] covariance of ``position``: offset covariance + the candidates' spread under ``prob``
        around the chosen one (the second moment of the mixture about the reported point)."""
        d = self.candidates - self.position[:, None, :]  # [B, K, 2]
        spread = torch.einsum("bk,bki,bkj->bij", self.prob, d, d)
        return self.offset_covariance() + spread


def decode(raw: torch.Tensor, anchors: torch.Tensor, offset_scale: torch.Tensor | float) -> DecodedPose:
    """Split and bound the head's output [B, NUM_FIXED + 3K] (float32) with the model's anchors [K, 2]."""
    raw = raw.float()
    k = anchors.shape[0]
    logits = raw[:, logits_slice(k)]
    offsets = raw[:, offsets_slice(k)].reshape(-1, k, 2)
    candidates = anchors.to(raw.device, torch.float32)[None] + offsets * offset_scale
    best = logits.argmax(1)
    vec = raw[:, HEADING]
    norm = vec.norm(dim=1).clamp_min(1e-6)
    return DecodedPose(
        logits=logits, prob=logits.softmax(1), candidates=candidates, best=best,
        position=candidates[torch.arange(raw.shape[0], device=raw.device), best],
        heading_vec=vec / norm[:, None], heading_norm=norm, heading_rad=torch.atan2(vec[:, 0], vec[:, 1]),
        pos_log_var=raw[:, POS_LOG_VAR].clamp(LOG_VAR_MIN, LOG_VAR_MAX),
        corr=MAX_CORR * torch.tanh(raw[:, POS_CORR]),
        heading_log_var=raw[:, HEADING_LOG_VAR].clamp(HEADING_LOG_VAR_MIN, HEADING_LOG_VAR_MAX),
    )


