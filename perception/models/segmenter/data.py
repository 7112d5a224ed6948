"""The segmenter's data: camera frames with their label mask, in the class table of `perception.classes`.

Two sources, mixed freely in one ``--data`` list: drives (their ``truth/segmentation`` channel, through
the shared frame loader `perception.datasets.load_frames`) and CamVid-style folders (images + label
PNGs, `perception.formats.camvid`; sniffed by ``is_camvid``: a folder).
"""

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
from perception.formats.camvid import is_camvid, load_camvid


class MaskTruth:
    """The `FrameTruth` of the segmenter: the label mask recorded at the frame's stamp, its class names
    mapped to `perception.classes` ids (a name the table lacks becomes the ignore label), resized with
    nearest-neighbour sampling to ``mask_size_px`` (None: the input size; ``(0, 0)``: the drive's own).

    Masks are read per frame (an indexed seek) rather than all at once: a 10 fps drive sliced
    ``@::15`` would otherwise decode and hold 15 masks for every one used."""

    what = "a label mask"
    gps = "none"

    def __init__(self, mask_size_px: tuple[int, int] | None = None) -> None:
        self.mask_size_px = None if mask_size_px is None else (int(mask_size_px[0]), int(mask_size_px[1]))
        self.key = "mask-v1" if self.mask_size_px is None else f"mask-v1-{self.mask_size_px}"

    def open(self, reader: DriveReader, size_px: tuple[int, int]) -> Callable[[Frame], dict[str, Any] | str]:
        ids = {name: i for i, name in enumerate(CLASS_NAMES)}
        tables: dict[tuple[str, ...], np.ndarray] = {}
        size = size_px if self.mask_size_px is None else self.mask_size_px
        first: list[tuple[int, int]] = []  # a drive's own mask size: its first mask's

        def read(frame: Frame) -> dict[str, Any] | str:
            m = next((m for m in reader.label_masks(start_ns=frame.stamp_ns, end_ns=frame.stamp_ns + 1)
                      if m.header.stamp_ns == frame.stamp_ns), None)
            if m is None:
                return "no_mask"
            names = tuple(m.class_names or CLASS_NAMES)
            table = tables.get(names)
            if table is None:
                table = tables[names] = np.full(256, IGNORE_INDEX, np.uint8)
                for i, name in enumerate(names):
                    table[i] = ids.get(name, IGNORE_INDEX)
            if m.label_mask.ndim != 2:
                return "bad_mask"
            mask = table[m.label_mask]
            # (0, 0): the drive's own size; a mask of another size than the first is brought to it
            target = size if size != (0, 0) else (first or [(mask.shape[1], mask.shape[0])])[0]
            first[:] = [target]
            if mask.shape != (target[1], target[0]):
                mask = cv2.resize(mask, target, interpolation=cv2.INTER_NEAREST)
            return {"mask": mask}

        return read


def load_mask_frames(drives: Sequence[DriveSpec | str | os.PathLike], *, size_px: tuple[int, int],
                     mask_size_px: tuple[int, int] | None = None, cache_dir: str | os.PathLike | None = None,
                     progress: ProgressFn | None = None) -> DriveFrames:
    """Frames of ``drives`` (drive files or CamVid-style split folders) with ``truth["mask"]``: uint8
    [N, h, w] class ids, images uint8 [N, 3, H, W] at ``size_px`` = (W, H); masks at ``mask_size_px``
    (None: ``size_px``; ``(0, 0)``: each source's own size, which must then agree across sources)."""
    specs = [d if isinstance(d, DriveSpec) else DriveSpec.parse(d) for d in drives]
    if not specs:
        raise ValueError("no drives given")
    parts: list[DriveFrames] = []
    files: list[DriveSpec] = []
    for spec in specs:
        if is_camvid(spec.path):
            parts.append(load_camvid(spec, size_px=size_px, mask_size_px=mask_size_px))
        else:
            files.append(spec)
    if files:
        parts.append(load_frames(files, size_px=size_px, truth=MaskTruth(mask_size_px), cache_dir=cache_dir,
                                 progress=progress))
    return parts[0] if len(parts) == 1 else concat_frames(parts)


def concat_frames(parts: Sequence[DriveFrames]) -> DriveFrames:
    """Frames of several sources as one set (drive indices renumbered); ValueError when masks differ in size."""
    shapes = {p.truth["mask"].shape[1:] for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"label masks of {len(shapes)} sizes ({sorted(shapes)}); give one mask size")
    drive_index, offset, skipped = [], 0, {}
    for p in parts:
        drive_index.append(p.drive_index + offset)
        offset += len(p.drives)
        for reason, n in p.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    return DriveFrames(images=torch.cat([p.images for p in parts]),
                       truth={"mask": np.concatenate([p.truth["mask"] for p in parts])},
                       stamp_ns=np.concatenate([p.stamp_ns for p in parts]),
                       drive_index=np.concatenate(drive_index), drives=[d for p in parts for d in p.drives],
                       skipped=skipped)


class MaskDataset(torch.utils.data.Dataset):
    """Samples of mask frames: ``image`` uint8 [3, H, W] RGB, ``mask`` int64 [H, W] class ids."""

    def __init__(self, frames: DriveFrames) -> None:
        self.images = frames.images
        self.masks = torch.from_numpy(frames.truth["mask"].astype(np.int64))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "mask": self.masks[i]}
