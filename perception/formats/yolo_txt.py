"""YOLO txt labels (``images/NAME.jpg`` + ``labels/NAME.txt``) as detector boxes.

A label line is ``class cx cy w h``, the box centre and size as fractions of the image's width and height.
Class numbers index ``classes.txt`` (one name a line, project class names such as ``car``) when the folder
has one, else the detector's own classes in order: 0 sign, 1 car, 2 pedestrian, 3 bicyclist. A name that
is not a detector class is left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from perception.formats import IMAGE_SUFFIXES
from perception.models.detector.network import DETECTOR_CLASS_NAMES


def class_table(folder: str | os.PathLike) -> list[str]:
    """Names of the class numbers of a YOLO folder (``classes.txt``, else the detector's classes)."""
    path = Path(folder) / "classes.txt"
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return list(DETECTOR_CLASS_NAMES)


def read_labels(path: str | os.PathLike, width_px: int, height_px: int,
                names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One label file -> (boxes float32 [n, 4] xyxy pixels, detector class index int64 [n]); ValueError
    naming the file and line when a line is not ``class cx cy w h``."""
    from perception.models.detector.data import detector_labels

    path = Path(path)
    rows = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, cx, cy, w, h = int(fields[0]), *map(float, fields[1:5])
        except (ValueError, TypeError):
            raise ValueError(f"{path}:{no}: not 'class cx cy w h' ({line.strip()[:60]!r})") from None
        if len(fields) != 5 or not 0 <= cls < len(names):
            raise ValueError(f"{path}:{no}: class {cls} is outside the {len(names)}-class table or the line "
                             f"has {len(fields)} fields, not 5")
        rows.append((cls, cx, cy, w, h))
    a = np.asarray(rows, np.float64).reshape(-1, 5)
    boxes = np.stack([(a[:, 1] - a[:, 3] / 2) * width_px, (a[:, 2] - a[:, 4] / 2) * height_px,
                      (a[:, 1] + a[:, 3] / 2) * width_px, (a[:, 2] + a[:, 4] / 2) * height_px], 1)
    labels = detector_labels(names, a[:, 0].astype(np.int64))
    keep = labels >= 0
    return boxes[keep].astype(np.float32), labels[keep]


def read_folder(folder: str | os.PathLike) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, boxes, labels) of every image of ``images/`` with a label file, sorted by name."""
    folder = Path(folder)
    names = class_table(folder)
    out = []
    for image in sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = folder / "labels" / (image.stem + ".txt")
        if not label.is_file():
            continue
        shape = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
        if shape is None:
            raise ValueError(f"{image}: not a readable image")
        out.append((image, *read_labels(label, shape.shape[1], shape.shape[0], names)))
    return out
