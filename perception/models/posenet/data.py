"""PoseNet's data: camera frames with their GPS pose (position in a local ENU frame, heading), through
the shared frame loader (`perception.datasets.load_frames`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from localization.geodesy import LocalFrame
from perception.datasets import DriveSpec, ProgressFn, drive_origin, load_frames, parse_drives
from perception.drives import DriveReader
from perception.drives.reader import Frame


class PoseTruth:
    """The `FrameTruth` of PoseNet: the GPS fix interpolated to each frame's time (lat, lon, heading)."""

    key = "pose-v2"  # v2: frames of another aspect centre-cropped, not stretched
    what = "a GPS pose"
    gps = "interpolate"
    crop_to_aspect = True  # the geometry rule of the predictor (`predictor.fit_to_input`)

    def open(self, reader: DriveReader, size_px: tuple[int, int]) -> Callable[[Frame], dict[str, Any] | str]:
        def read(frame: Frame) -> dict[str, Any] | str:
            if frame.gps is None:
                return "no_gps"
            heading = frame.gps.heading_deg
            return {"lat_deg": frame.gps.lat_deg, "lon_deg": frame.gps.lon_deg,
                    "heading_deg": math.nan if heading is None else heading}

        return read


@dataclass
class PoseFrames:
    """Frames with ground-truth poses in one local ENU frame.

    Attributes:
        images: uint8 [N, 3, H, W], RGB.
        east_m, north_m: float64 [N], camera position in ``frame`` (metres).
        heading_deg: float64 [N], clockwise from north; NaN where the drive does not say.
        stamp_ns: int64 [N] capture times.
        drive_index: int64 [N], index into ``drives``.
        drives: one record per drive read (path, source, frames, content hash).
        skipped: frames dropped (no GPS at their time, or corrupt), per reason.
    """

    images: torch.Tensor
    east_m: np.ndarray
    north_m: np.ndarray
    heading_deg: np.ndarray
    stamp_ns: np.ndarray
    drive_index: np.ndarray
    frame: LocalFrame
    drives: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray | Sequence[int]) -> PoseFrames:
        idx = np.asarray(index, dtype=np.int64)
        return PoseFrames(self.images[torch.from_numpy(idx)], self.east_m[idx], self.north_m[idx],
                          self.heading_deg[idx], self.stamp_ns[idx], self.drive_index[idx], self.frame,
                          self.drives, dict(self.skipped))


def load_pose_frames(
    drives: Sequence[DriveSpec | str | os.PathLike],
    *,
    size_px: tuple[int, int],
    frame: LocalFrame | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> PoseFrames:
    """Read the frames of ``drives`` with their GPS pose, resized to ``size_px`` = (width, height).

    ``frame`` is the local frame poses are expressed in (a checkpoint's); None takes the first drive's
    geo origin. Frames without GPS at their time (beyond the track, across a gap) are skipped and counted.
    """
    specs = parse_drives(drives)
    frame = frame or LocalFrame(drive_origin(specs[0]))
    got = load_frames(specs, size_px=size_px, truth=PoseTruth(), cache_dir=cache_dir, progress=progress)
    east, north, _ = frame.to_enu(got.truth["lat_deg"], got.truth["lon_deg"])
    return PoseFrames(images=got.images, east_m=np.atleast_1d(east).astype(np.float64),
                      north_m=np.atleast_1d(north).astype(np.float64),
                      heading_deg=got.truth["heading_deg"].astype(np.float64), stamp_ns=got.stamp_ns,
                      drive_index=got.drive_index, frame=frame, drives=got.drives, skipped=got.skipped)


class PoseDataset(torch.utils.data.Dataset):
    """Samples of `PoseFrames` for PoseNet: each a dict of

    - ``image``: uint8 [3, H, W] RGB (normalized and augmented on the device, per batch);
    - ``position``: float32 [2], (east, north) as ``(x - center_enu_m) / scale_m`` (targets near unit
      scale condition the regression; the checkpoint stores center and scale);
    - ``heading_rad``: float32 [], clockwise from north; ``heading_valid``: bool [] (False: unknown).
    """

    def __init__(self, frames: PoseFrames, *, center_enu_m: tuple[float, float], scale_m: float) -> None:
        self.frames = frames
        pos = np.stack([frames.east_m - center_enu_m[0], frames.north_m - center_enu_m[1]], axis=1) / scale_m
        self.position = torch.from_numpy(pos.astype(np.float32))
        valid = np.isfinite(frames.heading_deg)
        self.heading_rad = torch.from_numpy(np.radians(np.where(valid, frames.heading_deg, 0.0)).astype(np.float32))
        self.heading_valid = torch.from_numpy(valid)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.frames.images[i], "position": self.position[i],
                "heading_rad": self.heading_rad[i], "heading_valid": self.heading_valid[i]}
