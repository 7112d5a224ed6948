"""Label folders of other people's datasets, read as the project's frames with truth.

| format      | layout                                                        | module       |
|-------------|---------------------------------------------------------------|--------------|
| KITTI object| ``image_2/*.png`` + ``label_2/*.txt`` (15 fields a line)      | `kitti`      |
| YOLO txt    | ``images/*`` + ``labels/*.txt`` (``class cx cy w h``, 0-1)    | `yolo_txt`   |

`sniff` says which a folder is; `load_folder` reads it as `perception.datasets.DriveFrames` with the
detector's box truth (letterboxed to the input size, as `perception.models.detector.data`).
Pure Python/numpy/OpenCV: never imports zmq.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from perception.datasets import DriveFrames, DriveSpec
from perception.transforms import pad_to_aspect, resize_to_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def sniff(folder: str | os.PathLike) -> str:
    """``"kitti"`` or ``"yolo"`` for a label folder; ValueError naming the folder when it is neither."""
    folder = Path(folder)
    if (folder / "image_2").is_dir() and (folder / "label_2").is_dir():
        return "kitti"
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return "yolo"
    raise ValueError(f"{folder}: not a KITTI object folder (image_2/ + label_2/) nor a YOLO txt folder "
                     "(images/ + labels/)")


def load_folder(spec: DriveSpec | str | os.PathLike, *, size_px: tuple[int, int], fmt: str) -> DriveFrames:
    """A label folder's images (``spec.frames`` selects among them, sorted by name) with truth ``boxes``,
    ``labels`` (detector class index) and ``scale`` at ``size_px``; ValueError naming the file at fault."""
    from perception.models.detector.data import letterbox_scale

    spec = spec if isinstance(spec, DriveSpec) else DriveSpec.parse(spec)
    if fmt == "kitti":
        from perception.formats.kitti import read_folder
    elif fmt == "yolo":
        from perception.formats.yolo_txt import read_folder
    else:
        raise ValueError(f"{spec.path}: unknown label format {fmt!r}")
    items = read_folder(spec.path)[spec.frames]
    if not items:
        raise ValueError(f"{spec.path}: no labelled images")
    images, boxes, labels, scales = [], [], [], []
    h = hashlib.sha256()
    for image_path, box_xyxy, label in items:
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{image_path}: not a readable image")
        scale = letterbox_scale(bgr.shape[1], bgr.shape[0], size_px)
        images.append(resize_to_input(pad_to_aspect(bgr, size_px[0] / size_px[1]), size_px))
        boxes.append((box_xyxy * scale).astype(np.float32))
        labels.append(label.astype(np.int64))
        scales.append(scale)
        h.update(image_path.name.encode())
    n = len(images)
    return DriveFrames(images=torch.from_numpy(np.stack(images)),
                       truth={"boxes": boxes, "labels": labels, "scale": np.asarray(scales)},
                       stamp_ns=np.arange(n, dtype=np.int64), drive_index=np.zeros(n, np.int64),
                       drives=[{"path": str(spec), "source": f"{fmt} folder", "frames": n,
                                "sha256": h.hexdigest()[:16]}])
