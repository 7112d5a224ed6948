"""The segmenter node: ``camera/image`` in, ``perception/segmentation`` out (PSPNet label mask, class
table, per-class pixel fractions, model id).

The mask is published **at the model's output size** (its input size: 320x240 for the default
checkpoint, the project's camera size, so it lines up pixel for pixel with those frames; 192x144 for
``segmenter_camvid``), not at the image's: a consumer of another image size scales it by nearest-neighbour
sampling (``cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)``). ``class_names`` carries the whole table the mask's ids index (`perception.classes`:
CamVid's 11 classes, ``unlabelled`` last, which the network never predicts), ``class_fractions`` the
share of the mask's pixels of each, in the same order; ``model_id`` says which checkpoint labelled it.

Runs the checkpoint named by ``model`` (a file or a registered weights name; empty: the default
synthetic-city checkpoint) on CUDA in fp16 with channels_last when present, on CPU in fp32 otherwise.
With ``delivery = "every"`` (lock-step, or a recording) frames that queued while the model was busy are
labelled together, up to ``max_batch`` in one forward pass; with ``"latest"`` (live) the newest frame only.
A frame of another size is stretched to the model's input (as its training frames were).

A bad frame is an answer, not a crash: one whose layout is not an image (4 channels, float pixels, a
wrong byte count) or whose JPEG does not decode is rejected and counted in diagnostics
(``reject:camera/image``, alone or in a batch); the next frame is labelled.

    python -m nodes.segmenter --param model=segmenter_camvid --param device=cpu
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nodes.bus.messages import Header, Image, Segmentation
from nodes.camera_model import CameraModelNode, CameraModelParams
from nodes.runtime import Outputs, node_main
from perception.drives.topics import SEGMENTATION_TOPIC

log = logging.getLogger("streetloc.segmenter")


class SegmenterParams(CameraModelParams, kw_only=True, forbid_unknown_fields=True):
    """The camera-model parameters (`nodes.camera_model`); the segmenter has no others."""


class SegmenterNode(CameraModelNode):
    """Labels each camera frame's pixels with PSPNet and publishes the mask with its class fractions."""

    name = "segmenter"
    Params = SegmenterParams
    publishes = (SEGMENTATION_TOPIC,)
    what_out = "masks"

    def __init__(self, params: SegmenterParams | None = None) -> None:
        super().__init__(params)
        self.resized = 0

    def load_predictor(self, params: Any) -> Any:
        from perception.models.segmenter import SegmenterPredictor

        return SegmenterPredictor(params.model or None, device=params.device, half=params.fp16,
                                  max_batch=params.max_batch)

    def _prepare(self, msg: Image) -> np.ndarray:
        image = msg.to_bgr()  # the one decode path; ValueError naming the stamp when it is not an image
        if (image.shape[1], image.shape[0]) != self.predictor.input_size_px:
            self.resized += 1
        return self.predictor.prepare_bgr(image)

    def _infer(self, msgs: list[Image], prepared: list[np.ndarray]) -> Outputs:
        import torch

        from perception.models.segmenter.predictor import class_fractions

        masks = self.predictor.predict(torch.from_numpy(np.stack(prepared))).numpy()
        fractions = class_fractions(masks)
        out = []
        for i, msg in enumerate(msgs):
            seg = Segmentation(
                header=Header(stamp_ns=msg.header.stamp_ns, frame_id="segmenter", trace=list(msg.header.trace)),
                label_mask=np.ascontiguousarray(masks[i]), class_names=list(self.predictor.class_names),
                class_fractions=[float(f) for f in fractions[i]], model_id=self.model_id, valid=True)
            out.append((SEGMENTATION_TOPIC, seg))
        return out

    def close_details(self) -> str:
        return f", {self.resized} resized"


NODE = SegmenterNode

if __name__ == "__main__":
    raise SystemExit(node_main(SegmenterNode))
