"""Detector inference speed on CPU (or CUDA): images/s at batch 1 and batched, the node's whole path
(letterbox, normalization, network, decoding, NMS) and the network alone, beside plain torchvision
models measured in the same run as the baseline: MobileNetV3-small and -large as ImageNet classifiers at the same
input (plain networks of FLOPs around the detector's: MobileNetV3-small below, -large above) and torchvision's SSDlite320-MobileNetV3 detector (untrained
weights: speed only, decoding included).

    .venv/bin/python benchmarks/detector_bench.py                       # CPU, 1 thread, the default checkpoint
    .venv/bin/python benchmarks/detector_bench.py --threads 2 --batch 16 --json
    .venv/bin/python benchmarks/detector_bench.py --device cuda --batch 64

FLOPs per image are counted with torch.utils.flop_counter (multiply-adds count 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.models import Checkpoint, default_weights  # noqa: E402
from perception.models.detector.predictor import DetectorPredictor  # noqa: E402
from perception.models.detector.training import DetectorTask  # noqa: E402
from perception.training import TrainConfig  # noqa: E402


def _checkpoint(path: str) -> Checkpoint:
    if path:
        return Checkpoint.load(path)
    entry = default_weights("detector")
    if entry.path.is_file():
        return entry.load()
    import tempfile

    # no trained weights yet: an untrained model of the default architecture runs just as fast
    task = DetectorTask(arch={"backbone": "mobilenet_v3_small", "width_mult": 1.0, "fpn_channels": 64},
                        input_size_px=(320, 240), trained_on=[])
    out = Path(tempfile.mkdtemp()) / "untrained.pt"
    task.export(task.build_model().eval(), {}, TrainConfig(out_dir=out.parent), out)
    return Checkpoint.load(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], object], images: int, device: torch.device, seconds: float) -> float:
    """Images/s of ``fn`` (which handles ``images`` images a call): warm-up, then the best of 3 rounds."""
    for _ in range(2):
        fn()
    _sync(device)
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += images
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= seconds / 3:
                break
        best = max(best, n / dt)
    return best


def flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass per image (flop_counter: a multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / x.shape[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="", help="detector checkpoint (default: the shipped default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the node's default: 1)")
    p.add_argument("--batch", type=int, default=16, help="the batched size (besides batch 1)")
    p.add_argument("--seconds", type=float, default=6.0, help="measuring time per figure")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    predictor = DetectorPredictor(_checkpoint(args.checkpoint), device=device, max_batch=args.batch)
    w, h = predictor.input_size_px
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.batch)]
    classifier = torchvision.models.mobilenet_v3_large(weights=None).eval().to(device)
    small = torchvision.models.mobilenet_v3_small(weights=None).eval().to(device)
    ssd = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval().to(device)
    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for batch in (1, args.batch):
            x = torch.randn(batch, 3, h, w, device=device)
            u8 = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, device=device)
            results.setdefault("detector, node path (letterbox + net + NMS)", {})[f"b{batch}"] = rate(
                lambda b=batch: predictor.detect_bgr(frames[:b]), batch, device, args.seconds)
            results.setdefault("detector network + decoding + NMS", {})[f"b{batch}"] = rate(
                lambda u=u8: predictor.predict(u), batch, device, args.seconds)
            results.setdefault("detector network alone (eager fp32)", {})[f"b{batch}"] = rate(
                lambda x=x: predictor.model(x), batch, device, args.seconds)
            results.setdefault("baseline: torchvision mobilenet_v3_small classifier", {})[f"b{batch}"] = rate(
                lambda x=x: small(x), batch, device, args.seconds)
            results.setdefault("baseline: torchvision mobilenet_v3_large classifier", {})[f"b{batch}"] = rate(
                lambda x=x: classifier(x), batch, device, args.seconds)
            imgs = [t for t in torch.rand(batch, 3, h, w, device=device)]
            results.setdefault("baseline: torchvision ssdlite320_mobilenet_v3_large (320x320)", {})[f"b{batch}"] = rate(
                lambda i=imgs: ssd(i), batch, device, args.seconds)
        x1 = torch.randn(1, 3, h, w, device=device)
        gflops = {"detector": flops(predictor.model, x1) / 1e9, "mobilenet_v3_small": flops(small, x1) / 1e9,
                  "mobilenet_v3_large": flops(classifier, x1) / 1e9,
                  "ssdlite320 backbone": flops(ssd.backbone, torch.randn(1, 3, 320, 320, device=device)) / 1e9}
    report = {"device": str(device), "threads": args.threads, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "input_size_px": [w, h],
              "model_id": predictor.model_id, "gflops_per_image": gflops, "images_per_s": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"detector {predictor.model_id} at {w}x{h} on {device}, {args.threads} thread(s), {os.cpu_count()} cores, "
          f"load {report['load_avg_1min']:.1f}; GFLOPs/image: "
          + ", ".join(f"{k} {v:.2f}" for k, v in gflops.items()))
    print(f"{'images/s':<62} {'batch 1':>8} {'batch ' + str(args.batch):>9}")
    for name, r in results.items():
        print(f"{name:<62} {r['b1']:>8.1f} {r[f'b{args.batch}']:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
