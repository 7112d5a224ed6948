"""The detector's sign boxes against the truth boxes: centre and height errors by box height (the box noise
of docs/landmarks.md, "The measurement"). Every 3rd frame of synthetic drives with truth/boxes.

    nice -n 10 python benchmarks/landmarks_box_noise.py /work/fusion_data/val/val_s601_day.mcap /work/fusion_data/val/val_s603_night.mcap
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import torch

    from perception.classes import SIGN
    from perception.drives import DriveReader
    from perception.models.detector.predictor import DetectorPredictor, to_frame_pixels

    torch.set_num_threads(1)
    pred = DetectorPredictor(None, device="cpu")
    sign_label = list(pred.class_ids).index(SIGN)
    rows, n_det, n_truth = [], 0, 0
    for path in sys.argv[1:]:
        r = DriveReader(path)
        truth = {d.header.stamp_ns: d for d in r.boxes()}
        for k, img in enumerate(r.images()):
            if k % 3:
                continue
            bgr = img.to_bgr()
            prep, scale = pred.prepare_bgr(bgr)
            det = pred.predict(torch.from_numpy(prep[None]), score_threshold=0.5)
            boxes, _, labels = to_frame_pixels(det.boxes[0], det.scores[0], det.labels[0], scale, bgr.shape[1], bgr.shape[0])
            boxes = np.asarray(boxes).reshape(-1, 4)[np.asarray(labels) == sign_label]
            t = truth[img.header.stamp_ns]
            tb = t.boxes_xyxy_px[t.class_ids == SIGN]
            tb = tb[(tb[:, 3] - tb[:, 1]) >= 3]
            n_det, n_truth = n_det + len(boxes), n_truth + len(tb)
            for b in boxes:
                if not len(tb):
                    continue
                x1, y1 = np.maximum(b[0], tb[:, 0]), np.maximum(b[1], tb[:, 1])
                x2, y2 = np.minimum(b[2], tb[:, 2]), np.minimum(b[3], tb[:, 3])
                inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
                iou = inter / ((b[2] - b[0]) * (b[3] - b[1]) + (tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1]) - inter)
                j = int(np.argmax(iou))
                if iou[j] >= 0.3:
                    g = tb[j]
                    rows.append(((b[0] + b[2]) / 2 - (g[0] + g[2]) / 2, (b[1] + b[3]) / 2 - (g[1] + g[3]) / 2,
                                 (b[3] - b[1]) - (g[3] - g[1]), g[3] - g[1]))
    a = np.array(rows).reshape(-1, 4)
    print(f"detected sign boxes {n_det}, truth boxes >= 3 px tall {n_truth}, matched (IoU >= 0.3) {len(a)}")
    print("| box height | n | centre u std | centre v std | height std | height std / height |")
    print("|---|---|---|---|---|---|")
    for lo, hi in ((3, 6), (6, 10), (10, 20), (20, 999)):
        m = (a[:, 3] >= lo) & (a[:, 3] < hi)
        if m.sum() >= 3:
            s = a[m]
            print(f"| {lo}-{hi} px | {m.sum()} | {s[:, 0].std():.2f} px | {s[:, 1].std():.2f} px | {s[:, 2].std():.2f} px "
                  f"| {100 * np.std(s[:, 2] / s[:, 3]):.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
