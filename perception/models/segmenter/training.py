"""Training the segmenter with the shared loop: its options and its `Task` (``streetloc train segmenter``)."""

from __future__ import annotations

from collections.abc import Mapping
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
from perception.models.segmenter.network import segmenter
from perception.training import DataConfig, TrainConfig, TrainSetup, log
from perception.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    normalize,
    normalize01,
    photometric_augment,
)


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The segmenter's own training options (``streetloc train segmenter --width 16 ...``)."""

    input_size: Annotated[tuple[int, int], msgspec.Meta(
        description="model input in pixels", extra={"metavar": "WxH", "low": 16, "high": 4096})] = (160, 120)
    width: Annotated[int, msgspec.Meta(ge=1, le=256, description="channels of the first conv block")] = 16
    depth: Annotated[int, msgspec.Meta(ge=1, le=6, description="stride-2 conv blocks")] = 3
    augment: Annotated[bool, msgspec.Meta(description="photometric augmentation and horizontal flips")] = True


class SegmenterTask:
    """The segmenter for `perception.training.fit`: cross-entropy over pixels (ignore label skipped),
    validated by mIoU (higher is better)."""

    name = "segmenter"
    monitor = "miou"
    monitor_mode = "max"
    summary_keys = ("miou", "pixel_accuracy")

    def __init__(self, *, arch: Mapping[str, Any], input_size_px: tuple[int, int], trained_on: list[dict],
                 augment: AugmentConfig | None = None) -> None:
        self.arch = dict(arch)
        self.input_size_px = (int(input_size_px[0]), int(input_size_px[1]))
        self.trained_on = trained_on
        self.augment_cfg = augment
        self.mean = torch.tensor(IMAGENET_MEAN)
        self.std = torch.tensor(IMAGENET_STD)

    def state(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_size_px": list(self.input_size_px)}

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
        return {**batch, "image": normalize01(x, self.mean, self.std), "mask": mask}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["mask"], ignore_index=IGNORE_INDEX)
        return loss, {"ce": float(loss.detach())}

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
    """The segmenter task and its datasets from the label-mask drives of ``data``."""
    size = (int(options.input_size[0]), int(options.input_size[1]))
    log(f"reading {len(data.drives)} training drive(s) at {size[0]}x{size[1]}")
    frames = load_mask_frames(data.drives, size_px=size, cache_dir=data.cache_dir)
    if data.val_drives:
        train_frames, val_frames = frames, load_mask_frames(data.val_drives, size_px=size, cache_dir=data.cache_dir)
    else:
        train_idx, val_idx = block_split(len(frames), val_fraction=data.val_fraction, seed=data.seed)
        train_frames, val_frames = frames.subset(train_idx), frames.subset(val_idx)
    log(f"{len(train_frames)} training frames, {len(val_frames)} validation frames; "
        f"skipped {frames.skipped or 'none'}")
    task = SegmenterTask(arch={"num_classes": NUM_CLASSES, "width": options.width, "depth": options.depth},
                         input_size_px=size, trained_on=frames.drives,
                         augment=AugmentConfig() if options.augment else None)
    return TrainSetup(task, MaskDataset(train_frames), MaskDataset(val_frames) if len(val_frames) else None)
