"""Which frames does PoseNet's validity test flag? Per drive: the share flagged, by reason, and (with
``--compare``) how each candidate out-of-area score separates in-area from out-of-area drives.

    python -m benchmarks.posenet_validity --in-area A.mcap B.mcap --out-of-area C.mcap D.mcap [--compare]

Frames are read whether or not they have GPS (Lund photos, black frames), at the model's input size.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception.datasets import load_frames
from perception.drives import DriveReader
from perception.drives.reader import Frame
from perception.models.posenet.predictor import PosePredictor
from perception.models.posenet.validity import (
    FrameValidity,
    appearance_descriptor,
    knn_distance,
    rolling_mean,
)


class AnyFrame:
    """A `FrameTruth` that keeps every frame (with its GPS when there is one)."""

    key = "any-v1"
    what = "an image"
    gps = "nearest"

    def open(self, reader: DriveReader, size_px: tuple[int, int]) -> Callable[[Frame], dict[str, Any] | str]:
        def read(frame: Frame) -> dict[str, Any]:
            g = frame.gps
            return {"lat_deg": np.nan if g is None else g.lat_deg, "lon_deg": np.nan if g is None else g.lon_deg}

        return read


def drive_images(path: str, size_px: tuple[int, int], cache_dir: str | None) -> torch.Tensor:
    return load_frames([path], size_px=size_px, truth=AnyFrame(), cache_dir=cache_dir).images


def flag_table(predictor: PosePredictor, drives: dict[str, list[str]], cache_dir: str | None) -> list[dict]:
    rows = []
    for kind, paths in drives.items():
        for path in paths:
            images = drive_images(path, predictor.input_size_px, cache_dir)
            validity = FrameValidity(predictor)
            reasons: list[list[str]] = []
            for chunk in images.split(64):
                predictor.predict(chunk)  # as the node does (the test does not need it: timing is honest)
                reasons += validity.assess(chunk)
            n = len(reasons)
            row = {"drive": Path(path).name, "kind": kind, "frames": n,
                   "flagged": sum(bool(r) for r in reasons) / max(n, 1)}
            row.update({r: c / max(n, 1) for r, c in sorted(validity.counts.items())})
            rows.append(row)
    return rows


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an out-of-area frame scores above an in-area one) (Mann-Whitney), 0.5: no separation."""
    v = np.concatenate([inside, outside])
    ranks = v.argsort().argsort() + 1.0
    return float((ranks[len(inside):].sum() - len(outside) * (len(outside) + 1) / 2) / (len(inside) * len(outside)))


def compare_scores(predictor: PosePredictor, bank: list[str], drives: dict[str, list[str]],
                   cache_dir: str | None, window: int = 10) -> list[dict]:
    """AUROC (in-area vs out-of-area frames) of each candidate score, per frame and averaged over
    ``window`` frames: the anchor softmax (max probability, entropy), the energy of the logits, k-NN in the
    network's hidden layer and in the gradient thumbnail, the banks built from ``bank`` drives."""
    from perception.models.posenet.network import logits_slice

    hidden_out: list[torch.Tensor] = []
    hook = predictor.model.head[2].register_forward_hook(lambda m, i, o: hidden_out.append(o.detach().float()))

    def run(path: str) -> dict[str, torch.Tensor]:
        images = drive_images(path, predictor.input_size_px, cache_dir)
        hidden_out.clear()
        raw = predictor.predict_raw(images)
        return {"raw": raw, "hidden": torch.cat(hidden_out), "thumb": appearance_descriptor(images)}

    fit = [run(p) for p in bank]
    banks = {k: torch.cat([f[k] for f in fit]) for k in ("hidden", "thumb")}
    scores: dict[str, dict[str, list[np.ndarray]]] = {}
    for kind, paths in drives.items():
        for path in paths:
            o = run(path)
            logp = o["raw"][:, logits_slice(predictor.model.num_anchors)].log_softmax(1)
            s = {"max_prob": -logp.exp().max(1).values, "entropy": -(logp.exp() * logp).sum(1),
                 "energy": -torch.logsumexp(o["raw"][:, logits_slice(predictor.model.num_anchors)], 1),
                 "knn_hidden": knn_distance(o["hidden"], banks["hidden"]),
                 "knn_gradient_thumbnail": knn_distance(o["thumb"], banks["thumb"])}
            for name, v in s.items():
                v = v.double().numpy()
                scores.setdefault(name, {}).setdefault(kind, []).append(v)
                scores.setdefault(f"{name} (mean of {window})", {}).setdefault(kind, []).append(rolling_mean(v, window))
    hook.remove()
    return [{"score": name, "auroc": auroc(np.concatenate(d["in-area"]), np.concatenate(d["out-of-area"]))}
            for name, d in scores.items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--in-area", nargs="*", default=[])
    ap.add_argument("--out-of-area", nargs="*", default=[])
    ap.add_argument("--compare", nargs="*", metavar="FIT_DRIVE", default=None,
                    help="compare candidate scores (AUROC), their banks built from these training-area drives")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    predictor = PosePredictor(args.model, device="cpu")
    drives = {"in-area": args.in_area, "out-of-area": args.out_of_area}
    rows = (compare_scores(predictor, args.compare, drives, args.cache_dir) if args.compare
            else flag_table(predictor, drives, args.cache_dir))
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        return 0
    if args.compare:
        print("| score | AUROC in-area vs out-of-area |\n|---|---|")
        for r in rows:
            print(f"| {r['score']} | {r['auroc']:.3f} |")
        return 0
    keys = sorted({k for r in rows for k in r} - {"drive", "kind", "frames"})
    print("| drive | kind | frames | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for r in rows:
        print(f"| {r['drive']} | {r['kind']} | {r['frames']} | "
              + " | ".join(f"{100 * r[k]:.1f} %" if k in r else "-" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
