"""Which frames does PoseNet's validity test flag? Per drive: the share flagged, by reason, and (with
``--compare``) how each candidate out-of-area score separates in-area from out-of-area drives.

    python -m benchmarks.posenet_validity --in-area A.mcap B.mcap --out-of-area C.mcap D.mcap [--compare]
    python -m benchmarks.posenet_validity --leave IN.mcap OUT.mcap [--leave ...]   # leaving the area and back

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


def leave_and_return(predictor: PosePredictor, in_path: str, out_path: str, cache_dir: str | None, *,
                     in_frames: int = 200, out_frames: int = 150, back_frames: int = 100,
                     period_ns: int = 200_000_000) -> dict:
    """One stream: ``in_frames`` of an in-area drive, ``out_frames`` of an out-of-area one, then the in-area
    drive's first ``back_frames`` again (frames ``period_ns`` apart). How long until the frames outside are
    flagged, and until the frames back inside are not."""
    a = drive_images(in_path, predictor.input_size_px, cache_dir)
    b = drive_images(out_path, predictor.input_size_px, cache_dir)[:out_frames]
    images = torch.cat([a[:in_frames], b, a[:back_frames]])
    flags = np.array(["out_of_area" in r for r in FrameValidity(predictor).assess(
        images, stamps_ns=np.arange(len(images), dtype=np.int64) * period_ns)])
    n_in, n_out = min(in_frames, len(a)), len(b)
    outside, back = flags[n_in:n_in + n_out], flags[n_in + n_out:]
    period_s = period_ns * 1e-9
    return {"in": Path(in_path).name, "out": Path(out_path).name,
            "in_flagged": float(flags[:n_in].mean()), "out_flagged": float(outside.mean()),
            "flagged_after_s": float(np.argmax(outside) * period_s) if outside.any() else None,
            "recognised_after_s": float(np.argmin(back) * period_s) if (~back).any() else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--in-area", nargs="*", default=[])
    ap.add_argument("--out-of-area", nargs="*", default=[])
    ap.add_argument("--compare", nargs="*", metavar="FIT_DRIVE", default=None,
                    help="compare candidate scores (AUROC), their banks built from these training-area drives")
    ap.add_argument("--leave", nargs=2, action="append", default=[], metavar=("IN", "OUT"),
                    help="a stream that leaves the area (IN's frames, then OUT's) and comes back")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    predictor = PosePredictor(args.model, device="cpu")
    if args.leave:
        rows = [leave_and_return(predictor, a, b, args.cache_dir) for a, b in args.leave]
        if args.json:
            json.dump(rows, sys.stdout, indent=1)
            return 0
        print("| in-area drive | then | in-area part flagged | outside part flagged | flagged after | "
              "recognised again after |\n|---|---|---|---|---|---|")
        for r in rows:
            t = [f"{r[k]:.1f} s" if r[k] is not None else "never" for k in ("flagged_after_s", "recognised_after_s")]
            print(f"| {r['in']} | {r['out']} | {100 * r['in_flagged']:.1f} % | {100 * r['out_flagged']:.1f} % | "
                  f"{t[0]} | {t[1]} |")
        return 0
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
    for kind in drives:
        n = sum(r["frames"] for r in rows if r["kind"] == kind)
        if n:
            ooa = sum(r.get("out_of_area", 0.0) * r["frames"] for r in rows if r["kind"] == kind) / n
            print(f"{kind}: {n} frames, {100 * ooa:.1f} % flagged out_of_area")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
