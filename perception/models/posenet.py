"""PoseNet (Kendall et al., ICCV 2015): from one street image, the camera's position and heading.

A torchvision backbone (MobileNetV3 or ResNet, trained from scratch) and a small head give, per image,
the position as *anchor + offset* (Saha et al., BMVC 2018, "Improved visual relocalization by
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
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from localization.geodesy import GeoOrigin, LocalFrame
from perception.models._api import (
    Checkpoint,
    WeightsEntry,
    register_model,
    register_weights,
    resolve_checkpoint,
    update_model_entry,
    utc_now,
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
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# log-variance bounds (normalized units): keep exp() finite and stop the NLL from paying any error
# off by blowing up the variance, or from chasing exact fits with a vanishing one
LOG_VAR_MIN, LOG_VAR_MAX = -18.0, 4.0
HEADING_LOG_VAR_MIN, HEADING_LOG_VAR_MAX = -12.0, 3.0
MAX_CORR = 0.95
SOFT_LABEL_SIGMA = 0.5  # anchor soft labels: Gaussian of this many anchor spacings around the truth
OFFSET_ANCHORS = 3  # the nearest anchors that learn to point at the truth (and so matter in the mixture)


def _backbone(name: str) -> tuple[nn.Module, int]:
    """(feature extractor [B,3,H,W] -> [B,C,h,w], C), randomly initialised (no weights can be downloaded)."""
    if name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        net = getattr(torchvision.models, name)(weights=None)
        return net.features, net.features[-1].out_channels
    if name in ("resnet18", "resnet34"):
        net = getattr(torchvision.models, name)(weights=None)
        return nn.Sequential(*list(net.children())[:-2]), net.fc.in_features
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


@register_model("posenet", description="position (lat/lon) and heading with covariance from one image")
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
                "every street both ways in both lanes at four times of day (docs/posenet.md)"))


def fit_anchors(points: np.ndarray, k: int, *, seed: int = 0, iterations: int = 30) -> tuple[np.ndarray, float]:
    """k-means of positions [N, 2] -> (anchors [k, 2], their median nearest-neighbour spacing).

    Seeded k-means++ then Lloyd iterations; fewer distinct points than k repeat anchors (harmless).
    """
    rng = np.random.default_rng(seed)
    pts = np.asarray(points, np.float64)
    k = int(k)
    centres = [pts[rng.integers(len(pts))]]
    d2 = ((pts - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        i = int(rng.integers(len(pts))) if total <= 0 else int(rng.choice(len(pts), p=d2 / total))
        centres.append(pts[i])
        d2 = np.minimum(d2, ((pts - pts[i]) ** 2).sum(1))
    c = np.stack(centres)
    for _ in range(iterations):
        assign = ((pts[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        for j in range(k):
            members = pts[assign == j]
            if len(members):
                c[j] = members.mean(0)
    if k > 1:
        nn_d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(2) + np.eye(k) * 1e18).min(1)
        spacing = float(np.median(nn_d[nn_d < 1e9])) if np.any(nn_d < 1e9) else 1.0
    else:
        spacing = float(np.sqrt(((pts - c[0]) ** 2).sum(1).mean())) or 1.0
    return c, max(spacing, 1e-3)


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


def _gaussian_nll(r: torch.Tensor, pos_log_var: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """NLL (without log 2pi) of residuals r [B, M, 2] under N(0, S) with S from log-variances [B, 2] and
    correlation [B]: Q/2 + log(sigma_e sigma_n sqrt(1 - rho^2)). Returns [B, M]."""
    z = r / (0.5 * pos_log_var).exp()[:, None, :]
    rho = corr[:, None]
    one_m_rho2 = 1.0 - rho * rho
    q = (z[..., 0] ** 2 - 2.0 * rho * z[..., 0] * z[..., 1] + z[..., 1] ** 2) / one_m_rho2
    return 0.5 * q + 0.5 * pos_log_var.sum(1, keepdim=True) + 0.5 * torch.log(one_m_rho2)


def pose_nll(raw: torch.Tensor, position: torch.Tensor, heading_rad: torch.Tensor, heading_valid: torch.Tensor,
             anchors: torch.Tensor, offset_scale: torch.Tensor | float, *,
             beta: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """The PoseNet loss: anchor cross-entropy + negative log-likelihoods of the true offset and heading.

    Args:
        raw: float [B, NUM_FIXED + 3K], the network's output; anchors [K, 2], offset_scale: the model's.
        position: float [B, 2], true (east, north), normalized.
        heading_rad: float [B], true heading; heading_valid: bool [B] (False: not known, no heading loss).
        beta: beta-NLL (Seitzer et al., ICLR 2022): each sample's NLL is weighted by its predicted
            variance^beta (not differentiated), so hard samples are not simply written off with a large
            variance while the mean stops learning; 0 is the plain NLL.

    Returns: (loss, figures: cross-entropy, offset NLL, heading NLL, top-anchor accuracy, position error).
    """
    d = decode(raw, anchors, offset_scale)
    k = anchors.shape[0]
    anchors = anchors.to(raw.device, torch.float32)
    scale = float(offset_scale)
    dist2 = ((position.float()[:, None, :] - anchors[None]) ** 2).sum(2)  # [B, K]
    # soft labels: the anchors around the truth all count, by distance (neighbours along a street are
    # nearly as right as the nearest, and a hard label would teach arbitrary boundaries)
    soft = torch.softmax(-dist2 / (2.0 * (SOFT_LABEL_SIGMA * scale) ** 2), dim=1)
    ce = -(soft * F.log_softmax(d.logits, dim=1)).sum(1)
    m = min(OFFSET_ANCHORS, k)
    near = dist2.topk(m, dim=1, largest=False).indices  # [B, M]
    w_near = soft.gather(1, near)
    w_near = w_near / w_near.sum(1, keepdim=True).clamp_min(1e-12)
    cand = d.candidates.gather(1, near[..., None].expand(-1, -1, 2))  # [B, M, 2]
    nll_off = (_gaussian_nll(position.float()[:, None, :] - cand, d.pos_log_var, d.corr) * w_near).sum(1)
    # von Mises with concentration kappa = 1/var: NLL = kappa (1 - cos d) + log I0e(kappa) (+ log 2pi)
    kappa = (-d.heading_log_var).exp()
    truth_vec = torch.stack([torch.sin(heading_rad), torch.cos(heading_rad)], 1).float()
    cos_d = (d.heading_vec * truth_vec).sum(1)
    nll_head = kappa * (1.0 - cos_d) + torch.log(torch.special.i0e(kappa))
    if beta > 0:
        w_pos = (0.5 * beta * d.pos_log_var.detach().sum(1)).exp()
        w_head = (0.5 * beta * d.heading_log_var.detach()).exp()
        w_pos = w_pos / w_pos.mean()  # a relative weighting: the loss scale (and so the lr) stays put
        w_head = w_head / w_head.mean()
    else:
        w_pos = w_head = torch.ones_like(nll_off)
    valid = heading_valid.float()
    n_valid = valid.sum().clamp_min(1.0)
    # keep the (sin, cos) vector near unit length: its angle is what counts, a drifting norm slows it
    norm_penalty = ((d.heading_norm - 1.0) ** 2).mean()
    loss = ce.mean() + (w_pos * nll_off).mean() + (w_head * nll_head * valid).sum() / n_valid + 0.01 * norm_penalty
    figures = {"ce": float(ce.detach().mean()), "nll_pos": float(nll_off.detach().mean()),
               "nll_head": float((nll_head.detach() * valid).sum() / n_valid),
               "top1": float((d.best == near[:, 0]).float().mean()),
               "err": float((position.float() - d.position).detach().norm(dim=1).mean())}
    return loss, figures


# ---------------------------------------------------------------------------------------------- inference


@dataclass
class PoseEstimates:
    """Predictions for a batch of N images, in metres and degrees.

    Attributes:
        east_m, north_m: float64 [N] in the checkpoint's ENU frame.
        lat_deg, lon_deg: float64 [N] WGS84.
        cov_enu_m2: float64 [N, 2, 2] east/north covariance (calibrated).
        heading_deg: float64 [N] clockwise from north in [0, 360).
        heading_std_deg: float64 [N] 1-sigma (calibrated), at most 180.
    """

    east_m: np.ndarray
    north_m: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    cov_enu_m2: np.ndarray
    heading_deg: np.ndarray
    heading_std_deg: np.ndarray

    def __len__(self) -> int:
        return len(self.east_m)


def checkpoint_frame(meta: Mapping[str, Any]) -> LocalFrame:
    return LocalFrame(GeoOrigin.from_dict(meta["geo_origin"]))


def enu_crs(origin: GeoOrigin) -> dict[str, str]:
    """The local frame the outputs live in, as PROJ describes it (east/north metres on a tangent plane)."""
    o = origin
    return {"kind": "enu", "ellipsoid": "WGS84",
            "proj": ("+proj=pipeline +step +proj=cart +ellps=WGS84 +step +proj=topocentric +ellps=WGS84 "
                     f"+lat_0={o.lat_deg!r} +lon_0={o.lon_deg!r} +h_0={o.alt_m!r}")}


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] RGB -> float [B, 3, H, W], (x / 255 - mean) / std per channel."""
    return (images.float() / 255.0 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


class PosePredictor:
    """A loaded PoseNet checkpoint ready to localize images: preprocessing, batching, fp16 and
    channels_last on CUDA (fp32 on CPU), conversion to metres, lat/lon and calibrated covariances.

    >>> predictor = PosePredictor("posenet_synthetic_city")          # or a file, or None: the default
    >>> est = predictor.predict_bgr([image_bgr])                      # uint8 [H, W, 3] BGR, any size
    >>> est.lat_deg[0], est.cov_enu_m2[0]
    """

    def __init__(self, checkpoint: Checkpoint | str | Path | None = None, *, device: str | torch.device = "auto",
                 half: bool | None = None, channels_last: bool | None = None, max_batch: int = 64) -> None:
        from perception.training import resolve_device

        self.checkpoint = resolve_checkpoint(checkpoint if not isinstance(checkpoint, Path) else str(checkpoint),
                                             model="posenet")
        meta = self.checkpoint.meta
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else (half and cuda)  # fp16 kernels on CPU are slow, not fast
        self.channels_last = cuda if channels_last is None else channels_last
        self.max_batch = max(1, int(max_batch))
        self.model_id = self.checkpoint.model_id
        self.input_size_px = self.checkpoint.input_size_px
        self.frame = checkpoint_frame(meta)
        self.center_enu_m = tuple(float(v) for v in meta["center_enu_m"])
        self.scale_m = float(meta["scale_m"])
        calib = meta.get("calibration", {})
        self.cov_scale = float(calib.get("position_cov_scale", 1.0))
        self.heading_var_scale = float(calib.get("heading_var_scale", 1.0))
        norm = meta["normalization"]
        self.mean = torch.tensor(norm["mean"], device=self.device)
        self.std = torch.tensor(norm["std"], device=self.device)
        model = posenet(weights=self.checkpoint).to(self.device)
        self.anchors = model.anchors.detach().float().cpu().clone()  # kept fp32 whatever the model runs in
        self.offset_scale = float(model.offset_scale)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.half() if self.half else model

    def prepare_bgr(self, image_bgr: np.ndarray) -> np.ndarray:
        """One BGR frame (any size, or mono) -> uint8 RGB [3, H, W] at the input size; ValueError when
        it is not an image."""
        from perception.datasets import resize_to_input

        return resize_to_input(image_bgr, self.input_size_px)

    def predict_bgr(self, images_bgr: Sequence[np.ndarray]) -> PoseEstimates:
        return self.predict(torch.from_numpy(np.stack([self.prepare_bgr(im) for im in images_bgr])))

    @torch.inference_mode()
    def predict_raw(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] RGB at the input size -> raw outputs float32 [N, 8], in chunks of max_batch."""
        outs = []
        for chunk in images.split(self.max_batch):
            x = normalize(chunk.to(self.device, non_blocking=True), self.mean, self.std)
            if self.half:
                x = x.half()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(self.model(x).float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, NUM_FIXED + 3 * self.model.num_anchors)

    def predict(self, images: torch.Tensor) -> PoseEstimates:
        """uint8 [N, 3, H, W] RGB at the input size -> `PoseEstimates`."""
        return self.estimates(self.predict_raw(images))

    def estimates(self, raw: torch.Tensor) -> PoseEstimates:
        return raw_to_estimates(raw, self.anchors, self.offset_scale, frame=self.frame,
                                center_enu_m=self.center_enu_m, scale_m=self.scale_m,
                                cov_scale=self.cov_scale, heading_var_scale=self.heading_var_scale)


def raw_to_estimates(raw: torch.Tensor, anchors: torch.Tensor, offset_scale: torch.Tensor | float, *,
                     frame: LocalFrame, center_enu_m: Sequence[float], scale_m: float, cov_scale: float = 1.0,
                     heading_var_scale: float = 1.0) -> PoseEstimates:
    """Raw outputs [N, NUM_FIXED + 3K] -> metres, degrees, lat/lon (see `PoseEstimates`)."""
    d = decode(raw, anchors.cpu(), float(offset_scale))
    pos = d.position.double().numpy()
    east = center_enu_m[0] + scale_m * pos[:, 0]
    north = center_enu_m[1] + scale_m * pos[:, 1]
    cov = d.covariance().double().numpy() * (scale_m**2) * cov_scale
    heading_var = np.exp(d.heading_log_var.double().numpy()) * heading_var_scale
    heading_std_deg = np.minimum(np.degrees(np.sqrt(heading_var)), 180.0)
    lat, lon, _ = frame.to_geodetic(east, north)
    return PoseEstimates(east, north, np.atleast_1d(lat), np.atleast_1d(lon), cov,
                         np.mod(np.degrees(d.heading_rad.double().numpy()), 360.0), heading_std_deg)


# ---------------------------------------------------------------------------------------------- training


@dataclass
class AugmentConfig:
    """Photometric augmentation only: a flip or a crop would change the pose the image shows.

    Each image gets its own draw: brightness and contrast gains, saturation, a per-channel colour cast
    (dawn/dusk light), gamma, sensor noise, and with ``erase_p`` one occluding rectangle (a passing truck).
    """

    brightness: float = 0.35
    contrast: float = 0.35
    saturation: float = 0.4
    colour_cast: float = 0.08
    gamma: float = 0.3
    noise_std: float = 0.03
    erase_p: float = 0.3
    erase_max_area: float = 0.15


def photometric_augment(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, 3, H, W] RGB -> float [B, 3, H, W] in [0, 1], augmented per image."""
    x = images.float() / 255.0
    b = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand((b, *shape), generator=generator, device=dev)

    x = x * u(1 - cfg.brightness, 1 + cfg.brightness, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(1 - cfg.contrast, 1 + cfg.contrast, 1, 1, 1) + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = gray + (x - gray) * u(1 - cfg.saturation, 1 + cfg.saturation, 1, 1, 1)
    x = x * u(1 - cfg.colour_cast, 1 + cfg.colour_cast, 3, 1, 1)
    x = x.clamp(0.0, 1.0) ** u(1 - cfg.gamma, 1 + cfg.gamma, 1, 1, 1)
    x = x + torch.randn(x.shape, generator=generator, device=dev) * u(0.0, cfg.noise_std, 1, 1, 1)
    if cfg.erase_p > 0:
        h, w = x.shape[2:]
        area = u(0.02, cfg.erase_max_area)
        aspect = u(0.5, 2.0)
        eh = (area * aspect).sqrt().mul(h).clamp(1, h)
        ew = (area / aspect).sqrt().mul(w).clamp(1, w)
        y0 = u(0, 1) * (h - eh)
        x0 = u(0, 1) * (w - ew)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        inside = ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1))
                  & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1)))
        apply = (u(0, 1) < cfg.erase_p).view(b, 1, 1) & inside
        fill = u(0, 1, 3, 1, 1).expand_as(x)
        x = torch.where(apply.unsqueeze(1), fill, x)
    return x.clamp(0.0, 1.0)


