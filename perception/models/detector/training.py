"""Training the detector with the shared loop: its options and its `Task` (``streetloc train detector``).

Augmentation, on the device per batch: a random crop of ``crop`` pixels (objects keep their size in
pixels, so a crop teaches the same scales at a fraction of a full frame's cost; boxes clipped to it and
dropped when less than half of them stays in view), a horizontal flip of half the images, and the
photometric augmentation every model shares (without its occluding rectangle, which would hide boxes).

Crops and rare classes: a uniform quarter-frame crop holds a given object only about a quarter of the
time, and the synthetic city has 29 cars and 13 signs for every 7 pedestrians and 1 bicyclist, so a
bicyclist was learnt from a handful of crops per epoch (6 epochs: AP 0 for pedestrians and
bicyclists). A share ``focus`` of the crops is therefore placed around one box, of a class drawn
uniformly among the classes in the frame (then a box of it uniformly): every class present gets an equal
share of the focused crops, whatever its count.
Validation runs on whole frames and picks the best epoch by COCO mAP@0.5 (`evaluation.coco_map`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import torch
from torch import nn
from torchvision.ops import box_area, clip_boxes_to_image

from perception.datasets import block_split
from perception.models._api import Checkpoint, utc_now
from perception.models.detector.data import BoxDataset, as_list, collate, load_box_frames
from perception.models.detector.evaluation import EVAL_SCORE_THRESHOLD, coco_map, ignore_masks
from perception.models.detector.loss import detection_loss
from perception.models.detector.network import (
    DEFAULT_BACKBONE,
    DEFAULT_INPUT_SIZE_PX,
    DETECTOR_CLASS_NAMES,
    DETECTOR_CLASSES,
    decode,
    detector,
)
from perception.training import DataConfig, TrainConfig, TrainSetup, log
from perception.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    normalize,
    normalize01,
    photometric_augment,
)

MIN_VISIBLE = 0.5  # share of a box's area that must stay inside a crop for it to remain a target


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The detector's own training options (``streetloc train detector --width-mult 0.75 ...``)."""

    backbone: Annotated[Literal["mobilenet_v3_small", "mobilenet_v3_large", "resnet18"], msgspec.Meta(
        description="torchvision backbone, trained from scratch")] = DEFAULT_BACKBONE
    width_mult: Annotated[float, msgspec.Meta(gt=0, le=2, description="MobileNetV3 channel multiplier")] = 1.0
    fpn_channels: Annotated[int, msgspec.Meta(ge=8, le=512, description="channels of the FPN and heads")] = 64
    input_size: Annotated[tuple[int, int], msgspec.Meta(
        description="model input in pixels (multiples of 16)",
        extra={"metavar": "WxH", "low": 32, "high": 4096})] = DEFAULT_INPUT_SIZE_PX
    crop: Annotated[tuple[int, int], msgspec.Meta(
        description="training crop in pixels (multiples of 16; the input size: no crop)",
        extra={"metavar": "WxH", "low": 32, "high": 4096})] = (160, 128)
    augment: Annotated[bool, msgspec.Meta(description="photometric augmentation and horizontal flips")] = True
    focus: Annotated[float, msgspec.Meta(
        ge=0, le=1, description="share of the training crops placed around a box of a class drawn uniformly "
                                "among those in the frame (rare classes seen as often as common ones)")] = 0.5


