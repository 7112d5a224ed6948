"""The detector node: ``camera/image`` in, ``perception/detections`` out (boxes xyxy in the frame's pixels,
class ids of `perception.classes`, scores, the source frame's header and trace, model id).

Runs the checkpoint named by ``model`` (a file or a registered weights name; empty: the default checkpoint
for the default synthetic city) on CUDA in fp16 with channels_last when present, on CPU in fp32
otherwise. With ``delivery = "every"`` (lock-step, or a recording) frames that queued up while the model
was busy are taken together, up to ``max_batch`` in one forward pass; with ``"latest"`` (live) it always
works on the newest frame — as the PoseNet node (nodes/posenet.py).

Input geometry: a frame of another size is letterboxed (black bars at the bottom or right to the model's
aspect, counted as ``letterboxed``) and resized, never cropped or stretched; boxes are published in the
frame's own pixels, with its width and height. ``class_ids`` index ``class_names``, which is the project's
whole class table (`perception.classes.CLASS_NAMES`: 6 sign, 8 car, 9 pedestrian, 10 bicyclist), so the
ids are the ones label masks and ground-truth boxes use.

A bad frame is an answer, not a crash: one whose layout is not an image (4 channels, float pixels, wrong
byte count), whose JPEG does not decode or whose width/height fields disagree with its pixels is rejected and counted in diagnostics
(``reject:camera/image``, alone or in a batch).

    python -m nodes.detector --param model=runs/detector/model.pt --param device=cpu
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
import numpy as np

from nodes.bus.messages import Detections, Header, Image
from nodes.camera_model import CameraModelNode, CameraModelParams
from nodes.runtime import Outputs, node_main
from perception.classes import CLASS_NAMES
from perception.drives.topics import CAMERA_TOPIC, DETECTIONS_TOPIC

log = logging.getLogger("streetloc.detector")


class DetectorParams(CameraModelParams, kw_only=True, forbid_unknown_fields=True):
    """The camera-model parameters (`nodes.camera_model`) and the detector's own."""

    score_threshold: Annotated[float, msgspec.Meta(
        ge=0.0, le=1.0, description="boxes scoring below this are not published")] = 0.5
    nms_iou: Annotated[float, msgspec.Meta(
        gt=0.0, le=1.0, description="IoU above which a lower-scoring box of the same class is suppressed")] = 0.6
    max_detections: Annotated[int, msgspec.Meta(ge=1, le=1000, description="most boxes per frame")] = 100


class DetectorNode(CameraModelNode):
    """Detects signs, cars, pedestrians and bicyclists in each camera frame."""

    name = "detector"
    Params = DetectorParams
    publishes = (DETECTIONS_TOPIC,)
    what_out = "detection sets"

    def __init__(self, params: DetectorParams | None = None) -> None:
        super().__init__(params)
        self.class_ids = np.asarray(self.predictor.class_ids, np.int32)  # detector index -> table id
        self.boxes_out = 0
        self.resized = 0
        self.letterboxed = 0

    def load_predictor(self, params: Any) -> Any:
        from perception.models.detector.predictor import DetectorPredictor

        return DetectorPredictor(params.model or None, device=params.device, half=params.fp16,
                                 max_batch=params.max_batch, nms_iou=params.nms_iou,
                                 max_detections=params.max_detections)

    def _prepare(self, msg: Image) -> tuple[np.ndarray, float, int, int]:
        image = msg.to_bgr()  # the one decode path: ValueError naming the frame when it is not an image
        h, w = image.shape[:2]
        if (msg.width_px, msg.height_px) != (w, h):
            # boxes are published in the frame's pixels: a frame that misstates its size has no right answer
            raise ValueError(f"{CAMERA_TOPIC} frame stamp_ns={msg.header.stamp_ns}: says {msg.width_px}x"
                             f"{msg.height_px} px but holds {w}x{h}")
        if (w, h) != self.predictor.input_size_px:
            self.resized += 1
            iw, ih = self.predictor.input_size_px
            if h and abs(w / h - iw / ih) > 0.01 * iw / ih:
                self.letterboxed += 1
        prepared, scale = self.predictor.prepare_bgr(image)
        return prepared, scale, w, h

    def _infer(self, msgs: list[Image], prepared: list[tuple[np.ndarray, float, int, int]]) -> Outputs:
        import torch

        from perception.models.detector.predictor import to_frame_pixels

        det = self.predictor.predict(torch.from_numpy(np.stack([p[0] for p in prepared])),
                                     score_threshold=self.params.score_threshold)
        out = []
        for i, msg in enumerate(msgs):
            _, scale, w, h = prepared[i]
            boxes, scores, labels = to_frame_pixels(det.boxes[i], det.scores[i], det.labels[i], scale, w, h)
            out.append((DETECTIONS_TOPIC, Detections(
                header=Header(stamp_ns=msg.header.stamp_ns, frame_id=msg.header.frame_id or "camera",
                              trace=list(msg.header.trace)),
                boxes_xyxy_px=boxes.reshape(-1, 4).astype(np.float32), class_ids=self.class_ids[labels],
                scores=scores.astype(np.float32), class_names=list(CLASS_NAMES), image_width_px=int(w),
                image_height_px=int(h), model_id=self.model_id, intrinsics=msg.intrinsics)))
            self.boxes_out += len(boxes)
        return out

    def close_details(self) -> str:
        return f", {self.boxes_out} boxes, {self.resized} resized ({self.letterboxed} letterboxed)"


NODE = DetectorNode

if __name__ == "__main__":
    raise SystemExit(node_main(DetectorNode))
