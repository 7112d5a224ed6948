"""KITTI object labels (``image_2/NNNNNN.png`` + ``label_2/NNNNNN.txt``) as detector boxes.

A label line has 15 fields: type, truncated, occluded, alpha, the 2-D box ``left top right bottom``
(pixels), then 3-D dimensions, location and rotation (unused here). Types map to the detector's classes:

| KITTI type                 | detector class |
|----------------------------|----------------|
| Car, Van, Truck            | car            |
| Pedestrian, Person_sitting | pedestrian     |
| Cyclist                    | bicyclist      |
| Tram, Misc, DontCare       | not scored (left out) |

KITTI labels no signs or traffic lights: on KITTI the sign class has no truth and no AP.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from perception.classes import BICYCLIST, CAR, PEDESTRIAN
from perception.formats import IMAGE_SUFFIXES

KITTI_TO_CLASS: dict[str, int] = {
    "Car": CAR, "Van": CAR, "Truck": CAR,
    "Pedestrian": PEDESTRIAN, "Person_sitting": PEDESTRIAN,
    "Cyclist": BICYCLIST,
}
KITTI_TYPES = (*KITTI_TO_CLASS, "Tram", "Misc", "DontCare")


def read_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One label file -> (boxes float32 [n, 4] xyxy pixels, detector class index int64 [n]); ValueError
    naming the file and line when a line is not a KITTI object label."""
    from perception.classes import CLASS_NAMES
    from perception.models.detector.data import detector_labels

    path = Path(path)
    boxes, ids = [], []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8 or fields[0] not in KITTI_TYPES:
            raise ValueError(f"{path}:{no}: not a KITTI object label (type {fields[0]!r}, {len(fields)} fields)")
        try:
            box = [float(v) for v in fields[4:8]]
        except ValueError:
            raise ValueError(f"{path}:{no}: box {fields[4:8]} is not four numbers") from None
        if fields[0] in KITTI_TO_CLASS:
            boxes.append(box)
            ids.append(KITTI_TO_CLASS[fields[0]])
    labels = detector_labels(CLASS_NAMES, np.asarray(ids, np.int64))
    return np.asarray(boxes, np.float32).reshape(-1, 4), labels


def read_folder(folder: str | os.PathLike) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, boxes, labels) of every image of ``image_2/`` with a label file, sorted by name."""
    folder = Path(folder)
    out = []
    for image in sorted(p for p in (folder / "image_2").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = folder / "label_2" / (image.stem + ".txt")
        if label.is_file():
            out.append((image, *read_labels(label)))
    return out