class PoseNetTask:
    """PoseNet for `perception.training.fit`."""

    name = "posenet"
    monitor = "position_error_m_median"
    summary_keys = ("position_error_m_median", "position_error_m_p95", "heading_error_deg_median",
                    "within_95_ellipse", "position_cov_scale")

    def __init__(self, *, arch: Mapping[str, Any], input_size_px: tuple[int, int], frame: LocalFrame,
                 center_enu_m: tuple[float, float], scale_m: float, anchors: np.ndarray, anchor_spacing: float,
                 trained_on: list[dict], augment: AugmentConfig | None = None, beta: float = 0.5) -> None:
        self.arch = {**dict(arch), "num_anchors": int(len(anchors))}
        self.anchors = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
        self.anchor_spacing = float(anchor_spacing)
        self.input_size_px = (int(input_size_px[0]), int(input_size_px[1]))
        self.frame = frame
        self.center_enu_m = (float(center_enu_m[0]), float(center_enu_m[1]))
        self.scale_m = float(scale_m)
        self.trained_on = trained_on
        self.augment_cfg = augment
        self.beta = beta
        self.mean = torch.tensor(IMAGENET_MEAN)
        self.std = torch.tensor(IMAGENET_STD)
        self.calibration = {"position_cov_scale": 1.0, "heading_var_scale": 1.0}

    def state(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_size_px": list(self.input_size_px),
                "geo_origin": self.frame.origin.to_dict(), "center_enu_m": list(self.center_enu_m),
                "scale_m": self.scale_m}

    def build_model(self) -> nn.Module:
        model = posenet(**self.arch)
        model.set_anchors(self.anchors, self.anchor_spacing)
        return model

    def _norm(self, x01: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x01.device), self.std.to(x01.device)
        return (x01 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.augment_cfg is None:
            return self.prepare(batch)
        x = photometric_augment(batch["image"], self.augment_cfg, generator)
        return {**batch, "image": self._norm(x)}

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "image": self._norm(batch["image"].float() / 255.0)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raw = model(batch["image"])
        net = model.module if hasattr(model, "module") else model  # DDP wraps the model
        return pose_nll(raw, batch["position"], batch["heading_rad"], batch["heading_valid"], net.anchors,
                        net.offset_scale, beta=self.beta)

    @torch.inference_mode()
    def _predict(self, model: nn.Module, loader, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raws, truth = [], {"position": [], "heading_rad": [], "heading_valid": []}
        for batch in loader:
            batch = self.prepare({k: v.to(device) for k, v in batch.items()})
            raws.append(model(batch["image"]).float().cpu())
            for k in truth:
                truth[k].append(batch[k].cpu())
        return torch.cat(raws), {k: torch.cat(v) for k, v in truth.items()}

    def validate(self, model: nn.Module, loader, device: torch.device) -> dict[str, float]:
        """Errors in metres/degrees on the validation frames, ellipse coverage before calibration, and
        the calibration (covariance inflation) that makes the 95% ellipse hold 95% of them."""
        from perception.evaluation import calibrate_scales, pose_errors, summarize_pose_errors

        raw, truth = self._predict(model, loader, device)
        est = raw_to_estimates(raw, model.anchors, model.offset_scale, frame=self.frame,
                               center_enu_m=self.center_enu_m, scale_m=self.scale_m)
        pos = truth["position"].double().numpy()
        east = self.center_enu_m[0] + self.scale_m * pos[:, 0]
        north = self.center_enu_m[1] + self.scale_m * pos[:, 1]
        heading = np.where(truth["heading_valid"].numpy(), np.degrees(truth["heading_rad"].double().numpy()), np.nan)
        errors = pose_errors(est, east, north, heading)
        self.calibration = calibrate_scales(errors)
        summary = summarize_pose_errors(errors)
        flat = {k: v for k, v in summary.items() if isinstance(v, int | float)}
        flat.update(self.calibration)
        return flat

    def export(self, model: nn.Module, metrics: Mapping[str, float], config, path: Path) -> None:
        recipe = {k: v for k, v in config.to_dict().items() if k not in ("out_dir", "resume", "progress")}
        recipe["beta"] = self.beta
        recipe["augment"] = None if self.augment_cfg is None else self.augment_cfg.__dict__
        ckpt = Checkpoint(model="posenet", arch=self.arch, state_dict=model.state_dict(), meta={
            "input_size_px": list(self.input_size_px),
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channel_order": "rgb",
                              "resize": "stretch the whole frame to input_size_px (INTER_AREA)"},
            "geo_origin": self.frame.origin.to_dict(),
            "crs": enu_crs(self.frame.origin),
            "center_enu_m": list(self.center_enu_m), "scale_m": self.scale_m,
            "calibration": dict(self.calibration),
            "trained_on": self.trained_on, "recipe": recipe,
            "metrics": {"val": {k: float(v) for k, v in metrics.items()}},
            "created_utc": utc_now(),
        })
        ckpt.save(path)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", choices=BACKBONES, default=DEFAULT_BACKBONE,
                        help="torchvision backbone, trained from scratch (default %(default)s)")
    parser.add_argument("--input-size", default=f"{DEFAULT_INPUT_SIZE_PX[0]}x{DEFAULT_INPUT_SIZE_PX[1]}",
                        metavar="WxH", help="model input in pixels (default %(default)s)")
    parser.add_argument("--hidden", type=int, default=256, help="width of the head's hidden layer")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout in the head")
    parser.add_argument("--beta", type=float, default=0.5,
                        help="beta-NLL weighting (0: plain Gaussian/von Mises NLL) (default %(default)s)")
    parser.add_argument("--pool-grid", default="3x4", metavar="ROWSxCOLS",
                        help="grid the features are pooled to before the head (default %(default)s)")
    parser.add_argument("--anchors", type=int, default=DEFAULT_ANCHORS,
                        help="anchor points (k-means of the training positions) (default %(default)s)")
    parser.add_argument("--no-augment", action="store_true", help="train without photometric augmentation")


