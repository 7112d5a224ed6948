"""The segmenter node: ``camera/image`` in, ``perception/segmentation`` out (PSPNet label mask, class
table, per-class pixel fractions, model id).

The mask is published **at the model's output size** (its input size: 160x120 for the default
checkpoint), not at the image's: a consumer wanting image-size labels scales it up by nearest-neighbour
sampling (``cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)``), a 4x smaller message on the bus
and in recordings. ``class_names`` carries the whole table the mask's ids index (`perception.classes`:
CamVid's 11 classes, ``unlabelled`` last, which the network never predicts), ``class_fractions`` the
share of the mask's pixels of each, in the same order; ``model_id`` says which checkpoint labelled it.

Runs the checkpoint named by ``model`` (a file or a registered weights name; empty: the default
synthetic-city checkpoint) on CUDA in fp16 with channels_last when present, on CPU in fp32 otherwise.
With ``delivery = "every"`` (lock-step, or a recording) frames that queued while the model was busy are
labelled together, up to ``max_batch`` in one forward pass; with ``"latest"`` (live) the newest frame only.
A frame of another size is stretched to the model's input (as its training frames were).

A bad frame is an answer, not a crash: one whose layout is not an image (4 channels, float pixels, a
wrong byte count) or whose JPEG does not decode is rejected and counted in diagnostics
(``handler:camera/image:ValueError``, or ``reject:camera/image`` in a batch); the next frame is labelled.

    python -m nodes.segmenter --param model=segmenter_camvid --param device=cpu
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
import numpy as np

from nodes.bus.messages import Header, Image, Segmentation
from nodes.bus.pubsub import Delivery
from nodes.runtime import Node, Outputs, node_main
from perception.drives.topics import CAMERA_TOPIC, SEGMENTATION_TOPIC

log = logging.getLogger("streetloc.segmenter")


class SegmenterParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
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


class SegmenterNode(Node):
    """Labels each camera frame's pixels with PSPNet and publishes the mask with its class fractions."""

    name = "segmenter"
    Params = SegmenterParams
    subscribes = {CAMERA_TOPIC: Delivery.LATEST}
    publishes = (SEGMENTATION_TOPIC,)

    @classmethod
    def declared_topics(cls, params: msgspec.Struct):
        assert isinstance(params, SegmenterParams)
        return {CAMERA_TOPIC: _delivery(params)}, cls.publishes

    def __init__(self, params: SegmenterParams | None = None) -> None:
        super().__init__(params)
        p: SegmenterParams = self.params
        self.subscribes = {CAMERA_TOPIC: _delivery(p)}
        import torch

        from perception.models.segmenter import SegmenterPredictor

        if p.threads:
            torch.set_num_threads(p.threads)
        # ValueError/OSError here (unknown name, missing file, a posenet checkpoint) is a bad parameter:
        # node_main prints it, exit 2
        self.predictor = SegmenterPredictor(p.model or None, device=p.device, half=p.fp16, max_batch=p.max_batch)
        self.model_id = self.predictor.model_id
        self.frames_in = 0
        self.masks_out = 0
        self.rejected = 0
        self.resized = 0
        self.batches = 0
        self.largest_batch = 0
        self._errors: list[tuple[str, str]] = []  # rejected frames of the last batch, for take_errors
        log.info("model %s on %s%s, input and mask %dx%d", self.model_id, self.predictor.device,
                 " fp16" if self.predictor.half else "", *self.predictor.input_size_px)

    def _prepare(self, msg: Image) -> np.ndarray:
        image = msg.to_bgr()  # the one decode path; ValueError naming the stamp when it is not an image
        if (image.shape[1], image.shape[0]) != self.predictor.input_size_px:
            self.resized += 1
        return self.predictor.prepare_bgr(image)

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
        # only "every" delivery queues frames; "latest" always hands over the newest one alone
        return self.params.max_batch if self.params.delivery == "every" else 1

    def on_batch(self, topic: str, msgs: list, recv_ns: int) -> Outputs:
        """Several queued frames in one forward pass; a bad frame is rejected (see take_errors), the
        others are labelled."""
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

    def _infer(self, msgs: list[Image], prepared: list[np.ndarray]) -> list[tuple[str, Segmentation]]:
        import torch

        from perception.models.segmenter.predictor import class_fractions

        masks = self.predictor.predict(torch.from_numpy(np.stack(prepared))).numpy()
        fractions = class_fractions(masks)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(msgs))
        out = []
        for i, msg in enumerate(msgs):
            seg = Segmentation(
                header=Header(stamp_ns=msg.header.stamp_ns, frame_id="segmenter", trace=list(msg.header.trace)),
                label_mask=np.ascontiguousarray(masks[i]), class_names=list(self.predictor.class_names),
                class_fractions=[float(f) for f in fractions[i]], model_id=self.model_id, valid=True)
            out.append((SEGMENTATION_TOPIC, seg))
        self.masks_out += len(out)
        return out

    def close(self) -> None:
        log.info("segmenter: %d frames in, %d masks out, %d rejected, %d resized, %d batches (largest %d)",
                 self.frames_in, self.masks_out, self.rejected, self.resized, self.batches, self.largest_batch)


def _delivery(p: SegmenterParams) -> Delivery:
    return Delivery.EVERY if p.delivery == "every" else Delivery.LATEST


NODE = SegmenterNode

if __name__ == "__main__":
    raise SystemExit(node_main(SegmenterNode))
