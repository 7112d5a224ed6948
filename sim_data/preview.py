"""Contact sheets: frames of a drive with their label masks and boxes overlaid, for people to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from perception import classes as C

from .drive import SimFrame


def annotate(frame: SimFrame, *, mask_alpha: float = 0.0) -> np.ndarray:
    """The frame's image (optionally blended with its colourised label mask) with its boxes and class
    names drawn on, uint8 [H, W, 3] BGR."""
    img = frame.image_bgr.copy()
    if mask_alpha > 0:
        img = cv2.addWeighted(img, 1.0 - mask_alpha, C.colorize(frame.label_mask), mask_alpha, 0.0)
    for (x1, y1, x2, y2), cid in zip(frame.boxes_xyxy.tolist(), frame.box_class_ids.tolist(), strict=True):
        color = tuple(int(v) for v in C.PALETTE_BGR[cid])
        color = tuple(min(255, v + 90) for v in color)  # brighter than the mask colour, to stand out
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), color, 1)
    return img


def _label(img: np.ndarray, text: str) -> None:
    scale = max(0.3, img.shape[1] / 900.0)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (tw + 6, th + 6), (0, 0, 0), -1)
    cv2.putText(img, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _legend(width: int) -> np.ndarray:
    h = 22
    bar = np.full((h, width, 3), 30, np.uint8)
    x = 4
    for k, name in enumerate(C.CLASS_NAMES):
        color = tuple(int(v) for v in C.PALETTE_BGR[k])
        (tw, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        if x + 16 + tw > width:
            break
        cv2.rectangle(bar, (x, 5), (x + 12, 17), color, -1)
        cv2.putText(bar, name, (x + 15, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
        x += 24 + tw
    return bar


def contact_sheet(frames: Sequence[SimFrame], *, columns: int = 2, tile_width_px: int = 320) -> np.ndarray:
    """A grid of frames, each shown twice side by side: the image with its boxes, and the same blended
    with its label mask. ``columns`` frames per row. Returns uint8 BGR."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    tiles = []
    for f in frames:
        h, w = f.image_bgr.shape[:2]
        th = int(round(h * tile_width_px / w))
        left = cv2.resize(annotate(f), (tile_width_px, th), interpolation=cv2.INTER_NEAREST)
        right = cv2.resize(annotate(f, mask_alpha=0.55), (tile_width_px, th), interpolation=cv2.INTER_NEAREST)
        text = f"#{f.index} t={f.t_s:.1f}s hdg={f.heading_deg:.0f} {len(f.boxes_xyxy)} boxes"
        if f.events:
            text += " " + ",".join(f.events)
        _label(left, text)
        tiles.append(np.hstack([left, np.full((th, 2, 3), 255, np.uint8), right]))
    tile_h, tile_w = tiles[0].shape[:2]
    rows = []
    for r in range(0, len(tiles), columns):
        row = tiles[r:r + columns]
        row += [np.zeros_like(tiles[0])] * (columns - len(row))
        sep = np.full((tile_h, 6, 3), 255, np.uint8)
        rows.append(np.hstack([x for t in row for x in (t, sep)][:-1]))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    sheet = np.vstack(rows[:-1])
    return np.vstack([sheet, _legend(sheet.shape[1])])


class PreviewSampler:
    """Keeps an evenly spread sample of a stream of frames of unknown length (at most ``2 * count`` in
    memory): every ``stride``-th frame, the stride doubling whenever too many are kept."""

    def __init__(self, count: int = 8) -> None:
        if count < 1:
            raise ValueError("a preview needs at least one frame")
        self.count = count
        self.stride = 1
        self.kept: list[SimFrame] = []

    def __call__(self, frame: SimFrame) -> None:
        if frame.index % self.stride:
            return
        self.kept.append(frame)
        if len(self.kept) > 2 * self.count:
            self.stride *= 2
            self.kept = [f for f in self.kept if f.index % self.stride == 0]

    def frames(self) -> list[SimFrame]:
        if len(self.kept) <= self.count:
            return list(self.kept)
        idx = np.linspace(0, len(self.kept) - 1, self.count).round().astype(int)
        return [self.kept[i] for i in idx]


def write_preview(path: str | Path, frames: Sequence[SimFrame], **kwargs) -> None:
    """Write ``contact_sheet(frames)`` as an image (PNG or JPEG by extension)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"preview {path}: use a .png or .jpg file name")
    if not cv2.imwrite(str(path), contact_sheet(frames, **kwargs)):
        raise OSError(f"could not write the preview {path}")
