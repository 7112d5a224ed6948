"""The segmenter's data: camera frames with their label mask (``truth/segmentation``), through the shared
frame loader, masks in the class table of `perception.classes` at the model's input size."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from perception.classes import CLASS_NAMES, IGNORE_INDEX
from perception.datasets import DriveFrames, DriveSpec, ProgressFn, load_frames
from perception.drives import DriveReader
from perception.drives.reader import Frame


class MaskTruth:
    """The `FrameTruth` of the segmenter: the label mask recorded at the frame's stamp, its class names
    mapped to `perception.classes` ids (a name the table lacks becomes the ignore label), resized with
    nearest-neighbour sampling to the input size."""

    key = "mask-v1"
    what = "a label mask"
    gps = "none"

    def open(self, reader: DriveReader, size_px: tuple[int, int]) -> Callable[[Frame], dict[str, Any] | str]:
        masks = {m.header.stamp_ns: m for m in reader.label_masks()}
        ids = {name: i for i, name in enumerate(CLASS_NAMES)}

        def read(frame: Frame) -> dict[str, Any] | str:
            m = masks.get(frame.stamp_ns)
            if m is None:
                return "no_mask"
            table = np.full(256, IGNORE_INDEX, np.uint8)
            for i, name in enumerate(m.class_names or CLASS_NAMES):
                table[i] = ids.get(name, IGNORE_INDEX)
            mask = table[m.label_mask]
            if mask.shape != (size_px[1], size_px[0]):
                mask = cv2.resize(mask, size_px, interpolation=cv2.INTER_NEAREST)
            return {"mask": mask}

        return read


def load_mask_frames(drives: Sequence[DriveSpec | str | os.PathLike], *, size_px: tuple[int, int],
                     cache_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None) -> DriveFrames:
    """Frames of ``drives`` with ``truth["mask"]``: uint8 [N, H, W] class ids at ``size_px`` = (w, h)."""
    return load_frames(drives, size_px=size_px, truth=MaskTruth(), cache_dir=cache_dir, progress=progress)


class MaskDataset(torch.utils.data.Dataset):
    """Samples of mask frames: ``image`` uint8 [3, H, W] RGB, ``mask`` int64 [H, W] class ids."""

    def __init__(self, frames: DriveFrames) -> None:
        self.images = frames.images
        self.masks = torch.from_numpy(frames.truth["mask"].astype(np.int64))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "mask": self.masks[i]}
