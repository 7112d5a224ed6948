"""Frames of drives for every model: camera images with their truth, decoded once and kept in memory.

Frames are decoded, resized to the model's input size and stored as uint8 RGB [N, 3, H, W] (3000
frames at 160x120 are 170 MB), so an epoch costs no JPEG decoding; normalization and augmentation run
on whole batches on the training device (`perception.training`). A decoded set can be cached on disk
(``cache_dir``), keyed by the drive's content, the frame selection and the truth read, so a second run
starts at once.

What a model reads besides the image is its `FrameTruth` (PoseNet: the GPS pose, in
`perception.models.posenet.data`; a segmenter: the label mask). `load_frames` does the rest once for all:
drive specs, decoding, resizing, skipping and counting frames without truth, caching.

A drive is named by a *drive spec*: a path, optionally with a frame selection as a Python slice after
``@`` — ``lund.mcap@0::2`` takes every other frame from the first, ``lund.mcap@1::2`` the others.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from localization.geodesy import GeoOrigin
from perception.drives import DriveReader
from perception.drives.reader import Frame
from perception.transforms import crop_to_aspect, pad_to_aspect, resize_to_input

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
        start, stop = ("" if v is None else str(v) for v in (s.start, s.stop))
        # "18:" must keep its colon: "drive@18" would name a file, not frames 18 onwards
        return f"{self.path}@{start}:{stop}" + ("" if s.step is None else f":{s.step}")


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


class FrameTruth(Protocol):
    """What a model reads from a drive besides each frame's image: its truth, frame by frame."""

    key: str  # names the truth (and its version) in the cache key: change it when the output changes
    what: str  # for messages: "a GPS pose", "a label mask"
    gps: str  # how frames get their GPS fix: "interpolate", "nearest" or "none" (see DriveReader.frames)

    def open(self, reader: DriveReader, size_px: tuple[int, int]) -> Callable[[Frame], dict[str, Any] | str]:
        """The per-frame reader for one drive: a dict of named values for a usable frame, or the reason (a
        short key such as ``"no_gps"``) to skip it. A value is a number or an array; arrays whose shape
        varies from frame to frame (a detector's boxes [n_i, 4]) are kept as a list, one per frame."""
        ...


@dataclass
class DriveFrames:
    """Frames of one or more drives, with their truth.

    Attributes:
        images: uint8 [N, 3, H, W], RGB.
        truth: name -> array [N, ...] (what the `FrameTruth` read), or a list of N arrays where their
            shapes differ from frame to frame (ragged: boxes).
        stamp_ns: int64 [N] capture times.
        drive_index: int64 [N], index into ``drives``.
        drives: one record per drive read (path, source, frames, content hash).
        skipped: frames dropped (no truth at their time, or corrupt), per reason.
    """

    images: torch.Tensor
    truth: dict[str, np.ndarray]
    stamp_ns: np.ndarray
    drive_index: np.ndarray
    drives: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray | Sequence[int]) -> DriveFrames:
        idx = np.asarray(index, dtype=np.int64)
        truth = {k: [v[i] for i in idx] if isinstance(v, list) else v[idx] for k, v in self.truth.items()}
        return DriveFrames(self.images[torch.from_numpy(idx)], truth,
                           self.stamp_ns[idx], self.drive_index[idx], self.drives, dict(self.skipped))


def parse_drives(drives: Sequence[DriveSpec | str | os.PathLike]) -> list[DriveSpec]:
    """Drive specs from paths or ``PATH@START:STOP:STEP`` texts; FileNotFoundError naming a missing file."""
    specs = [d if isinstance(d, DriveSpec) else DriveSpec.parse(d) for d in drives]
    if not specs:
        raise ValueError("no drives given")
    for spec in specs:
        if not spec.path.is_file():
            raise FileNotFoundError(f"drive {spec.path}: no such file")
    return specs


