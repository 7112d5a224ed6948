"""What the importers share: their result, and resizing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class ImportResult:
    """What an importer wrote."""

    path: Path
    frames: int = 0
    gps_fixes: int = 0
    odometry: int = 0
    frames_without_gps: int = 0  # outside the track, or across a gap in it
    start_ns: int | None = None
    end_ns: int | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know (time source, guesses)

    @property
    def duration_s(self) -> float:
        if self.start_ns is None or self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / 1e9

    def summary(self) -> str:
        text = (
            f"wrote {self.path}: {self.frames} frames, {self.gps_fixes} GPS fixes"
            + (f", {self.odometry} odometry" if self.odometry else "")
            + f", {self.duration_s:.1f} s"
        )
        if self.frames_without_gps:
            text += f"; {self.frames_without_gps} frames have no GPS (outside the track or across a gap)"
        return text

    def stamp(self, stamp_ns: int) -> None:
        self.start_ns = stamp_ns if self.start_ns is None else min(self.start_ns, stamp_ns)
        self.end_ns = stamp_ns if self.end_ns is None else max(self.end_ns, stamp_ns)


def resize_to_width(image_bgr: np.ndarray, max_width_px: int | None) -> np.ndarray:
    """Shrink (never enlarge) to at most ``max_width_px`` wide, keeping the aspect ratio."""
    if max_width_px is None or image_bgr.shape[1] <= max_width_px:
        return image_bgr
    height, width = image_bgr.shape[:2]
    new_height = max(1, round(height * max_width_px / width))
    return cv2.resize(image_bgr, (max_width_px, new_height), interpolation=cv2.INTER_AREA)
