"""Training the segmenter with the shared loop: its options and its `Task` (``streetloc train segmenter``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from perception.datasets import block_split
from perception.models._api import Checkpoint, utc_now
from perception.models.segmenter.data import MaskDataset, load_mask_frames
from perception.models.segmenter.evaluation import confusion_matrix, segmentation_figures
from perception.models.segmenter.network import AUX_LOSS_WEIGHT, BACKBONES, RESNET_WIDTHS, segmenter
from perception.training import DataConfig, TrainConfig, TrainSetup, log
from perception.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    normalize,
    normalize01,
    photometric_augment,
)

CLASS_WEIGHT_C = 1.10  # ENet's class weighting 1 / ln(c + p): c = 1.10 bounds the weights to 10.5x (ENet: 1.02, 50x)


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The segmenter's own training options (``streetloc train segmenter --input-size 160x120 ...``)."""

    input_size: Annotated[tuple[int, int], msgspec.Meta(
        description="model input in pixels", extra={"metavar": "WxH", "low": 16, "high": 4096})] = (160, 120)
    backbone: Annotated[str, msgspec.Meta(
        pattern="^(" + "|".join(BACKBONES) + ")$",
        description="dilated backbone: " + ", ".join(BACKBONES))] = "resnet_dilated"
    output_stride: Annotated[int, msgspec.Meta(
        ge=8, le=16, description="backbone output stride, 8 or 16 (the later stages dilated instead)")] = 8
    width_mult: Annotated[float, msgspec.Meta(gt=0, le=4, description="backbone channel multiplier")] = 1.0
    widths: Annotated[list[Annotated[int, msgspec.Meta(ge=8, le=1024)]], msgspec.Meta(
        description="channels of the resnet_dilated stem and its four stages (5 numbers; none: "
        f"{','.join(map(str, RESNET_WIDTHS))} x width_mult)")] = []
    head_channels: Annotated[int, msgspec.Meta(
        ge=8, le=1024, description="channels of the 3x3 conv after pyramid pooling")] = 128
    decoder_channels: Annotated[int, msgspec.Meta(
        ge=0, le=1024, description="channels of the stride-4 skip decoder (0: none, the paper's head "
        "upsampled from the output stride)")] = 0
    aux_weight: Annotated[float, msgspec.Meta(
        ge=0, description="weight of the auxiliary loss (the paper's 0.4; 0: no auxiliary head)")] = AUX_LOSS_WEIGHT
    class_weighting: Annotated[str, msgspec.Meta(
        pattern="^(none|enet)$", description=f"per-class loss weights: none, or enet (1/ln({CLASS_WEIGHT_C} + "
        "share of the class's pixels in the training masks): rare classes (poles, signs) count more")] = "enet"
    augment: Annotated[bool, msgspec.Meta(
        description="photometric augmentation, horizontal flips and random scale/crop")] = True
    scale_min: Annotated[float, msgspec.Meta(
        gt=0, le=4, description="smallest random zoom (below 1: zoomed out, the border ignored)")] = 0.8
    scale_max: Annotated[float, msgspec.Meta(gt=0, le=4, description="largest random zoom")] = 1.6


