"""Image transforms for every model: resizing a camera frame to the input, normalization, and
photometric augmentation of batches on the training device; `ImageTransform` is a checkpoint's
preprocessing (``Checkpoint.transforms()``, as torchvision's ``Weights.transforms``).

Photometric only: a flip or a crop would change the pose an image shows (PoseNet); geometric
augmentation, where a model allows it (a segmenter's flips), belongs to that model's task.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel, on 0-1 pixels
IMAGENET_STD = (0.229, 0.224, 0.225)


# A frame whose aspect is within this of the input's is resized as is (a pixel of rounding, 320x240 vs
# 321x240, is no stretch); beyond it, centre-cropped first.
ASPECT_TOLERANCE = 0.01


def crop_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred window of ``image`` [H, W, ...] with width/height = ``aspect`` (a view, no copy)."""
    h, w = image.shape[:2]
    if h == 0 or w == 0 or abs(w / h - aspect) <= ASPECT_TOLERANCE * aspect:
        return image
    if w / h > aspect:  # too wide: cut the sides
        new_w = max(1, int(round(h * aspect)))
        x0 = (w - new_w) // 2
        return image[:, x0:x0 + new_w]
    new_h = max(1, int(round(w / aspect)))  # too tall: cut top and bottom
    y0 = (h - new_h) // 2
    return image[y0:y0 + new_h]


def pad_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """``image`` [H, W, ...] with black rows (bottom) or columns (right) added to width/height = ``aspect``:
    a YOLO letterbox, the whole view kept unstretched (the detector's geometry rule). Pixel (x, y) stays
    at (x, y), so boxes need only the resize's one scale factor."""
    h, w = image.shape[:2]
    if h == 0 or w == 0 or abs(w / h - aspect) <= ASPECT_TOLERANCE * aspect:
        return image
    new_w, new_h = (int(round(h * aspect)), h) if w / h < aspect else (w, int(round(w / aspect)))
    out = np.zeros((new_h, new_w, *image.shape[2:]), image.dtype)
    out[:h, :w] = image
    return out


def resize_to_input(image_bgr: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """uint8 BGR [H0, W0, 3] (or mono [H0, W0]) -> uint8 RGB [3, H, W] at ``size_px`` = (width, height).

    Any aspect ratio is stretched to the input size: a caller that must not stretch (PoseNet: a
    stretched street is another street) centre-crops first with `crop_to_aspect`.
    """
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] BGR; got {image_bgr.dtype} {image_bgr.shape}")
    w, h = size_px
    if image_bgr.shape[1] != w or image_bgr.shape[0] != h:
        # INTER_AREA averages the pixels a shrink drops, so small inputs keep no aliasing (fine facades)
        interp = cv2.INTER_AREA if image_bgr.shape[1] > w else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (w, h), interpolation=interp)
    return np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))


@dataclass(frozen=True)
class ImageTransform:
    """A model's preprocessing: a BGR camera frame -> uint8 RGB [3, H, W] at ``input_size_px`` (`resize`),
    and a uint8 batch -> the normalized float batch the network takes (call)."""

    input_size_px: tuple[int, int]  # (width, height)
    mean: tuple[float, ...]  # per RGB channel, on 0-1 pixels
    std: tuple[float, ...]

    def resize(self, image_bgr: np.ndarray) -> np.ndarray:
        return resize_to_input(image_bgr, self.input_size_px)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] RGB -> float [B, 3, H, W] on the images' device."""
        return normalize(images, torch.tensor(self.mean), torch.tensor(self.std))

    @classmethod
    def from_meta(cls, meta: dict, *, where: str = "checkpoint") -> ImageTransform:
        """From a checkpoint record's ``input_size_px`` and ``normalization``; ValueError naming the field."""
        try:
            w, h = meta["input_size_px"]
            norm = meta["normalization"]
            return cls((int(w), int(h)), tuple(map(float, norm["mean"])), tuple(map(float, norm["std"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: record lacks a valid input_size_px/normalization ({exc})") from None


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


