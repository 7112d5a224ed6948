"""Segmenter (PSPNet) inference speed on CPU or CUDA: images/s at batch 1 and batched, beside plain
torchvision segmentation models of similar FLOPs measured in the same run (untrained, 11 classes, the
same input: LR-ASPP MobileNetV3-Large, about half PSPNet's FLOPs, and DeepLabV3 MobileNetV3-Large, about
twice), plus the node's per-frame path (JPEG decode, resize, model, class fractions) at batch 1.

    .venv/bin/python benchmarks/segmenter_bench.py                          # the default checkpoint, CPU
    .venv/bin/python benchmarks/segmenter_bench.py --model segmenter_camvid --threads 1 2 --json
    .venv/bin/python benchmarks/segmenter_bench.py --device cuda --batch-sizes 1 64   # fp16 + channels_last too

Counts each model's multiply-add FLOPs per image (torch.utils.flop_counter: 2 FLOPs a multiply-add).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.classes import NUM_CLASSES  # noqa: E402
from perception.drives.messages import Header, Image  # noqa: E402
from perception.models.segmenter import SegmenterPredictor  # noqa: E402
from perception.models.segmenter.predictor import class_fractions  # noqa: E402


class _TorchvisionBaseline(nn.Module):
    """A torchvision segmentation model (random weights: speed only), logits [B, K, H, W]."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from torchvision.models import segmentation

        self.net = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


BASELINES = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")


def gflops(model: nn.Module, size_px: tuple[int, int], device: torch.device) -> float:
    """FLOPs of one image's forward pass, in GFLOPs (2 per multiply-add)."""
    w, h = size_px
    x = torch.zeros(1, 3, h, w, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def rate(run, images: torch.Tensor, seconds: float) -> float:
    """Images/s of ``run(images)`` repeated for at least ``seconds`` after 3 warm-up calls."""
    for _ in range(3):
        run(images)
    _sync(images.device)
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or n < 3:
        run(images)
        _sync(images.device)
        n += 1
    return n * images.shape[0] / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint file or weights name (default: the default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="CPU thread counts to measure")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    predictor = SegmenterPredictor(args.model, device=args.device)
    device = predictor.device
    w, h = predictor.input_size_px
    baselines = {name: _TorchvisionBaseline(name).to(device).eval() for name in BASELINES}
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads "
                                f"default, torch {torch.__version__}", "device": str(device),
                     "model_id": predictor.model_id, "input_size_px": [w, h],
                     "gflops": {"pspnet": gflops(predictor.model, (w, h), device),
                                **{n: gflops(m, (w, h), device) for n, m in baselines.items()}},
                     "params_m": {n: sum(p.numel() for p in m.parameters()) / 1e6
                                  for n, m in {"pspnet": predictor.model, **baselines}.items()},
                     "rows": []}
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", frame)
    msg = Image(header=Header(stamp_ns=1), width_px=320, height_px=240, encoding="jpeg", data=jpeg.reshape(-1))

    def node_path(_: torch.Tensor) -> None:
        masks = predictor.predict_bgr([msg.to_bgr()])  # what SegmenterNode does per frame
        class_fractions(masks.numpy())

    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for batch in args.batch_sizes:
            images = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, device=device)
            predictor.max_batch = batch
            with torch.inference_mode():
                row = {"threads": threads, "batch": batch,
                       "pspnet_images_per_s": rate(lambda im: predictor.predict(im), images, args.seconds)}
                for name, model in baselines.items():
                    row[f"{name}_images_per_s"] = rate(lambda im, m=model: m(im.float() / 255.0), images,
                                                       args.seconds)
                if batch == 1:
                    row["node_path_images_per_s"] = rate(node_path, images, args.seconds)
            results["rows"].append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(json.dumps({k: v for k, v in results.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
