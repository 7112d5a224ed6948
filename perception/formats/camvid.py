"""CamVid-style segmentation folders: images beside label PNGs, as the SegNet tutorial ships CamVid.

A *split folder* holds the images (``.png``/``.jpg``); its labels are single-channel PNGs of the same
file stem in the sibling folder ``<split>annot`` (``camvid/train`` + ``camvid/trainannot``), or in
``<split>/labels`` beside ``<split>/images``. Label ids are those of `perception.classes` (CamVid's 11
classes + 11 unlabelled, the ignore label): a PNG holding another id is refused, naming the file.

``--data camvid/val`` (or ``camvid/train@::2``: a slice over the sorted file names, as for drives) gives
`load_camvid` the split; a dataset root holding several splits is refused with the split names.

Pure numpy + OpenCV (+ torch for the frames' tensor); never imports zmq.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from perception.classes import CLASS_NAMES, NUM_LABELS
from perception.datasets import DriveFrames, DriveSpec
from perception.transforms import resize_to_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SOURCE = "camvid"


def is_camvid(path: str | os.PathLike) -> bool:
    """The sniffing hook of ``--data``: True for a folder (a split or a dataset root), which no drive is."""
    return Path(path).is_dir()


def label_dir(images_dir: Path) -> Path:
    """Where the labels of a split folder are; ValueError naming the folder when there are none."""
    images_dir = Path(images_dir)
    for candidate in (images_dir.parent / f"{images_dir.name}annot", images_dir.parent / "labels"
                      if images_dir.name == "images" else images_dir / "labels"):
        if candidate.is_dir():
            return candidate
    splits = sorted(p.name for p in images_dir.iterdir() if p.is_dir() and (images_dir / f"{p.name}annot").is_dir())
    if splits:
        raise ValueError(f"{images_dir}: a dataset root with the splits {', '.join(splits)}; name one "
                         f"({images_dir / splits[0]})")
    raise ValueError(f"{images_dir}: no label folder ({images_dir.name}annot beside it, or labels/); "
                     "not a CamVid-style split")


def read_label(path: Path) -> np.ndarray:
    """A label PNG as uint8 [H, W] class ids; ValueError naming the file when it is not one."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"label {path}: not a readable image")
    if mask.ndim == 3:
        # a grey PNG saved as RGB: the same id in every channel
        if mask.shape[2] not in (3, 4) or not (np.array_equal(mask[..., 0], mask[..., 1])
                                               and np.array_equal(mask[..., 0], mask[..., 2])):
            raise ValueError(f"label {path}: {mask.shape[2]} channels of different values; a label PNG holds "
                             "one class id per pixel (a colour-coded label image needs converting)")
        mask = mask[..., 0]
    if mask.dtype != np.uint8:
        raise ValueError(f"label {path}: {mask.dtype} pixels; label ids are uint8")
    top = int(mask.max()) if mask.size else 0
    if top >= NUM_LABELS:
        bad = np.unique(mask[mask >= NUM_LABELS])
        raise ValueError(f"label {path}: ids {', '.join(map(str, bad[:5].tolist()))} are outside the "
                         f"{NUM_LABELS}-label table (0-{NUM_LABELS - 1}: {', '.join(CLASS_NAMES)})")
    return mask


def load_camvid(spec: DriveSpec | str | os.PathLike, *, size_px: tuple[int, int],
                mask_size_px: tuple[int, int] | None = None) -> DriveFrames:
    """The labelled images of a split folder, as frames with ``truth["mask"]``.

    Images are resized to ``size_px`` = (w, h) (stretched, INTER_AREA, as drives' frames); masks to
    ``mask_size_px`` with nearest-neighbour sampling (None: ``size_px``; ``(0, 0)``: kept at their own
    size, which must then be one for the whole split). An image without a label PNG is skipped and
    counted (``no_mask``); a label of another size than its image, an id outside the class table or an
    unreadable file is a ValueError naming the file.
    """
    spec = spec if isinstance(spec, DriveSpec) else DriveSpec.parse(spec)
    images_dir = spec.path
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: no such folder")
    labels = label_dir(images_dir)
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[spec.frames]
    if not files:
        raise ValueError(f"{spec}: no images (.png, .jpg)")
    mask_size = size_px if mask_size_px is None else mask_size_px
    images, masks, skipped = [], [], {}
    digest = hashlib.sha256()
    for path in files:
        label_path = labels / f"{path.stem}.png"
        if not label_path.is_file():
            skipped["no_mask"] = skipped.get("no_mask", 0) + 1
            continue
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"image {path}: not a readable image")
        mask = read_label(label_path)
        if mask.shape != bgr.shape[:2]:
            raise ValueError(f"label {label_path}: {mask.shape[1]}x{mask.shape[0]} pixels, its image "
                             f"{bgr.shape[1]}x{bgr.shape[0]}")
        if tuple(mask_size) != (0, 0) and (mask.shape[1], mask.shape[0]) != tuple(mask_size):
            mask = cv2.resize(mask, tuple(mask_size), interpolation=cv2.INTER_NEAREST)
        if masks and mask.shape != masks[0].shape:
            raise ValueError(f"label {label_path}: {mask.shape[1]}x{mask.shape[0]} pixels, the split's first "
                             f"{masks[0].shape[1]}x{masks[0].shape[0]}; give a mask size")
        images.append(resize_to_input(bgr, size_px))
        masks.append(mask)
        digest.update(f"{path.name}:{path.stat().st_size}:{label_path.stat().st_size}".encode())
    if not images:
        raise ValueError(f"{spec}: no image has a label PNG in {labels}")
    n = len(images)
    return DriveFrames(
        images=torch.from_numpy(np.stack(images)), truth={"mask": np.stack(masks)},
        stamp_ns=np.arange(n, dtype=np.int64), drive_index=np.zeros(n, np.int64),
        drives=[{"path": str(spec), "source": SOURCE, "frames": n, "sha256": digest.hexdigest()[:16]}],
        skipped=skipped)
