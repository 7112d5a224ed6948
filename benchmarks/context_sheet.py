"""A contact sheet of the scene context the fusion used: frames of a drive with the segmenter's mask, the
detector's boxes, and the trust the context model gave PoseNet's fix (and why), beside the fix's real error.

    PYTHONPATH=. python benchmarks/context_sheet.py DRIVE.mcap --out sheet.png [--model context.json]
        [--run RUN.mcap] [--tiles 12] [--cache DIR]

Without ``--run`` the three CNNs and the model run here, as the nodes would (`perception.context_data`);
with ``--run`` (a recording of a graph run with ``--arg context=...``: ``streetloc replay ... --record``)
the trust and reason are the ones the fusion put in its poses at each fix's stamp, and the masks and boxes
the recorded ones when present. Tiles: the least trusted fixes first, then evenly through the rest, so the
sheet shows what the model doubts and what it does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localization.context import FEATURES, ContextModel  # noqa: E402

TILE_W, TILE_H = 320, 240


def pick(trust: np.ndarray, n: int) -> np.ndarray:
    """Indices: half the tiles the least trusted frames (spread out in time), half evenly over the rest."""
    order = np.argsort(trust, kind="stable")
    low = []
    for k in order:
        if len(low) >= n // 2:
            break
        if all(abs(int(k) - j) > 10 for j in low):  # not ten tiles of the same second
            low.append(int(k))
    rest = np.setdiff1d(np.arange(len(trust)), low)
    even = rest[np.linspace(0, len(rest) - 1, n - len(low)).astype(int)] if len(rest) else []
    return np.array(sorted({*low, *map(int, even)}))


def tile(
    image_bgr: np.ndarray,
    mask: np.ndarray | None,
    boxes: list[tuple[np.ndarray, str]],
    caption: list[str],
    trust: float,
) -> np.ndarray:
    from perception.classes import colorize

    img = cv2.resize(image_bgr, (TILE_W, TILE_H))
    if mask is not None:
        color = cv2.resize(colorize(mask), (TILE_W, TILE_H), interpolation=cv2.INTER_NEAREST)
        img = cv2.addWeighted(img, 0.55, color, 0.45, 0)
    sx, sy = TILE_W / image_bgr.shape[1], TILE_H / image_bgr.shape[0]
    for box, name in boxes:
        x1, y1, x2, y2 = (box * [sx, sy, sx, sy]).astype(int)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 255), 1)
        cv2.putText(
            img, name, (x1, max(10, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 255), 1, cv2.LINE_AA
        )
    band = np.full((44, TILE_W, 3), 255, np.uint8)
    bar = int(round(trust * (TILE_W - 8)))
    green_red = (0, int(200 * trust), int(220 * (1 - trust)))
    cv2.rectangle(band, (4, 36), (4 + bar, 41), green_red, -1)
    for i, line in enumerate(caption):
        cv2.putText(band, line, (4, 14 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([img, band])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("drive")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument(
        "--model", default="perception/weights/context_synthetic_city.json", help="context model JSON"
    )
    ap.add_argument("--run", default=None, help="a recorded graph run: the trust the fusion used")
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--cache", default=None, help="feature cache of perception.context_data")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from perception.classes import CLASS_NAMES
    from perception.context_data import ContextExtractor
    from perception.drives import DriveReader
    from perception.drives.topics import DETECTIONS_TOPIC, POSE_TOPIC, SEGMENTATION_TOPIC
    from perception.models.detector.predictor import to_frame_pixels

    model = ContextModel.load(args.model)
    extractor = ContextExtractor()
    ctx = extractor.drive(args.drive, cache_dir=args.cache)
    recorded: dict[str, dict[int, object]] = {}
    if args.run:
        with DriveReader(args.run) as run:
            for topic in (POSE_TOPIC, SEGMENTATION_TOPIC, DETECTIONS_TOPIC):
                if topic in run.topics:
                    recorded[topic] = {m.header.stamp_ns: m for m in run.read(topic)}
    poses = recorded.get(POSE_TOPIC, {})
    trust = np.ones(len(ctx.stamps_ns))
    reasons = ["no context"] * len(ctx.stamps_ns)
    for k, s in enumerate(ctx.stamps_ns):
        if args.run:
            pose = poses.get(int(s))
            if pose is not None:
                trust[k], reasons[k] = pose.fix_trust, pose.fix_trust_reason or "no context model"
        else:
            t = model.assess(dict(zip(FEATURES, ctx.x[k], strict=True)))
            trust[k], reasons[k] = t.trust, t.reason
    # shown: fixes the fusion took (flagged ones it skips; with --run, those the run answered with a pose)
    shown_k = np.flatnonzero(ctx.valid & np.array([not args.run or int(s) in poses for s in ctx.stamps_ns]))
    if not len(shown_k):
        raise SystemExit(f"{args.drive}: no fix the fusion took{' in ' + args.run if args.run else ''}")
    chosen = shown_k[pick(trust[shown_k], args.tiles)]
    wanted = {int(ctx.stamps_ns[k]): k for k in chosen}
    tiles = {}
    t0 = int(ctx.stamps_ns[0])
    with DriveReader(args.drive) as reader:
        for image in reader.images(decode=True):
            k = wanted.get(image.header.stamp_ns)
            if k is None:
                continue
            bgr = image.to_bgr()
            seg = recorded.get(SEGMENTATION_TOPIC, {}).get(image.header.stamp_ns)
            det = recorded.get(DETECTIONS_TOPIC, {}).get(image.header.stamp_ns)
            mask = (
                seg.label_mask
                if seg is not None
                else extractor.segmenter.predict(
                    torch.from_numpy(extractor.segmenter.prepare_bgr(bgr)[None])
                ).numpy()[0]
            )
            if det is not None:
                boxes = [
                    (b, det.class_names[c]) for b, c in zip(det.boxes_xyxy_px, det.class_ids, strict=True)
                ]
            else:
                prep, scale = extractor.detector.prepare_bgr(bgr)
                d = extractor.detector.predict(
                    torch.from_numpy(prep[None]), score_threshold=extractor.score_threshold
                )
                b, _, lab = to_frame_pixels(
                    d.boxes[0], d.scores[0], d.labels[0], scale, bgr.shape[1], bgr.shape[0]
                )
                ids = np.asarray(extractor.detector.class_ids)[np.asarray(lab, int)]
                boxes = [(np.asarray(bb), CLASS_NAMES[int(c)]) for bb, c in zip(b, ids, strict=True)]
            caption = [
                f"t {(image.header.stamp_ns - t0) * 1e-9:.1f} s  PoseNet's fix {ctx.err_m[k]:.0f} m off",
                f"trust {trust[k]:.2f}: {reasons[k]}",
            ]
            tiles[k] = tile(bgr, mask, boxes, caption, float(trust[k]))
    rows = []
    ordered = [tiles[k] for k in sorted(tiles, key=lambda k: (trust[k], k))]
    blank = np.full_like(ordered[0], 255)
    for i in range(0, len(ordered), args.cols):
        row = ordered[i : i + args.cols]
        row += [blank] * (args.cols - len(row))
        rows.append(np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in row]))
    title = np.full((30, rows[0].shape[1], 3), 255, np.uint8)
    source = f"fusion poses of {Path(args.run).name}" if args.run else f"model {Path(args.model).name}"
    cv2.putText(
        title,
        f"{Path(args.drive).name}: trust of each PoseNet fix from its scene ({source}); least trusted first",
        (6, 20),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    cv2.imwrite(args.out, np.vstack([title, *rows]))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
