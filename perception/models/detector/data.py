"""The detector's data: camera frames with their boxes, from drives (``truth/boxes``) or label folders
(KITTI object, YOLO txt: `perception.formats`), at the model's input size.

Geometry (one rule for training, evaluation and the node): a frame is letterboxed — black rows or columns
added at the bottom or right to the input's aspect, then resized (`perception.transforms.pad_to_aspect`) —
so a box's pixel coordinates scale by one factor, ``scale`` = input width / padded frame width.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from perception.classes import CLASS_NAMES
from perception.datasets import DriveFrames, DriveSpec, ProgressFn, load_frames
from perception.drives import DriveReader
from perception.drives.reader import Frame
from perception.models.detector.network import DETECTOR_CLASSES
from perception.transforms import ASPECT_TOLERANCE

# project class id -> detector class index (-1: not a detector class)
_DETECTOR_INDEX = np.full(len(CLASS_NAMES), -1, np.int64)
_DETECTOR_INDEX[list(DETECTOR_CLASSES)] = np.arange(len(DETECTOR_CLASSES))


def letterbox_scale(width_px: int, height_px: int, size_px: tuple[int, int]) -> float:
    """Input pixels per frame pixel after `pad_to_aspect` + resize of a ``width_px`` x ``height_px`` frame."""
    aspect = size_px[0] / size_px[1]
    if abs(width_px / height_px - aspect) <= ASPECT_TOLERANCE * aspect:
        return size_px[0] / width_px  # resized as is (a pixel of rounding is no letterbox)
    padded_w = width_px if width_px / height_px >= aspect else height_px * aspect
    return size_px[0] / padded_w


def detector_labels(class_names: Sequence[str], class_ids: np.ndarray) -> np.ndarray:
    """Detector class index [n] (-1 where not detectable) of boxes whose ``class_ids`` index ``class_names``
    (a drive's table; empty: the project's table)."""
    names = list(class_names) or list(CLASS_NAMES)
    table = np.array([_DETECTOR_INDEX[CLASS_NAMES.index(n)] if n in CLASS_NAMES else -1 for n in names] + [-1])
    ids = np.asarray(class_ids, np.int64)
    return table[np.where((ids >= 0) & (ids < len(names)), ids, len(names))]


class BoxTruth:
    """The `FrameTruth` of the detector: the boxes recorded at the frame's stamp (``truth/boxes``), of the
    detectable classes only, in input pixels. A frame without a box set is skipped (``no_boxes``); one
    whose set is empty is kept (an empty street is a lesson too)."""

    key = "boxes-v1"
    what = "ground-truth boxes (truth/boxes)"
    gps = "none"
    pad_to_aspect = True  # letterbox, never crop or stretch (perception.datasets.load_frames)

    def open(self, reader: DriveReader, size_px: tuple[int, int]) -> Callable[[Frame], dict[str, Any] | str]:
        sets = {d.header.stamp_ns: d for d in reader.boxes()}

        def read(frame: Frame) -> dict[str, Any] | str:
            d = sets.get(frame.stamp_ns)
            if d is None:
                return "no_boxes"
            scale = letterbox_scale(frame.image.width_px, frame.image.height_px, size_px)
            labels = detector_labels(d.class_names, d.class_ids)
            keep = labels >= 0
            boxes = np.asarray(d.boxes_xyxy_px, np.float32).reshape(-1, 4)[keep] * scale
            return {"boxes": boxes.astype(np.float32), "labels": labels[keep], "scale": float(scale)}

        return read


def load_box_frames(sources: Sequence[DriveSpec | str | os.PathLike], *, size_px: tuple[int, int],
                    cache_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None) -> DriveFrames:
    """Frames with ``truth["boxes"]`` (list of float32 [n_i, 4] xyxy input pixels), ``truth["labels"]``
    (list of int64 [n_i] detector class index) and ``truth["scale"]`` (float [N], input px per frame px),
    from drives and label folders (`perception.formats.sniff`) alike."""
    from perception.formats import load_folder, sniff

    parts = []
    drives: list[DriveSpec | str | os.PathLike] = []
    for src in sources:
        spec = src if isinstance(src, DriveSpec) else DriveSpec.parse(src)
        if spec.path.is_dir():
            if drives:
                parts.append(load_frames(drives, size_px=size_px, truth=BoxTruth(), cache_dir=cache_dir,
                                         progress=progress))
                drives = []
            parts.append(load_folder(spec, size_px=size_px, fmt=sniff(spec.path)))
        else:
            drives.append(spec)
    if drives:
        parts.append(load_frames(drives, size_px=size_px, truth=BoxTruth(), cache_dir=cache_dir, progress=progress))
    return parts[0] if len(parts) == 1 else merge_frames(parts)


def merge_frames(parts: Sequence[DriveFrames]) -> DriveFrames:
    """Several box frame sets as one (drive indices renumbered)."""
    offsets = np.cumsum([0] + [len(p.drives) for p in parts[:-1]])
    skipped: dict[str, int] = {}
    for p in parts:
        for k, v in p.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    return DriveFrames(
        images=torch.cat([p.images for p in parts]),
        truth={"boxes": [b for p in parts for b in as_list(p.truth["boxes"])],
               "labels": [a for p in parts for a in as_list(p.truth["labels"])],
               "scale": np.concatenate([np.asarray(p.truth["scale"], np.float64) for p in parts])},
        stamp_ns=np.concatenate([p.stamp_ns for p in parts]),
        drive_index=np.concatenate([p.drive_index + o for p, o in zip(parts, offsets, strict=True)]),
        drives=[d for p in parts for d in p.drives], skipped=skipped)


def as_list(value: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """A ragged truth value as a list of per-frame arrays (`load_frames` stacks them when all frames
    happen to hold as many boxes)."""
    return list(value) if isinstance(value, list) else [value[i] for i in range(len(value))]


class BoxDataset(torch.utils.data.Dataset):
    """Samples for the detector: ``image`` uint8 [3, H, W] RGB, ``boxes`` float32 [n, 4] xyxy input
    pixels, ``labels`` int64 [n] detector class index. Batches come from `collate`."""

    def __init__(self, frames: DriveFrames) -> None:
        self.images = frames.images
        self.boxes = [torch.as_tensor(np.asarray(b, np.float32).reshape(-1, 4)) for b in as_list(frames.truth["boxes"])]
        self.labels = [torch.as_tensor(np.asarray(a, np.int64).reshape(-1)) for a in as_list(frames.truth["labels"])]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "boxes": self.boxes[i], "labels": self.labels[i]}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``image`` stacked [B, 3, H, W]; ``boxes`` and ``labels`` lists of B tensors (ragged)."""
    return {"image": torch.stack([s["image"] for s in samples]),
            "boxes": [s["boxes"] for s in samples], "labels": [s["labels"] for s in samples]}
