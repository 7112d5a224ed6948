"""Training targets and losses of the detector.

Assignment (FCOS's scale ranges and centre sampling, with YOLOX's centre prior for tiny objects): an
object is learnt at the one level whose range holds its longer side (`LEVEL_RANGES_PX`); there, a grid
point is positive for it when it lies inside the box within ``CENTRE_RADIUS`` strides of its centre, or
within one stride of the centre in both axes (so a 4-px sign between grid points still gets the points
around it). A point claimed by several objects takes the smallest. Boxes under ``MIN_BOX_PX`` on a side
teach nothing and are dropped.

Losses, each summed over positives and divided by their number (all images of the batch together):
- classification: `torchvision.ops.sigmoid_focal_loss` over every point and class (one-hot targets);
- box: `torchvision.ops.complete_box_iou_loss` (CIoU: overlap, centre distance, aspect);
- quality: binary cross-entropy of the quality logit against the IoU the predicted box reaches (detached),
  so that at inference the score says how well the box fits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_area, box_iou, complete_box_iou_loss, sigmoid_focal_loss

from perception.models.detector.network import (
    BOX,
    CLS_START,
    QUALITY,
    STRIDES,
    decode_boxes,
    flatten_outputs,
    grid_points,
)

LEVEL_RANGES_PX: tuple[tuple[float, float], ...] = ((0.0, 64.0), (64.0, 128.0), (128.0, float("inf")))
CENTRE_RADIUS = 1.5  # strides
MIN_BOX_PX = 1.5
BOX_WEIGHT = 2.0


def assign(xy: torch.Tensor, stride: torch.Tensor, level: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Which object each point learns: long [P], index into ``boxes`` [M, 4] (xyxy input px), -1 for
    background. ``xy`` [P, 2] grid coordinates, ``stride`` [P], ``level`` [P] level index of each point."""
    p = xy.shape[0]
    if boxes.numel() == 0:
        return torch.full((p,), -1, dtype=torch.long, device=xy.device)
    centre_px = (xy + 0.5) * stride[:, None]  # [P, 2]
    gc = (boxes[:, :2] + boxes[:, 2:]) / 2  # [M, 2]
    wh = boxes[:, 2:] - boxes[:, :2]
    longer = wh.max(1).values
    lo = torch.tensor([r[0] for r in LEVEL_RANGES_PX], device=xy.device)
    hi = torch.tensor([r[1] for r in LEVEL_RANGES_PX], device=xy.device)
    gt_level = ((longer[:, None] >= lo) & (longer[:, None] < hi)).float().argmax(1)  # [M]
    on_level = level[:, None] == gt_level[None, :]  # [P, M]
    d = (centre_px[:, None, :] - gc[None]).abs() / stride[:, None, None]  # [P, M, 2] in strides
    inside = ((centre_px[:, None, :] > boxes[None, :, :2]) & (centre_px[:, None, :] < boxes[None, :, 2:])).all(-1)
    near_centre = (d < 1.0).all(-1)
    candidate = on_level & ((inside & (d < CENTRE_RADIUS).all(-1)) | near_centre)
    area = box_area(boxes)[None].expand(p, -1)
    area = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(1)
    return torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))


def detection_loss(outputs: list[torch.Tensor], boxes: list[torch.Tensor], labels: list[torch.Tensor], *,
                   strides: tuple[int, ...] = STRIDES) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of a batch: raw outputs (the model's), and per image boxes float [n_i, 4] xyxy input px and
    labels long [n_i] detector class index. Returns (scalar loss, figures for the progress bar)."""
    flat = flatten_outputs(outputs)  # [B, P, 5 + C]
    xy, stride = grid_points(outputs, strides)
    level = torch.cat([torch.full((o.shape[-2] * o.shape[-1],), i, device=flat.device)
                       for i, o in enumerate(outputs)])
    cls_target = torch.zeros_like(flat[..., CLS_START:])
    pos_b, pos_p, pos_box = [], [], []
    for b, (bx, lb) in enumerate(zip(boxes, labels, strict=True)):
        bx = bx.float()
        wh = bx[:, 2:] - bx[:, :2]
        ok = (wh >= MIN_BOX_PX).all(1)
        bx, lb = bx[ok], lb[ok]
        who = assign(xy, stride, level, bx)
        pts = torch.nonzero(who >= 0).squeeze(1)
        cls_target[b, pts, lb[who[pts]]] = 1.0
        pos_b.append(torch.full_like(pts, b))
        pos_p.append(pts)
        pos_box.append(bx[who[pts]])
    pb, pp, gt = torch.cat(pos_b), torch.cat(pos_p), torch.cat(pos_box)
    num_pos = max(1.0, float(pp.numel()))
    cls_loss = sigmoid_focal_loss(flat[..., CLS_START:], cls_target, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
    if pp.numel():
        pred = decode_boxes(flat[pb, pp][:, BOX], xy[pp], stride[pp])
        box_loss = complete_box_iou_loss(pred, gt, reduction="sum") / num_pos
        iou = box_iou(pred.detach(), gt).diagonal().clamp(0, 1)
        quality_loss = F.binary_cross_entropy_with_logits(flat[pb, pp][:, QUALITY], iou, reduction="sum") / num_pos
        mean_iou = float(iou.mean())
    else:
        box_loss = quality_loss = flat[..., BOX].sum() * 0.0
        mean_iou = 0.0
    loss = cls_loss + BOX_WEIGHT * box_loss + quality_loss
    return loss, {"cls": float(cls_loss.detach()), "box": float(box_loss.detach()),
                  "iou": mean_iou, "pos": num_pos / max(1, len(boxes))}
