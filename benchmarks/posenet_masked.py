"""Does masking moving objects help PoseNet? Today's PoseNet on frames with the segmenter's car, pedestrian
and bicyclist pixels filled with grey, against the same frames unmasked (issue 14 item 4, the cheap
version: no retraining). Raw fixes and fused (the fusion filter, top-5 hypotheses, the drive's odometry,
as `benchmarks/fusion_eval.py`).

    PYTHONPATH=. nice -n 10 python benchmarks/posenet_masked.py /work/retrain/heldout/traffic_72*.mcap \
        --cache /work/context_data/cache [--fill mean|grey] [--dilate-px 2]

Prints per drive and pooled: the share of frames with any dynamic pixels masked, and median / p95 / > 20 m /
95 % coverage / availability of the raw and fused poses, unmasked and masked.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_eval import (  # noqa: E402
    load_drive,
    posenet_hypotheses,
    posenet_validity,
    raw_scores,
    run_filter,
    summarize,
)

from localization.filter import FilterParams  # noqa: E402
from localization.geodesy import LocalFrame  # noqa: E402

DYNAMIC = ("car", "pedestrian", "bicyclist")


def masked_frames(
    images_bgr: list[np.ndarray], *, fill: str, dilate_px: int, batch: int = 16
) -> tuple[list[np.ndarray], float]:
    """The frames with the segmenter's dynamic-class pixels filled; and the mean masked pixel share."""
    import torch

    from perception.classes import CLASS_NAMES
    from perception.models.segmenter import SegmenterPredictor

    seg = SegmenterPredictor(None, device="cpu")
    ids = [CLASS_NAMES.index(c) for c in DYNAMIC]
    out, shares = [], []
    for i in range(0, len(images_bgr), batch):
        chunk = images_bgr[i : i + batch]
        masks = seg.predict(torch.from_numpy(np.stack([seg.prepare_bgr(im) for im in chunk]))).numpy()
        for im, m in zip(chunk, masks, strict=True):
            dyn = np.isin(m, ids).astype(np.uint8)
            dyn = cv2.resize(dyn, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_NEAREST)
            if dilate_px:
                dyn = cv2.dilate(dyn, np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8))
            im = im.copy()
            sel = dyn.astype(bool)
            im[sel] = im.reshape(-1, 3).mean(axis=0).astype(np.uint8) if fill == "mean" else 128
            out.append(im)
            shares.append(float(sel.mean()))
    return out, float(np.mean(shares)) if shares else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drives", nargs="+")
    ap.add_argument("--cache", default=None, help="fusion_eval's PoseNet cache for the unmasked run")
    ap.add_argument("--fill", choices=("grey", "mean"), default="grey")
    ap.add_argument("--dilate-px", type=int, default=2)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from perception.drives import DriveReader

    params = FilterParams()
    rows: dict[str, list] = {k: [] for k in ("raw", "raw masked", "fused", "fused masked")}
    head = f"{'':24s}{'median m':>9s}{'p95 m':>8s}{'>20 m':>8s}{'in 95%':>8s}{'avail':>8s}"
    for path in args.drives:
        data = load_drive(
            path, checkpoint=args.checkpoint, hypotheses=5, odometry_noise="typical", cache_dir=args.cache
        )
        with DriveReader(path) as reader:
            frame = LocalFrame(reader.metadata.geo_origin)
            bgr = [im.to_bgr() for im in reader.images(decode=True)]
        masked, share = masked_frames(bgr, fill=args.fill, dilate_px=args.dilate_px)
        fixes, summary = posenet_hypotheses(masked, frame, args.checkpoint, 5)
        flags = posenet_validity(masked, args.checkpoint, data.stamps_ns)
        mdata = dataclasses.replace(data, fixes=fixes, summary=summary, flags=flags)
        res = {
            "raw": raw_scores(data),
            "raw masked": raw_scores(mdata),
            "fused": run_filter(data, params, use_odometry=True, hypotheses=5, fix_std_m=None),
            "fused masked": run_filter(mdata, params, use_odometry=True, hypotheses=5, fix_std_m=None),
        }
        print(f"\n{Path(path).name}: {share:.1%} of the pixels masked on average\n{head}")
        for k, r in res.items():
            s = summarize(r)
            rows[k].append(r)
            print(
                f"  {k:22s}{s['median_m']:9.2f}{s['p95_m']:8.1f}{s['over_20m']:8.1%}{s['in_95_ellipse']:8.1%}"
                f"{s['availability']:8.1%}"
            )
    print(f"\npooled\n{head}")
    for k, v in rows.items():
        s = summarize({f: np.concatenate([r[f] for r in v]) for f in ("err", "inside", "tracking")})
        print(
            f"  {k:22s}{s['median_m']:9.2f}{s['p95_m']:8.1f}{s['over_20m']:8.1%}{s['in_95_ellipse']:8.1%}"
            f"{s['availability']:8.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
