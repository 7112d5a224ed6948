"""The segmenter: per-pixel classes of `perception.classes` from one street image, by PSPNet (Zhao et
al., CVPR 2017) on a small dilated ResNet (output stride 8 or 16, pyramid bins 1, 2, 3, 6, auxiliary loss
0.4, optionally a stride-4 skip decoder).
Trained and scored through the shared seams: the registry, `perception.datasets.load_frames` (drives) or
`perception.formats.camvid` (CamVid-style folders), `perception.training.fit`, the `Checkpoint` record,
`perception.evaluation.evaluate_drives` and ``streetloc train/evaluate segmenter``; docs/segmenter.md.

| module        | what it holds                                                          |
|---------------|------------------------------------------------------------------------|
| `network`     | the network, its registered builder                                    |
| `predictor`   | inference: a checkpoint to label masks                                 |
| `data`        | frames of drives with their label mask, the torch dataset              |
| `training`    | the training task for `perception.training.fit`, its options           |
| `evaluation`  | per-class IoU and mIoU (``streetloc evaluate segmenter``)              |
"""

from perception.models.segmenter.network import PSPNet, segmenter
from perception.models.segmenter.predictor import SegmenterPredictor

__all__ = ["PSPNet", "SegmenterPredictor", "segmenter"]
