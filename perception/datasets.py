"""Torch datasets over drives: camera frames with their GPS pose, decoded once and kept in memory.

Frames are decoded, resized to the model's input size and stored as uint8 RGB [N, 3, H, W] (3000
frames at 160x120 are 170 MB), so an epoch costs no JPEG decoding; normalization and augmentation run
on whole batches on the training device (`perception.training`). A decoded set can be cached on disk
(``cache_dir``), keyed by the drive's content and the frame selection, so a second run starts at once.

A drive is named by a *drive spec*: a path, optionally with a frame selection as a Python slice after
``@`` — ``lund.mcap@0::2`` takes every other frame from the first, ``lund.mcap@1::2`` the others.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from perception.drives import DriveReader

ProgressFn = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class DriveSpec:
    """A drive file and which of its camera frames to use (``frames`` is a slice over frame order)."""

    path: Path
    frames: slice = field(default_factory=lambda: slice(None))

    @classmethod
    def parse(cls, text: str | os.PathLike) -> DriveSpec:
        """``"drive.mcap"`` or ``"drive.mcap@START:STOP:STEP"``; ValueError naming the spec when malformed."""
        text = str(text)
        path, sep, selection = text.rpartition("@")
        if not sep or ":" not in selection:
            return cls(Path(text))
        parts = selection.split(":")
        if len(parts) > 3:
            raise ValueError(f"drive {text!r}: frame selection {selection!r} is not START:STOP[:STEP]")
        try:
            values = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise ValueError(f"drive {text!r}: frame selection {selection!r} is not START:STOP[:STEP] "
                             "of integers") from None
        if len(values) == 3 and values[2] is not None and values[2] <= 0:
            raise ValueError(f"drive {text!r}: frame step must be positive")
        return cls(Path(path), slice(*values))

    def __str__(self) -> str:
        s = self.frames
        if s == slice(None):
            return str(self.path)
        fmt = [("" if v is None else str(v)) for v in (s.start, s.stop, s.step)]
        return f"{self.path}@{':'.join(fmt).rstrip(':')}"


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


def file_digest(path: Path, *, head_bytes: int = 1 << 20) -> str:
    """A cheap content key: sha256 of the size, the first and the last MiB (drives are hundreds of MB)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(head_bytes))
        fh.seek(max(0, size - head_bytes))
        h.update(fh.read(head_bytes))
    return h.hexdigest()


def drive_origin(spec: DriveSpec | str) -> GeoOrigin:
    """The geo origin a drive declares, else the mean of its GPS fixes (imported photo walks)."""
    spec = spec if isinstance(spec, DriveSpec) else DriveSpec.parse(spec)
    with DriveReader(spec.path) as reader:
        if reader.metadata.geo_origin is not None:
            return reader.metadata.geo_origin
        track = reader.track()
        if not len(track):
            raise ValueError(f"drive {spec.path}: no geo origin in its metadata and no GPS fixes")
        return GeoOrigin(float(np.mean(track.lat_deg)), float(np.mean(track.lon_deg)), 0.0)


def resize_to_input(image_bgr: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """uint8 BGR [H0, W0, 3] (or mono [H0, W0]) -> uint8 RGB [3, H, W] at ``size_px`` = (width, height).

    Any aspect ratio is stretched to the input size: the model sees what it was trained on only if the
    camera is the same, and stretching keeps the whole field of view (cropping would cut landmarks).
    """
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] BGR; got {image_bgr.dtype} {image_bgr.shape}")
    w, h = size_px
    if image_bgr.shape[1] != w or image_bgr.shape[0] != h:
        # INTER_AREA averages the pixels a shrink drops, so small inputs keep no aliasing (fine facades)
        interp = cv2.INTER_AREA if image_bgr.shape[1] > w else cv2.INTER_LINEAR
        image_bgr = cv2.resize(image_bgr, (w, h), interpolation=interp)
    return np.ascontiguousarray(image_bgr[:, :, ::-1].transpose(2, 0, 1))


