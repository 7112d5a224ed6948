"""The detector (YOLO-style, anchor-free): boxes of signs, cars, pedestrians and bicyclists in one image.

| module        | what it holds                                                            |
|---------------|--------------------------------------------------------------------------|
| `network`     | the network, its registered builder and weights, output decoding + NMS   |
| `loss`        | target assignment (centre sampling per stride) and the losses            |
| `predictor`   | inference: a checkpoint to boxes in the frame's pixels                   |
| `data`        | frames of drives and label folders with their boxes, the torch dataset   |
| `training`    | the training task for `perception.training.fit`, its options             |
| `evaluation`  | COCO mAP@0.5 and mAP@[.5:.95] (pycocotools), ``streetloc evaluate detector`` |
"""

from perception.models.detector.network import DETECTOR_CLASS_NAMES, DETECTOR_CLASSES, Detector, detector

__all__ = ["DETECTOR_CLASSES", "DETECTOR_CLASS_NAMES", "Detector", "detector"]
