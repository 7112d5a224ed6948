"""What every CNN node over camera frames shares (PoseNet, the detector, the segmenter): one input topic
(`camera/image`), the model's parameters, batching when behind, per-frame rejection, and the counters.

A subclass names its Params (a `CameraModelParams` with its own fields added), its output topic, and
three steps: ``load_predictor(params)`` (the model; ValueError/OSError there is a bad parameter, exit 2),
``_prepare(msg)`` (one frame -> what the model takes; ValueError names a bad frame) and
``_infer(msgs, prepared)`` (one forward pass over the good frames -> the outputs). torch is imported by
the predictor, lazily, so importing a node module stays light (tests/nodes/test_light_imports.py).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import msgspec

from nodes.bus.messages import Image
from nodes.bus.pubsub import Delivery
from nodes.runtime import Node, Outputs
from perception.drives.topics import CAMERA_TOPIC

log = logging.getLogger("streetloc.camera_model")


class CameraModelParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The parameters every camera CNN node has (its own come after these)."""

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
    # 1 by default: a batch-1 forward pass is ~50 small kernels, and with several OpenMP threads each
    # waits at a barrier for the others; on a CPU shared with other nodes a waiting thread loses its
    # core for a scheduler slice (measured: 5 ms with 1 thread, 0.5-1 s with 2 on a busy 2-core machine)
    threads: Annotated[int, msgspec.Meta(
        ge=0, le=256, description="CPU threads for torch (0: torch's default, one per core)")] = 1
    # live, the pose waits for PoseNet alone: with the detector and the segmenter at a lower priority, the
    # pose path keeps the CPU when the three models want more than there is (BENCHMARKS.md, live latency)
    nice: Annotated[int, msgspec.Meta(
        ge=0, le=19, description="lower this node's CPU priority by this much (Unix nice; 0: unchanged)")] = 0


def delivery_of(params: CameraModelParams) -> Delivery:
    return Delivery.EVERY if params.delivery == "every" else Delivery.LATEST


class CameraModelNode(Node):
    """A CNN over camera frames: frames in, one output per good frame; a bad frame costs only itself."""

    abstract = True  # a base for node classes, not a node module of its own (nodes.launcher.graph)
    subscribes = {CAMERA_TOPIC: Delivery.LATEST}
    what_out = "outputs"  # what the close line counts ("fixes", "masks" ...)

    @classmethod
    def declared_topics(cls, params: msgspec.Struct):
        assert isinstance(params, CameraModelParams)
        return {CAMERA_TOPIC: delivery_of(params)}, cls.publishes

    def __init__(self, params: CameraModelParams | None = None) -> None:
        super().__init__(params)
        p: CameraModelParams = self.params
        self.subscribes = {CAMERA_TOPIC: delivery_of(p)}
        if p.nice:
            os.nice(p.nice)
        if p.threads:
            import torch

            torch.set_num_threads(p.threads)
        # ValueError/OSError here (unknown name, missing file, another model's checkpoint) is a bad
        # parameter: node_main prints it, exit 2
        self.predictor = self.load_predictor(p)
        self.model_id = self.predictor.model_id
        self.frames_in = 0
        self.outputs = 0
        self.rejected = 0
        self.batches = 0
        self.largest_batch = 0
        self._errors: list[tuple[str, str]] = []  # rejected frames of the last batch, for take_errors
        log.info("%s: model %s on %s%s, input %dx%d", self.name, self.model_id, self.predictor.device,
                 " fp16" if self.predictor.half else "", *self.predictor.input_size_px)

    # what a subclass brings
    def load_predictor(self, params: Any) -> Any:
        raise NotImplementedError

    def _prepare(self, msg: Image) -> Any:
        raise NotImplementedError

    def _infer(self, msgs: list[Image], prepared: list[Any]) -> Outputs:
        raise NotImplementedError

    # shared
    def on_message(self, topic: str, msg: msgspec.Struct, recv_ns: int) -> Outputs:
        # a lone frame is a batch of one: a bad one is counted as ``reject:camera/image`` whether it came
        # alone or queued with others
        return self.on_batch(topic, [msg], recv_ns)

    def max_batch(self, topic: str) -> int:
        # only "every" delivery queues frames; "latest" always hands over the newest one alone
        return self.params.max_batch if self.params.delivery == "every" else 1

    def on_batch(self, topic: str, msgs: list, recv_ns: int) -> Outputs:
        """Several queued frames in one forward pass; a bad frame is rejected (see take_errors), the
        others are answered."""
        good, prepared = [], []
        for msg in msgs:
            self.frames_in += 1
            try:
                prepared.append(self._prepare(msg))
                good.append(msg)
            except Exception as exc:  # noqa: BLE001 - one bad frame (ValueError, cv2.error) costs only itself
                self.rejected += 1
                self._errors.append((f"reject:{topic}", str(exc)))
        return self._run(good, prepared) if good else []

    def take_errors(self) -> list[tuple[str, str]]:
        errors, self._errors = self._errors, []
        return errors

    def _run(self, msgs: list[Image], prepared: list[Any]) -> Outputs:
        out = self._infer(msgs, prepared)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(msgs))
        self.outputs += len(out)
        return out

    def close(self) -> None:
        log.info("%s: %d frames in, %d %s out, %d rejected, %d batches (largest %d)%s", self.name,
                 self.frames_in, self.outputs, self.what_out, self.rejected, self.batches, self.largest_batch,
                 self.close_details())

    def close_details(self) -> str:
        """More counts for the close line (", 3 resized")."""
        return ""