def random_crop(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor], crop_px: tuple[int, int],
                generator: torch.Generator, *, focus: float = 0.0
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Each image's own random ``crop_px`` = (w, h) window: images [B, 3, h, w], boxes shifted and clipped to
    it (xyxy px), those with less than `MIN_VISIBLE` of their area left dropped.

    With probability ``focus`` an image's window is drawn among those holding one chosen box whole (as
    much of it as fits): the box's class drawn uniformly among the classes in the image, then one of its
    boxes (see the module docstring); otherwise the window is uniform over the image."""
    b, _, h, w = images.shape
    cw, ch = min(crop_px[0], w), min(crop_px[1], h)
    dev = images.device
    u = torch.rand(b, 5, generator=generator, device=dev).tolist()  # x, y, focus?, class, box
    out_i, out_b, out_l = [], [], []
    for i in range(b):
        x_lo, x_hi, y_lo, y_hi = 0, w - cw, 0, h - ch
        if u[i][2] < focus and labels[i].numel():
            present = torch.unique(labels[i])
            cls = present[min(int(u[i][3] * len(present)), len(present) - 1)]
            which = torch.nonzero(labels[i] == cls).squeeze(1)
            x1, y1, x2, y2 = boxes[i][which[min(int(u[i][4] * len(which)), len(which) - 1)]].tolist()
            # windows holding [x1, x2) whole: x0 in [x2 - cw, x1]; a box larger than the crop: its centre part
            x_lo, x_hi = _window_range(x1, x2, cw, w)
            y_lo, y_hi = _window_range(y1, y2, ch, h)
        x0 = min(x_lo + int(u[i][0] * (x_hi - x_lo + 1)), x_hi)
        y0 = min(y_lo + int(u[i][1] * (y_hi - y_lo + 1)), y_hi)
        out_i.append(images[i, :, y0: y0 + ch, x0: x0 + cw])
        shifted = boxes[i].float() - torch.tensor([x0, y0, x0, y0], device=dev, dtype=torch.float32)
        clipped = clip_boxes_to_image(shifted, (ch, cw))
        keep = box_area(clipped) >= MIN_VISIBLE * box_area(shifted).clamp_min(1e-6)
        out_b.append(clipped[keep])
        out_l.append(labels[i][keep])
    return torch.stack(out_i), out_b, out_l


def _window_range(lo_px: float, hi_px: float, crop: int, size: int) -> tuple[int, int]:
    """First and last integer offset of a ``crop``-long window within [0, size) that holds [lo_px, hi_px]
    whole; for an object longer than the window, the offsets that centre the window on it."""
    first = max(0, min(size - crop, math.ceil(hi_px) - crop))
    last = max(0, min(size - crop, math.floor(lo_px)))
    if first > last:  # the object is longer than the crop
        mid = max(0, min(size - crop, round((lo_px + hi_px - crop) / 2)))
        return mid, mid
    return first, last


class DetectorTask:
    """The detector for `perception.training.fit`: focal + CIoU + quality loss (`loss`), validated by COCO
    mAP@0.5 (higher is better)."""

    name = "detector"
    monitor = "map50"
    monitor_mode = "max"
    summary_keys = ("map50", "map50_95", "ap50_sign", "ap50_car", "ap50_pedestrian", "ap50_bicyclist")

    def __init__(self, *, arch: Mapping[str, Any], input_size_px: tuple[int, int], trained_on: list[dict],
                 crop_px: tuple[int, int] | None = None, augment: AugmentConfig | None = None,
                 focus: float = 0.0) -> None:
        self.arch = dict(arch)
        self.input_size_px = (int(input_size_px[0]), int(input_size_px[1]))
        self.crop_px = None if crop_px is None else (int(crop_px[0]), int(crop_px[1]))
        self.trained_on = trained_on
        self.augment_cfg = augment
        self.focus = float(focus)
        self.mean = torch.tensor(IMAGENET_MEAN)
        self.std = torch.tensor(IMAGENET_STD)

    collate = staticmethod(collate)

    def state(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_size_px": list(self.input_size_px)}

    def build_model(self) -> nn.Module:
        return detector(**self.arch)

    def prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {**batch, "image": normalize(batch["image"], self.mean, self.std)}

    def augment(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        images, boxes, labels = batch["image"], batch["boxes"], batch["labels"]
        if self.crop_px is not None and self.crop_px != tuple(images.shape[-1:-3:-1]):
            images, boxes, labels = random_crop(images, boxes, labels, self.crop_px, generator, focus=self.focus)
        if self.augment_cfg is None:
            return self.prepare({**batch, "image": images, "boxes": boxes, "labels": labels})
        # a mirrored street is still a street: flip half the images and their boxes
        w = images.shape[-1]
        flip = (torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        boxes = [torch.stack([w - bx[:, 2], bx[:, 1], w - bx[:, 0], bx[:, 3]], 1) if f else bx
                 for bx, f in zip(boxes, flip.tolist(), strict=True)]
        x = photometric_augment(images, self.augment_cfg, generator)
        return {**batch, "image": normalize01(x, self.mean, self.std), "boxes": boxes, "labels": labels}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return detection_loss(model(batch["image"]), batch["boxes"], batch["labels"])

    @torch.inference_mode()
    def validate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict[str, float]:
        boxes, scores, labels, truth_b, truth_l = [], [], [], [], []
        for batch in loader:
            x = normalize(batch["image"].to(device), self.mean.to(device), self.std.to(device))
            det = decode(model(x), self.input_size_px, score_threshold=EVAL_SCORE_THRESHOLD)
            boxes += [b.cpu().numpy() for b in det.boxes]
            scores += [s.cpu().numpy() for s in det.scores]
            labels += [a.cpu().numpy() for a in det.labels]
            truth_b += [b.numpy() for b in batch["boxes"]]
            truth_l += [a.numpy() for a in batch["labels"]]
        # validation frames are drives at the input size (scale 1): the evaluation's ignore rule as is
        r = coco_map(boxes, scores, labels, truth_b, truth_l, ignore=ignore_masks(truth_b, [1.0] * len(truth_b)))
        figures = {"map50": r["map50"], "map50_95": r["map50_95"]}
        figures.update({f"ap50_{k}": v for k, v in r["ap50_per_class"].items()})
        return figures

    def export(self, model: nn.Module, metrics: Mapping[str, float], config: TrainConfig, path: Path) -> None:
        recipe = {k: v for k, v in config.to_dict().items() if k not in ("out_dir", "resume", "progress")}
        recipe["augment"] = None if self.augment_cfg is None else self.augment_cfg.__dict__
        recipe["crop_px"] = None if self.crop_px is None else list(self.crop_px)
        recipe["focus"] = self.focus
        Checkpoint(model="detector", arch=self.arch, state_dict=model.state_dict(), meta={
            "input_size_px": list(self.input_size_px),
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channel_order": "rgb",
                              "resize": "letterbox: pad the frame at the bottom/right to the input's aspect, "
                                        "then resize (INTER_AREA)"},
            "classes": list(DETECTOR_CLASS_NAMES), "class_ids": list(DETECTOR_CLASSES),
            "trained_on": self.trained_on, "recipe": recipe,
            "metrics": {"val": {k: float(v) for k, v in metrics.items()}},
            "created_utc": utc_now(),
        }).save(path)


def make_task(options: Options, data: DataConfig, *, resume_state: Mapping[str, Any] | None = None) -> TrainSetup:
    """The detector task and its datasets from the box drives (or label folders) of ``data``."""
    size = (int(options.input_size[0]), int(options.input_size[1]))
    crop = (int(options.crop[0]), int(options.crop[1]))
    for what, (w, h) in (("input_size", size), ("crop", crop)):
        if w % 16 or h % 16:
            # stride 16 exactly; the stride-32 grid rounds up (240 px -> 8 rows), which the offsets absorb
            raise ValueError(f"--{what.replace('_', '-')} {w}x{h}: width and height must be multiples of 16")

    def progress(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            log(f"  decoded {done}/{total} frames")

    log(f"reading {len(data.drives)} training source(s) at {size[0]}x{size[1]}")
    frames = load_box_frames(data.drives, size_px=size, cache_dir=data.cache_dir, progress=progress)
    if data.val_drives:
        train_frames = frames
        val_frames = load_box_frames(data.val_drives, size_px=size, cache_dir=data.cache_dir)
    else:
        train_idx, val_idx = block_split(len(frames), val_fraction=data.val_fraction, seed=data.seed)
        train_frames, val_frames = frames.subset(train_idx), frames.subset(val_idx)
    counts = np.bincount(np.concatenate([np.asarray(a, np.int64).reshape(-1) for a in as_list(train_frames.truth["labels"])]
                                        + [np.zeros(0, np.int64)]), minlength=len(DETECTOR_CLASSES))
    log(f"{len(train_frames)} training frames, {len(val_frames)} validation frames; skipped {frames.skipped or 'none'}; "
        "training boxes " + ", ".join(f"{n} {c}" for n, c in zip(DETECTOR_CLASS_NAMES, counts, strict=True)))
    task = DetectorTask(arch={"backbone": options.backbone, "width_mult": options.width_mult,
                              "fpn_channels": options.fpn_channels},
                        input_size_px=size, trained_on=frames.drives, crop_px=crop if crop != size else None,
                        augment=AugmentConfig(erase_p=0.0) if options.augment else None, focus=options.focus)
    return TrainSetup(task, BoxDataset(train_frames), BoxDataset(val_frames) if len(val_frames) else None)