def load_pose_frames(
    drives: Sequence[DriveSpec | str],
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
    specs = [d if isinstance(d, DriveSpec) else DriveSpec.parse(d) for d in drives]
    if not specs:
        raise ValueError("no drives given")
    for spec in specs:
        if not spec.path.is_file():
            raise FileNotFoundError(f"drive {spec.path}: no such file")
    frame = frame or LocalFrame(drive_origin(specs[0]))
    parts: list[dict] = []
    records: list[dict] = []
    skipped: dict[str, int] = {}
    for k, spec in enumerate(specs):
        part = _load_one(spec, size_px, cache_dir, progress)
        e, n, _ = frame.to_enu(part["lat_deg"], part["lon_deg"])
        part["east_m"], part["north_m"] = np.atleast_1d(e), np.atleast_1d(n)
        part["drive_index"] = np.full(len(part["stamp_ns"]), k, dtype=np.int64)
        parts.append(part)
        records.append({"path": str(spec), "source": part["source"], "frames": int(len(part["stamp_ns"])),
                        "sha256": part["digest"][:16]})
        for reason, count in part["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
    total = sum(len(p["stamp_ns"]) for p in parts)
    if total == 0:
        raise ValueError(f"drives {', '.join(map(str, specs))}: no camera frame with a GPS pose")
    return PoseFrames(
        images=torch.from_numpy(np.concatenate([p["images"] for p in parts])),
        east_m=np.concatenate([p["east_m"] for p in parts]).astype(np.float64),
        north_m=np.concatenate([p["north_m"] for p in parts]).astype(np.float64),
        heading_deg=np.concatenate([p["heading_deg"] for p in parts]).astype(np.float64),
        stamp_ns=np.concatenate([p["stamp_ns"] for p in parts]).astype(np.int64),
        drive_index=np.concatenate([p["drive_index"] for p in parts]),
        frame=frame, drives=records, skipped=skipped,
    )


def _load_one(spec: DriveSpec, size_px: tuple[int, int], cache_dir, progress: ProgressFn | None) -> dict:
    digest = file_digest(spec.path)
    cache_file = None
    if cache_dir is not None:
        s = spec.frames
        key = hashlib.sha256(f"{digest}|{size_px}|{s.start}:{s.stop}:{s.step}|v1".encode()).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"frames-{key}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
            out["source"] = str(out.pop("source_str"))
            out["digest"] = digest
            out["skipped"] = {"no_gps": int(out.pop("skipped_no_gps")), "corrupt": int(out.pop("skipped_corrupt"))}
            return out
    with DriveReader(spec.path) as reader:
        source = reader.metadata.source
        stamps = list(reader.image_stamps())
        chosen = stamps[spec.frames]
        wanted = set(chosen)
        images, lat, lon, heading, stamp = [], [], [], [], []
        no_gps = 0
        # decode only the chosen frames: an every-other split decodes half the drive
        for frame in reader.frames(gps="interpolate"):
            if frame.stamp_ns not in wanted:
                continue
            if frame.gps is None:
                no_gps += 1
                continue
            try:
                rgb = resize_to_input(frame.image.to_bgr(), size_px)
            except ValueError:
                reader.errors.note("corrupt_frames", f"frame at stamp_ns={frame.stamp_ns} does not decode")
                continue
            images.append(rgb)
            lat.append(frame.gps.lat_deg)
            lon.append(frame.gps.lon_deg)
            heading.append(math.nan if frame.gps.heading_deg is None else frame.gps.heading_deg)
            stamp.append(frame.stamp_ns)
            if progress is not None:
                progress(len(images), len(chosen))
        corrupt = reader.errors.corrupt_frames
    w, h = size_px
    out = {
        "images": np.stack(images) if images else np.zeros((0, 3, h, w), np.uint8),
        "lat_deg": np.asarray(lat, np.float64), "lon_deg": np.asarray(lon, np.float64),
        "heading_deg": np.asarray(heading, np.float64), "stamp_ns": np.asarray(stamp, np.int64),
    }
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.stem + ".tmp.npz")
        np.savez(tmp, **out, source_str=np.asarray(source), skipped_no_gps=no_gps, skipped_corrupt=corrupt)
        os.replace(tmp, cache_file)
    out["source"] = source
    out["digest"] = digest
    out["skipped"] = {"no_gps": no_gps, "corrupt": corrupt}
    return out


def block_split(n: int, *, val_fraction: float, block: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, val) indices by contiguous blocks of ``block`` frames.

    Neighbouring frames of a drive are nearly the same picture; holding out single frames would score
    interpolation, not localization. Whole blocks (4 s at 10 Hz) held out give an honest(er) figure.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} is outside [0, 1)")
    starts = np.arange(0, n, block)
    n_val = int(round(len(starts) * val_fraction))
    if val_fraction > 0 and n_val == 0 and len(starts) > 1:
        n_val = 1
    rng = np.random.default_rng(seed)
    val_blocks = set(rng.choice(len(starts), size=n_val, replace=False).tolist()) if n_val else set()
    is_val = np.zeros(n, bool)
    for b in val_blocks:
        is_val[starts[b]: starts[b] + block] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


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