def load_frames(
    drives: Sequence[DriveSpec | str | os.PathLike],
    *,
    size_px: tuple[int, int],
    truth: FrameTruth,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> DriveFrames:
    """Read the frames of ``drives`` that have ``truth``, resized to ``size_px`` = (width, height).

    Frames without truth at their time are skipped and counted per reason; ValueError when no frame of
    any drive has it.
    """
    specs = parse_drives(drives)
    parts: list[dict] = []
    records: list[dict] = []
    skipped: dict[str, int] = {}
    for k, spec in enumerate(specs):
        part = _load_one(spec, size_px, truth, cache_dir, progress)
        part["drive_index"] = np.full(len(part["stamp_ns"]), k, dtype=np.int64)
        parts.append(part)
        records.append({"path": str(spec), "source": part["source"], "frames": int(len(part["stamp_ns"])),
                        "sha256": part["digest"][:16]})
        for reason, count in part["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
    if sum(len(p["stamp_ns"]) for p in parts) == 0:
        raise ValueError(f"drives {', '.join(map(str, specs))}: no camera frame with {truth.what}")
    names = next(p["truth"].keys() for p in parts if len(p["stamp_ns"]))
    return DriveFrames(
        images=torch.from_numpy(np.concatenate([p["images"] for p in parts])),
        truth={n: _concat([p["truth"][n] for p in parts if len(p["stamp_ns"])]) for n in names},
        stamp_ns=np.concatenate([p["stamp_ns"] for p in parts]).astype(np.int64),
        drive_index=np.concatenate([p["drive_index"] for p in parts]),
        drives=records, skipped=skipped,
    )


_CACHE_VERSION = "v2"


def _concat(parts: list[np.ndarray | list[np.ndarray]]) -> np.ndarray | list[np.ndarray]:
    if any(isinstance(p, list) for p in parts):
        return [a for p in parts for a in p]
    return np.concatenate(parts)


def _stack(values: list[Any]) -> np.ndarray | list[np.ndarray]:
    """Frame values -> array [N, ...], or a list of arrays where their shapes differ (ragged)."""
    arrays = [np.asarray(v) for v in values]
    if len({a.shape for a in arrays}) <= 1:
        return np.stack(arrays) if arrays else np.zeros(0)
    return arrays


def _to_npz(name: str, value: np.ndarray | list[np.ndarray]) -> dict[str, np.ndarray]:
    """A truth value as plain npz arrays: ragged lists as their concatenation and the lengths."""
    if not isinstance(value, list):
        return {f"truth_{name}": value}
    return {f"ragged_{name}": np.concatenate(value) if value else np.zeros(0),
            f"lengths_{name}": np.asarray([len(a) for a in value], np.int64)}


def _from_npz(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray | list[np.ndarray]]:
    out: dict[str, np.ndarray | list[np.ndarray]] = {}
    for key, value in arrays.items():
        if key.startswith("truth_"):
            out[key.removeprefix("truth_")] = value
        elif key.startswith("ragged_"):
            name = key.removeprefix("ragged_")
            ends = np.cumsum(arrays[f"lengths_{name}"])
            out[name] = [value[a:b] for a, b in zip(np.r_[0, ends[:-1]], ends, strict=True)]
    return out


def _load_one(spec: DriveSpec, size_px: tuple[int, int], truth: FrameTruth, cache_dir,
              progress: ProgressFn | None) -> dict:
    digest = file_digest(spec.path)
    cache_file = None
    if cache_dir is not None:
        s = spec.frames
        key = hashlib.sha256(f"{digest}|{size_px}|{s.start}:{s.stop}:{s.step}|{truth.key}|{_CACHE_VERSION}"
                             .encode()).hexdigest()[:24]
        cache_file = Path(cache_dir) / f"frames-{key}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            info = json.loads(str(arrays.pop("info_json")))
            return {"images": arrays.pop("images"), "stamp_ns": arrays.pop("stamp_ns"), "truth": _from_npz(arrays),
                    "source": info["source"], "skipped": info["skipped"], "digest": digest}
    with DriveReader(spec.path) as reader:
        source = reader.metadata.source
        chosen = list(reader.image_stamps())[spec.frames]
        wanted = set(chosen)
        read_truth = truth.open(reader, size_px)
        images, stamps, values = [], [], []
        skipped: dict[str, int] = {}
        # decode only the chosen frames: an every-other split decodes half the drive
        for frame in reader.frames(gps=truth.gps):
            if frame.stamp_ns not in wanted:
                continue
            got = read_truth(frame)
            if isinstance(got, str):
                skipped[got] = skipped.get(got, 0) + 1
                continue
            try:
                bgr = frame.image.to_bgr()
                if getattr(truth, "crop_to_aspect", False):  # a model that never stretches (PoseNet)
                    bgr = crop_to_aspect(bgr, size_px[0] / size_px[1])
                elif getattr(truth, "pad_to_aspect", False):  # one that keeps the whole view (the detector)
                    bgr = pad_to_aspect(bgr, size_px[0] / size_px[1])
                rgb = resize_to_input(bgr, size_px)
            except ValueError:
                reader.errors.note("corrupt_frames", f"frame at stamp_ns={frame.stamp_ns} does not decode")
                continue
            images.append(rgb)
            stamps.append(frame.stamp_ns)
            values.append(got)
            if progress is not None:
                progress(len(images), len(chosen))
        skipped["corrupt"] = skipped.get("corrupt", 0) + reader.errors.corrupt_frames
    w, h = size_px
    out = {
        "images": np.stack(images) if images else np.zeros((0, 3, h, w), np.uint8),
        "stamp_ns": np.asarray(stamps, np.int64),
        "truth": {k: _stack([v[k] for v in values]) for k in (values[0] if values else {})},
    }
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # one temporary file per process: torchrun's processes decode the same drives at once
        tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npz")
        info = json.dumps({"source": source, "skipped": skipped})
        arrays = {k: a for name, v in out["truth"].items() for k, a in _to_npz(name, v).items()}
        np.savez(tmp, images=out["images"], stamp_ns=out["stamp_ns"], info_json=np.asarray(info), **arrays)
        os.replace(tmp, cache_file)
    return {**out, "source": source, "digest": digest, "skipped": skipped}


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
