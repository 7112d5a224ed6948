"""Image batch transforms for every model, on the device: normalization and photometric augmentation.

Photometric only: a flip or a crop would change the pose an image shows (PoseNet); geometric
augmentation, where a model allows it (a segmenter's flips), belongs to that model's task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel, on 0-1 pixels
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] RGB -> float [B, 3, H, W], (x / 255 - mean) / std per channel."""
    return normalize01(images.float() / 255.0, mean, std)


def normalize01(images01: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """float [B, 3, H, W] in [0, 1] -> (x - mean) / std per channel (mean, std: [3], moved to the device)."""
    mean, std = mean.to(images01.device), std.to(images01.device)
    return (images01 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


@dataclass
class AugmentConfig:
    """What `photometric_augment` draws from.

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