def class_weights(masks: np.ndarray, *, c: float = CLASS_WEIGHT_C) -> list[float]:
    """ENet's weights 1 / ln(c + p_k) from the share p_k of each class among labelled pixels (masks: [N, H, W])."""
    counts = np.bincount(masks[masks != IGNORE_INDEX].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    share = counts / max(1, counts.sum())
    return [float(1.0 / np.log(c + p)) for p in share]


def random_scale_crop(images: torch.Tensor, masks: torch.Tensor, *, scale_min: float, scale_max: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom each image by a random factor in [scale_min, scale_max] about a random centre, image and mask
    together: images float [B, 3, H, W] (bilinear, black outside), masks int64 [B, H, W] (nearest, the
    ignore label outside the frame when zoomed out)."""
    b = images.shape[0]
    dev = images.device
    scale = scale_min + (scale_max - scale_min) * torch.rand(b, generator=generator, device=dev)
    # centre offsets that keep the frame covered when zoomed in, the image inside it when zoomed out
    reach = (1.0 - 1.0 / scale).abs()
    shift = (torch.rand(b, 2, generator=generator, device=dev) * 2 - 1) * reach.unsqueeze(1)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out_images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # labels shifted by one so that the zero padding marks "outside", which becomes the ignore label
    shifted = (masks + 1).unsqueeze(1).float()
    out = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False).squeeze(1).long()
    out_masks = torch.where(out == 0, torch.full_like(out, IGNORE_INDEX), out - 1)
    return out_images, out_masks


class SegmenterTask:
    """PSPNet for `perception.training.fit`: cross-entropy over pixels (ignore label skipped, optional
    class weights) plus ``aux_weight`` times the auxiliary head's, validated by mIoU (higher is better)."""

    name = "segmenter"
    monitor = "miou"
    monitor_mode = "max"
    summary_keys = ("miou", "pixel_accuracy")

    def __init__(self, *, arch: Mapping[str, Any], input_size_px: tuple[int, int], trained_on: list[dict],
                 augment: AugmentConfig | None = None, aux_weight: float = AUX_LOSS_WEIGHT,
                 weights: Sequence[float] | None = None, scale_range: tuple[float, float] = (1.0, 1.0)) -> None:
        self.arch = dict(arch)
        self.input_size_px = (int(input_size_px[0]), int(input_size_px[1]))
        self.trained_on = trained_on
        self.augment_cfg = augment
        self.aux_weight = float(aux_weight)
        self.class_weights = None if weights is None else [float(w) for w in weights]
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.mean = torch.tensor(IMAGENET_MEAN)
        self.std = torch.tensor(IMAGENET_STD)

    def state(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_size_px": list(self.input_size_px), "class_weights": self.class_weights}

    def build_model(self) -> nn.Module:
        return segmenter(**self.arch)

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "image": normalize(batch["image"], self.mean, self.std)}

    def augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.augment_cfg is None:
            return self.prepare(batch)
        x = photometric_augment(batch["image"], self.augment_cfg, generator)
        mask = batch["mask"]
        # a mirrored street is still a street: flip image and mask together, half the images
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        mask = torch.where(flip.view(-1, 1, 1), mask.flip(-1), mask)
        if self.scale_range != (1.0, 1.0):
            x, mask = random_scale_crop(x, mask, scale_min=self.scale_range[0], scale_max=self.scale_range[1],
                                        generator=generator)
        return {**batch, "image": normalize01(x, self.mean, self.std), "mask": mask}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch["image"])
        logits, aux = out if isinstance(out, tuple) else (out, None)
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=logits.device)
        ce = F.cross_entropy(logits.float(), batch["mask"], weight=weight, ignore_index=IGNORE_INDEX)
        figures = {"ce": float(ce.detach())}
        loss = ce
        if aux is not None and self.aux_weight > 0:
            aux_ce = F.cross_entropy(aux.float(), batch["mask"], weight=weight, ignore_index=IGNORE_INDEX)
            loss = ce + self.aux_weight * aux_ce  # Zhao et al.: the auxiliary loss weighted 0.4
            figures["aux_ce"] = float(aux_ce.detach())
        return loss, figures

    @torch.inference_mode()
    def validate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict[str, float]:
        cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for batch in loader:
            batch = self.prepare({k: v.to(device) for k, v in batch.items()})
            cm += confusion_matrix(model(batch["image"]).argmax(1).cpu(), batch["mask"].cpu())
        figures = segmentation_figures(cm)
        return {"miou": figures["miou"], "pixel_accuracy": figures["pixel_accuracy"]}

    def export(self, model: nn.Module, metrics: Mapping[str, float], config: TrainConfig, path: Path) -> None:
        recipe = {k: v for k, v in config.to_dict().items() if k not in ("out_dir", "resume", "progress")}
        recipe["augment"] = None if self.augment_cfg is None else self.augment_cfg.__dict__
        recipe.update(aux_weight=self.aux_weight, class_weights=self.class_weights, scale_range=list(self.scale_range))
        Checkpoint(model="segmenter", arch=self.arch, state_dict=model.state_dict(), meta={
            "input_size_px": list(self.input_size_px),
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channel_order": "rgb",
                              "resize": "stretch the whole frame to input_size_px (INTER_AREA)"},
            "classes": list(CLASS_NAMES[:NUM_CLASSES]), "ignore_index": IGNORE_INDEX,
            "trained_on": self.trained_on, "recipe": recipe,
            "metrics": {"val": {k: float(v) for k, v in metrics.items()}},
            "created_utc": utc_now(),
        }).save(path)


def make_task(options: Options, data: DataConfig, *, resume_state: Mapping[str, Any] | None = None) -> TrainSetup:
    """The segmenter task and its datasets from the drives and CamVid-style folders of ``data``."""
    size = (int(options.input_size[0]), int(options.input_size[1]))
    if options.scale_min > options.scale_max:
        raise ValueError(f"--scale-min {options.scale_min} is above --scale-max {options.scale_max}")
    log(f"reading {len(data.drives)} training source(s) at {size[0]}x{size[1]}")
    frames = load_mask_frames(data.drives, size_px=size, cache_dir=data.cache_dir)
    if data.val_drives:
        train_frames, val_frames = frames, load_mask_frames(data.val_drives, size_px=size, cache_dir=data.cache_dir)
    else:
        train_idx, val_idx = block_split(len(frames), val_fraction=data.val_fraction, seed=data.seed)
        train_frames, val_frames = frames.subset(train_idx), frames.subset(val_idx)
    log(f"{len(train_frames)} training frames, {len(val_frames)} validation frames; "
        f"skipped {frames.skipped or 'none'}")
    if options.output_stride not in (8, 16):
        raise ValueError(f"--output-stride {options.output_stride}: give 8 or 16")
    if options.widths and (options.backbone != "resnet_dilated" or len(options.widths) != len(RESNET_WIDTHS)):
        raise ValueError(f"--widths {','.join(map(str, options.widths))}: give {len(RESNET_WIDTHS)} channel "
                         "counts (stem, stages 1-4), with --backbone resnet_dilated")
    arch = {"num_classes": NUM_CLASSES, "backbone": options.backbone, "width_mult": options.width_mult,
            "head_channels": options.head_channels, "aux": options.aux_weight > 0,
            "output_stride": options.output_stride}
    # keys beyond the first checkpoints' only when used, so that a default run's arch reads as before
    if options.widths:
        arch["widths"] = [int(w) for w in options.widths]
    if options.decoder_channels:
        arch["decoder_channels"] = int(options.decoder_channels)
    weights = None
    if options.class_weighting == "enet":
        weights = (resume_state or {}).get("class_weights") or class_weights(train_frames.truth["mask"])
        log("class weights " + " ".join(f"{n} {w:.2f}" for n, w in zip(CLASS_NAMES, weights, strict=False)))
    task = SegmenterTask(arch=arch, input_size_px=size, trained_on=frames.drives,
                         augment=AugmentConfig() if options.augment else None, aux_weight=options.aux_weight,
                         weights=weights,
                         scale_range=(options.scale_min, options.scale_max) if options.augment else (1.0, 1.0))
    return TrainSetup(task, MaskDataset(train_frames), MaskDataset(val_frames) if len(val_frames) else None)
