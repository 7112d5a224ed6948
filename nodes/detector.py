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
(``handler:camera/image:ValueError``, or ``reject:camera/image`` in a batch).

    python -m nodes.detector --param model=runs/detector/model.pt --param device=cpu
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
import numpy as np

from nodes.bus.messages import Detections, Header, Image
from nodes.bus.pubsub import Delivery
from nodes.runtime import Node, Outputs, node_main
from perception.classes import CLASS_NAMES
from perception.drives.topics import CAMERA_TOPIC, DETECTIONS_TOPIC

log = logging.getLogger("streetloc.detector")


class DetectorParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(
        description="checkpoint file or registered weights name; empty: the default synthetic-city model")] = ""
    device: Annotated[str, msgspec.Meta(
        pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto (CUDA when present), cpu, cuda, cuda:N")] = "auto"
    fp16: Annotated[bool, msgspec.Meta(description="half precision on CUDA (ignored on CPU)")] = True
    max_batch: Annotated[int, msgspec.Meta(
        ge=1, le=512, description="most queued frames taken in one forward pass")] = 16
    delivery: Annotated[str, msgspec.Meta(
        pattern="^(latest|every)$",
        description="latest: newest frame only (live); every: all frames, batched when behind")] = "latest"
    # 1 by default, as the PoseNet node: several OpenMP threads on a CPU shared with other nodes wait at
    # barriers for each other (nodes/posenet.py)
    threads: Annotated[int, msgspec.Meta(
        ge=0, le=256, description="CPU threads for torch (0: torch's default, one per core)")] = 1
    score_threshold: Annotated[float, msgspec.Meta(
        ge=0.0, le=1.0, description="boxes scoring below this are not published")] = 0.5
    nms_iou: Annotated[float, msgspec.Meta(
        gt=0.0, le=1.0, description="IoU above which a lower-scoring box of the same class is suppressed")] = 0.6
    max_detections: Annotated[int, msgspec.Meta(ge=1, le=1000, description="most boxes per frame")] = 100


class DetectorNode(Node):
    """Detects signs, cars, pedestrians and bicyclists in each camera frame."""

    name = "detector"
    Params = DetectorParams
    subscribes = {CAMERA_TOPIC: Delivery.LATEST}
    publishes = (DETECTIONS_TOPIC,)

    @classmethod
    def declared_topics(cls, params: msgspec.Struct):
        assert isinstance(params, DetectorParams)
        return {CAMERA_TOPIC: _delivery(params)}, cls.publishes

    def __init__(self, params: DetectorParams | None = None) -> None:
        super().__init__(params)
        p: DetectorParams = self.params
        self.subscribes = {CAMERA_TOPIC: _delivery(p)}
        import torch

        from perception.models.detector.predictor import DetectorPredictor

        if p.threads:
            torch.set_num_threads(p.threads)
        # ValueError/OSError here (unknown name, missing file, another model's checkpoint) is a bad
        # parameter: node_main prints it, exit 2
        self.predictor = DetectorPredictor(p.model or None, device=p.device, half=p.fp16, max_batch=p.max_batch,
                                           nms_iou=p.nms_iou, max_detections=p.max_detections)
        self.model_id = self.predictor.model_id
        self.class_ids = np.asarray(self.predictor.class_ids, np.int32)  # detector index -> table id
        self.frames_in = 0
        self.detections_out = 0
        self.boxes_out = 0
        self.rejected = 0
        self.resized = 0
        self.letterboxed = 0
        self.batches = 0
        self.largest_batch = 0
        self._errors: list[tuple[str, str]] = []
        log.info("model %s on %s%s, input %dx%d", self.model_id, self.predictor.device,
                 " fp16" if self.predictor.half else "", *self.predictor.input_size_px)

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

    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        assert isinstance(msg, Image)
        self.frames_in += 1
        try:
            prepared = self._prepare(msg)
        except ValueError:
            self.rejected += 1
            raise  # counted by the runtime as handler:camera/image:ValueError, logged once
        return self._infer([msg], [prepared])

    def max_batch(self, topic: str) -> int:
        return self.params.max_batch if self.params.delivery == "every" else 1

    def on_batch(self, topic: str, msgs: list, recv_ns: int) -> Outputs:
        """Several queued frames in one forward pass; a bad frame is rejected (see take_errors)."""
        good, prepared = [], []
        for msg in msgs:
            self.frames_in += 1
            try:
                prepared.append(self._prepare(msg))
                good.append(msg)
            except ValueError as exc:
                self.rejected += 1
                self._errors.append((f"reject:{topic}", str(exc)))
        return self._infer(good, prepared) if good else []

    def take_errors(self) -> list[tuple[str, str]]:
        errors, self._errors = self._errors, []
        return errors

    def _infer(self, msgs: list[Image], prepared: list[tuple[np.ndarray, float, int, int]]) -> list[tuple[str, Detections]]:
        import torch

        from perception.models.detector.predictor import to_frame_pixels

        det = self.predictor.predict(torch.from_numpy(np.stack([p[0] for p in prepared])),
                                     score_threshold=self.params.score_threshold)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(msgs))
        out = []
        for i, msg in enumerate(msgs):
            _, scale, w, h = prepared[i]
            boxes, scores, labels = to_frame_pixels(det.boxes[i], det.scores[i], det.labels[i], scale, w, h)
            out.append((DETECTIONS_TOPIC, Detections(
                header=Header(stamp_ns=msg.header.stamp_ns, frame_id=msg.header.frame_id or "camera",
                              trace=list(msg.header.trace)),
                boxes_xyxy_px=boxes.reshape(-1, 4).astype(np.float32), class_ids=self.class_ids[labels],
                scores=scores.astype(np.float32), class_names=list(CLASS_NAMES), image_width_px=int(w),
                image_height_px=int(h), model_id=self.model_id)))
            self.boxes_out += len(boxes)
        self.detections_out += len(out)
        return out

    def close(self) -> None:
        log.info("detector: %d frames in, %d detection sets out (%d boxes), %d rejected, %d resized (%d "
                 "letterboxed), %d batches (largest %d)", self.frames_in, self.detections_out, self.boxes_out,
                 self.rejected, self.resized, self.letterboxed, self.batches, self.largest_batch)


def _delivery(p: DetectorParams) -> Delivery:
    return Delivery.EVERY if p.delivery == "every" else Delivery.LATEST


NODE = DetectorNode

if __name__ == "__main__":
    raise SystemExit(node_main(DetectorNode))
