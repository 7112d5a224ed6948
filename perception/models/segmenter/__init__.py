"""A small segmenter: per-pixel classes of `perception.classes` from one street image.

An honest baseline, not PSPNet (issue 12 brings that): a few strided convolutions, a 1x1 classifier
and bilinear upsampling. It exists so that a second model goes through every shared seam — the registry,
`perception.datasets.load_frames`, `perception.training.fit`, the `Checkpoint` record,
`perception.evaluation.evaluate_drives` and ``streetloc train/evaluate segmenter``.

| module        | what it holds                                                          |
|---------------|------------------------------------------------------------------------|
| `network`     | the network, its registered builder                                    |
| `predictor`   | inference: a checkpoint to label masks                                 |
| `data`        | frames of drives with their label mask, the torch dataset              |
| `training`    | the training task for `perception.training.fit`, its options           |
| `evaluation`  | per-class IoU and mIoU (``streetloc evaluate segmenter``)              |
"""

from perception.models.segmenter.network import SmallSegmenter, segmenter
from perception.models.segmenter.predictor import SegmenterPredictor

__all__ = ["SegmenterPredictor", "SmallSegmenter", "segmenter"]