def _parse_grid(text: str) -> tuple[int, int]:
    rows, sep, cols = text.lower().partition("x")
    try:
        grid = (int(rows), int(cols))
    except ValueError:
        raise ValueError(f"--pool-grid {text!r} is not ROWSxCOLS") from None
    if not sep or min(grid) < 1 or max(grid) > 16:
        raise ValueError(f"--pool-grid {text!r}: rows and columns must be 1..16")
    return grid


def parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        raise ValueError(f"--input-size {text!r} is not WIDTHxHEIGHT") from None
    if not sep or min(size) < 16 or max(size) > 4096:
        raise ValueError(f"--input-size {text!r}: both sides must be 16..4096 px")
    return size


def make_task(args: argparse.Namespace) -> tuple[PoseNetTask, torch.utils.data.Dataset, torch.utils.data.Dataset | None]:
    """The PoseNet task and its datasets from ``streetloc train posenet`` arguments."""
    from perception.datasets import PoseDataset, block_split, load_pose_frames
    from perception.training import log

    size = parse_size(args.input_size)
    state_file = Path(args.out) / "train_state.pt"
    frame = None
    center = scale = None
    if args.resume and state_file.is_file():
        # the resumed run keeps its frame and target normalization, whatever the data now says
        saved = torch.load(state_file, map_location="cpu", weights_only=True).get("task_state", {})
        if "geo_origin" in saved:
            frame = LocalFrame(GeoOrigin.from_dict(saved["geo_origin"]))
            center, scale = tuple(saved["center_enu_m"]), float(saved["scale_m"])

    def progress(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            log(f"  decoded {done}/{total} frames")

    log(f"reading {len(args.data)} training drive(s) at {size[0]}x{size[1]}")
    frames = load_pose_frames(args.data, size_px=size, frame=frame, cache_dir=args.cache_dir, progress=progress)
    if args.val_data:
        train_frames = frames
        val_frames = load_pose_frames(args.val_data, size_px=size, frame=frames.frame, cache_dir=args.cache_dir)
    else:
        train_idx, val_idx = block_split(len(frames), val_fraction=args.val_fraction, seed=args.seed)
        train_frames, val_frames = frames.subset(train_idx), frames.subset(val_idx)
    if center is None:
        center = (float(np.mean(train_frames.east_m)), float(np.mean(train_frames.north_m)))
        extent = max(np.abs(train_frames.east_m - center[0]).max(), np.abs(train_frames.north_m - center[1]).max())
        scale = float(max(extent, 1.0))
    log(f"{len(train_frames)} training frames, {len(val_frames)} validation frames; "
        f"area {2 * scale:.0f} m across; skipped {frames.skipped or 'none'}")
    if args.anchors < 1:
        raise ValueError(f"--anchors {args.anchors}: must be at least 1")
    train_norm = np.stack([train_frames.east_m - center[0], train_frames.north_m - center[1]], 1) / scale
    anchors, spacing = fit_anchors(train_norm, min(args.anchors, len(train_frames)), seed=args.seed)
    log(f"{len(anchors)} anchors, {spacing * scale:.1f} m apart")
    task = PoseNetTask(
        arch={"backbone": args.backbone, "hidden": args.hidden, "dropout": args.dropout,
              "pool_grid": list(_parse_grid(args.pool_grid))}, input_size_px=size,
        frame=frames.frame, center_enu_m=center, scale_m=scale, anchors=anchors, anchor_spacing=spacing,
        trained_on=frames.drives,
        augment=None if args.no_augment else AugmentConfig(), beta=args.beta)
    train_set = PoseDataset(train_frames, center_enu_m=center, scale_m=scale)
    val_set = PoseDataset(val_frames, center_enu_m=center, scale_m=scale) if len(val_frames) else None
    return task, train_set, val_set


def evaluate(args: argparse.Namespace) -> dict:
    from perception.evaluation import evaluate_posenet

    return evaluate_posenet(args.model, args.data, device=args.device, batch_size=args.batch_size,
                            cache_dir=getattr(args, "cache_dir", None), record=getattr(args, "record", False))


def format_report(result: dict) -> str:
    from perception.evaluation import format_pose_report

    return format_pose_report(result)


update_model_entry("posenet", add_train_arguments=add_train_arguments, task_factory=make_task,
                   evaluate=evaluate, format_report=format_report)
