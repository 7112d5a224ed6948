"""PoseNet inference speed: images/s by batch size, eager fp32 (the baseline) against the node's path
(fp16 + channels_last on CUDA), plus the whole per-frame path of the node (JPEG decode, resize, model).

    .venv/bin/python benchmarks/posenet_bench.py                       # CPU, the default checkpoint
    .venv/bin/python benchmarks/posenet_bench.py --device cuda --batch-sizes 1 64 256
    .venv/bin/python benchmarks/posenet_bench.py --backbone resnet18 --input-size 224x224 --json

Also counts the model's FLOPs per image (torch.utils.flop_counter) and says what share of a peak
(``--peak-tflops``, default 800: an H100's dense bf16/fp16 tensor-core rate) the measured rate reaches.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.commands import pair_of_ints  # noqa: E402
from perception.drives.messages import Header, Image  # noqa: E402
from perception.models import Checkpoint, PosePredictor, default_weights, get_model  # noqa: E402
from perception.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def _checkpoint(args) -> Checkpoint:
    if args.checkpoint:
        return Checkpoint.load(args.checkpoint)
    if args.backbone is None:
        path = default_weights("posenet").path
        if path.is_file():
            return Checkpoint.load(path)
    backbone = args.backbone or "mobilenet_v3_small"
    size = pair_of_ints(args.input_size or "160x120", option="--input-size", low=16, high=4096)
    arch = {"backbone": backbone, "hidden": 256, "dropout": 0.2}
    return Checkpoint(model="posenet", arch=arch, state_dict=get_model("posenet", **arch).state_dict(), meta={
        "input_size_px": list(size), "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "geo_origin": {"lat_deg": 34.0522, "lon_deg": -118.2437, "alt_m": 0.0}, "center_enu_m": [0.0, 0.0],
        "scale_m": 100.0})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(predictor: PosePredictor, batch: int, seconds: float) -> float:
    """Images/s of the model alone on uint8 batches already on the device (normalization included)."""
    w, h = predictor.input_size_px
    images = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, device=predictor.device)
    predictor.max_batch = batch
    for _ in range(3):  # warm-up: cuDNN algorithm choice, allocator, lazy init
        predictor.predict_raw(images)
    _sync(predictor.device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        predictor.predict_raw(images)
        n += 1
    _sync(predictor.device)
    return n * batch / (time.perf_counter() - t0)


def _node_path_rate(predictor: PosePredictor, seconds: float, frame_wh: tuple[int, int]) -> float:
    """Frames/s of the node's per-frame work at batch 1: JPEG decode, resize, model, lat/lon."""
    import cv2

    w, h = frame_wh
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    msg = Image(Header(0), width_px=w, height_px=h, encoding="jpeg", data=jpeg.reshape(-1))
    predictor.max_batch = 1
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        predictor.predict_bgr([msg.to_bgr()])  # the node's decode path
        n += 1
    return n / (time.perf_counter() - t0)


def _flops_per_image(ckpt: Checkpoint) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = get_model("posenet", **ckpt.arch).eval()
    w, h = ckpt.input_size_px
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, h, w))
    return float(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint file (default: the shipped default, else untrained)")
    parser.add_argument("--backbone", help="benchmark an untrained model of this backbone instead")
    parser.add_argument("--input-size", help="WxH for --backbone (default 160x120)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 1 16 on CPU, 1 64 256 on CUDA")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--peak-tflops", type=float, default=800.0, help="peak to compare with (H100 dense bf16)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = _checkpoint(args)
    eager = PosePredictor(ckpt, device=args.device, half=False, channels_last=False)
    device = eager.device
    cuda = device.type == "cuda"
    batches = args.batch_sizes or ([1, 64, 256] if cuda else [1, 16])
    flops = _flops_per_image(ckpt)
    rows = []
    fast = PosePredictor(ckpt, device=device, half=True, channels_last=True) if cuda else None
    for b in batches:
        row = {"batch": b, "eager_fp32_img_s": _rate(eager, b, args.seconds)}
        if fast is not None:
            row["fp16_channels_last_img_s"] = _rate(fast, b, args.seconds)
            row["speedup"] = row["fp16_channels_last_img_s"] / row["eager_fp32_img_s"]
        best = row.get("fp16_channels_last_img_s", row["eager_fp32_img_s"])
        row["achieved_tflops"] = best * flops / 1e12
        rows.append(row)
    node_fps = _node_path_rate(fast or eager, args.seconds, (320, 240))
    # the same path without the place index (the regression's hypotheses): what the index costs
    bare = PosePredictor(ckpt, device=device, places=False) if eager.places is not None else None
    bare_fps = _node_path_rate(bare, args.seconds, (320, 240)) if bare is not None else None
    result = {
        "model_id": ckpt.model_id, "backbone": ckpt.arch.get("backbone"), "input_size_px": list(ckpt.input_size_px),
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)", "gflops_per_image": flops / 1e9, "rows": rows,
        "node_path_320x240_jpeg_fps": node_fps, "node_path_without_places_fps": bare_fps,
        "place_index_frames": len(eager.places.bank) if eager.places is not None else 0, "torch": torch.__version__,
    }
    if cuda:
        result["peak_tflops"] = args.peak_tflops
        result["best_share_of_peak"] = max(r["achieved_tflops"] for r in rows) / args.peak_tflops
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    w, h = ckpt.input_size_px
    print(f"PoseNet {ckpt.model_id} ({result['backbone']}, {w}x{h}, {flops / 1e9:.3f} GFLOP/image) on {result['device']}")
    header = f"{'batch':>6} {'eager fp32 img/s':>17}" + (f" {'fp16+CL img/s':>14} {'speedup':>8}" if cuda else "") + \
        f" {'TFLOP/s':>9}"
    print(header)
    for r in rows:
        line = f"{r['batch']:>6} {r['eager_fp32_img_s']:>17.1f}"
        if cuda:
            line += f" {r['fp16_channels_last_img_s']:>14.1f} {r['speedup']:>7.2f}x"
        print(line + f" {r['achieved_tflops']:>9.4f}")
    print(f"node path (320x240 JPEG decode + resize + model + lat/lon, batch 1): {node_fps:.1f} frames/s"
          + (f" with the place index ({result['place_index_frames']} views), {bare_fps:.1f} without"
             if bare_fps is not None else ""))
    if cuda:
        print(f"best: {100 * result['best_share_of_peak']:.2f}% of {args.peak_tflops:.0f} TFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
