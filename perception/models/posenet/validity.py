"""When a PoseNet fix should not be trusted: cheap image checks and an out-of-area score.

A fix is flagged (``GeoFix.valid = False``, ``GeoFix.reason`` = comma-separated words) for

- ``black_frame``: the 99th percentile of luma (BT.601, 0-255) is at most ``black_p99_luma`` = 16: a
  covered or dead camera (a few stray bright pixels do not make it usable). Measured: frames of a 22 h
  night drive of the city have p99 >= 124 (lit windows, street lamps), day frames >= 170.
- ``overexposed``: at least ``overexposed_fraction`` = 60 % of the pixels have luma >= 250: sun in the
  lens, a blown-out sensor. Measured: day and dusk drives and the Lund photos clip at most 4 %.
- ``frozen``: the frame (as the model sees it) has been identical to the previous ones of the same stream
  (state per node / per drive) for more than ``frozen_after_s`` = 20 s: a stuck driver re-sending its
  last buffer. Shorter runs pass: a real sensor's noise never repeats a frame exactly, but the
  *noise-free* simulator does while the vehicle waits at a light (up to ~15 s; flagging every repeat
  flagged 1-16 % of held-out sim frames, BENCHMARKS.md), and a repeated frame at a standstill gives the
  right fix. A camera stuck for less than 20 s while the vehicle moves gives repeated fixes that the
  fusion filter gates against odometry. Not checked on black frames (``black_frame`` already says it).
- ``bad_aspect``: the frame's width/height differs from the trained aspect by more than
  ``max_aspect_factor`` = 2x either way (a 1200x200 strip, not 16:9 video, which differs by 1.33x):
  a centre crop to the trained aspect (the input-geometry rule) would keep under half of the view.
- ``out_of_area``: the out-of-area score (below) exceeds the threshold fitted on training-area frames.
  Not checked on black or over-exposed frames (their cause is named instead; they stay out of the window).

All checks run on the uint8 RGB frame at the model's input size (128x96): ~5 ms a frame on one CPU
thread, beside ~35 ms of the network.

**Out-of-area test** (chosen by measurement: BENCHMARKS.md "PoseNet out-of-area: a sequential test"). A
checkpoint with a place index (the default) asks the index: does this *stream* keep matching the training
area's views? Per frame the evidence is ``1 - similarity`` of the most similar indexed view plus
``jump_weight`` when the place fix jumped more than ``jump_m`` since the previous frame; Page's CUSUM
accumulates the evidence above ``reference`` (the 95th percentile of the calibration frames' own evidence)
per 0.2 s of stream time and flags ``out_of_area`` while the sum exceeds the threshold fitted on calibration drives of the training area (their 97th
percentile; `PlaceEvidence`, `fit_place_validity`). Why a sequence: an unseen city built from the same
facades matches the index almost as well frame by frame (one city's frames scored like a dusk drive in
heavy traffic of the training area); only their persistence tells it apart. Measured on held-out drives
(the default): 99.0 % of the frames of 15 unseen cities (every one but city 11's 86 %) and all Lund photos
flagged, 0.2 % of in-area frames; a vehicle that leaves the area is flagged 2-6 s later and recognised
2-3 s after it comes back.

A checkpoint without a place index keeps the earlier test: a gradient thumbnail of the frame
(`appearance_descriptor`, 24x32 cells) against a bank of training-area frames (PCA to 128 dimensions),
the cosine distance to the nearest averaged over ``window_frames`` (10) frames, flagged above
``threshold``. Measured and rejected: the anchor softmax (max probability, entropy; AUROC ~0.77 against
unseen city seeds), the energy of the logits (0.71), and k-NN / Mahalanobis distances on the network's
own features (AUROC 0.45-0.66): the network maps another city's streets onto its own with the same
confidence, while the pixels' layout differs.

`fit_place_validity` (or `fit_validity`) picks the threshold (``python -m perception.models.posenet.validity``
writes it into a checkpoint); it lives in the checkpoint's ``meta["validity"]``: ``method``
(``place_cusum`` or ``knn_gradient_thumbnail``), ``threshold``, the test's parameters (`PlaceTestConfig`;
or ``window_frames`` and the bank: ``mean``/``projection``/``bank``), the drives it was fitted on, and the
``training_area`` (centre lat/lon, radius in metres) that ``evaluate`` compares drives with. A checkpoint
without it gets the image checks only (never ``out_of_area``).
"""

from __future__ import annotations

import argparse
import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from perception.models.posenet.places import PlaceRecognizer
    from perception.models.posenet.predictor import PoseEstimates, PosePredictor

REASONS = ("black_frame", "overexposed", "frozen", "bad_aspect", "out_of_area")
VALIDITY_VERSION = 1
METHOD = "knn_gradient_thumbnail"  # checkpoints without a place index
PLACE_METHOD = "place_cusum"  # checkpoints with one (the default)
# luma weights of ITU-R BT.601 (what "brightness" means for the checks), RGB order
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageCheckConfig:
    """Thresholds of the image checks (module docstring: why these values)."""

    black_p99_luma: float = 16.0  # 0-255; <= this at the 99th percentile: black
    overexposed_luma: float = 250.0  # 0-255; a pixel at or above it is clipped
    overexposed_fraction: float = 0.6  # share of clipped pixels that makes a frame over-exposed
    max_aspect_factor: float = 2.0  # frame aspect / trained aspect (or its inverse) above this: bad_aspect
    frozen_after_s: float = 20.0  # identical frames for longer than this: frozen (longer than a red light)
    frame_period_s: float = 0.1  # assumed spacing of frames whose capture stamps are not given


def luma_stats(image_rgb: np.ndarray, clip_luma: float = 250.0) -> tuple[float, float]:
    """uint8 RGB [3, H, W] -> (99th percentile of luma, share of pixels with luma >= clip_luma), 0-255."""
    luma = np.tensordot(_LUMA_RGB, image_rgb.astype(np.float32), axes=1)
    return float(np.percentile(luma, 99)), float(np.mean(luma >= clip_luma))


class ImageChecker:
    """Image checks of one camera stream (keeps the previous frame and how long it has repeated, for
    ``frozen``)."""

    def __init__(self, input_size_px: tuple[int, int], config: ImageCheckConfig | None = None) -> None:
        self.config = config or ImageCheckConfig()
        self.trained_aspect = input_size_px[0] / input_size_px[1]
        self._previous: np.ndarray | None = None
        self._previous_stamp_ns: int | None = None
        self._repeated_s = 0.0  # how long the current frame has repeated

    def check(self, image_rgb: np.ndarray, frame_size_px: tuple[int, int] | None = None,
              stamp_ns: int | None = None) -> list[str]:
        """Reasons (from `REASONS`, image ones) for one frame: uint8 RGB [3, H, W] at the input size, as the
        model sees it; ``frame_size_px`` = (width, height) of the frame before resizing, when known;
        ``stamp_ns`` its capture time (else frames are taken ``frame_period_s`` apart)."""
        c = self.config
        reasons = []
        p99, clipped = luma_stats(image_rgb, c.overexposed_luma)
        if p99 <= c.black_p99_luma:
            reasons.append("black_frame")
        if clipped >= c.overexposed_fraction:
            reasons.append("overexposed")
        # a black stream repeats one frame too; "black_frame" already says all there is to say
        if self._previous is not None and not reasons and np.array_equal(self._previous, image_rgb):
            if stamp_ns is not None and self._previous_stamp_ns is not None:
                self._repeated_s += max(0.0, (stamp_ns - self._previous_stamp_ns) * 1e-9)
            else:
                self._repeated_s += c.frame_period_s
            if self._repeated_s > c.frozen_after_s:
                reasons.append("frozen")
        else:
            self._repeated_s = 0.0
        self._previous = image_rgb
        self._previous_stamp_ns = stamp_ns
        if frame_size_px is not None and frame_size_px[1] > 0:
            factor = (frame_size_px[0] / frame_size_px[1]) / self.trained_aspect
            if max(factor, 1.0 / max(factor, 1e-9)) > c.max_aspect_factor:
                reasons.append("bad_aspect")
        return reasons

    def reset(self) -> None:
        self._previous = None
        self._previous_stamp_ns = None
        self._repeated_s = 0.0


# ---------------------------------------------------------------------------------------------- appearance


DESCRIPTOR_GRID = (24, 32)  # (rows, columns) of the gradient thumbnail


def appearance_descriptor(images_rgb: torch.Tensor | np.ndarray,
                          grid: tuple[int, int] = DESCRIPTOR_GRID) -> torch.Tensor:
    """uint8 RGB [N, 3, H, W] -> float32 [N, 2 * rows * cols]: mean |d/dx| and |d/dy| of the grey image on
    a (2 rows)x(2 cols) thumbnail, pooled to ``grid`` = (rows, cols) cells (24x32 here; place recognition
    uses 30x40), each row centred and scaled to unit norm.

    Gradients, not pixels: the layout of facade edges, windows and kerbs says *which street* and does not
    move with the sun's colour or the exposure; the per-row scaling removes overall contrast.
    """
    x = torch.as_tensor(np.asarray(images_rgb) if not isinstance(images_rgb, torch.Tensor) else images_rgb)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W] RGB; got {tuple(x.shape)}")
    rows, cols = grid
    grey = torch.nn.functional.adaptive_avg_pool2d(x.float().mean(1, keepdim=True), (2 * rows, 2 * cols))
    gx = (grey[..., :, 1:] - grey[..., :, :-1]).abs()
    gy = (grey[..., 1:, :] - grey[..., :-1, :]).abs()
    d = torch.cat([torch.nn.functional.adaptive_avg_pool2d(gx, (rows, cols)).flatten(1),
                   torch.nn.functional.adaptive_avg_pool2d(gy, (rows, cols)).flatten(1)], 1)
    d = d - d.mean(1, keepdim=True)
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)


def knn_distance(features: torch.Tensor, bank: torch.Tensor, k: int = 1, *, chunk: int = 1024) -> torch.Tensor:
    """Cosine distance [N] of each row of ``features`` [N, F] to its k-th nearest row of ``bank`` [M, F]."""
    f = features.float() / features.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = bank.float() / bank.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = [1.0 - (f[s:s + chunk] @ b.T).topk(min(k, len(b)), dim=1).values[:, -1] for s in range(0, len(f), chunk)]
    return torch.cat(out) if out else torch.zeros(0)


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start) [N]."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


# ---------------------------------------------------------------------------------------------- place test


@dataclass(frozen=True)
class PlaceTestConfig:
    """The sequential out-of-area test on place-recognition evidence (module docstring). Chosen on tuning
    cities 2, 3, 4 and the calibration drives (BENCHMARKS.md "PoseNet out-of-area: a sequential test");
    the threshold is fitted on the calibration drives."""

    # k of Page's CUSUM: frames whose evidence exceeds it push toward "elsewhere". None: fitted, the
    # ``reference_quantile`` of the calibration frames' 1 - similarity (it follows the index's descriptor:
    # 0.41 for the every-row index, where 0.42 was chosen by hand on the tuning cities)
    reference: float | None = None
    reference_quantile: float = 0.95
    jump_weight: float = 0.3  # evidence added when the place fix moved more than jump_m since the last frame
    jump_m: float = 25.0  # a jump no vehicle makes between two frames (125 m/s at 5 fps)
    quantile: float = 0.97  # of the calibration drives' statistic: the threshold
    frame_period_s: float = 0.2  # the frame spacing the threshold is fitted at: increments scale with dt
    max_step_s: float = 1.0  # a longer gap between frames counts as this much
    start_margin: float = 0.0  # a new stream starts this far above the threshold (0: its first frame decides)
    ceiling_margin: float = 3.0  # the statistic never climbs higher above it: back in the area shows in ~3 s

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> PlaceTestConfig:
        return cls(**{k: float(meta[k]) for k in cls.__dataclass_fields__ if k in meta})


class PlaceEvidence:
    """Page's CUSUM over a stream's place evidence: per frame, ``(1 - similarity of the most similar indexed
    view) + jump_weight * [the place fix moved > jump_m]``, minus ``reference``, accumulated (never below 0)
    and scaled by the time since the previous frame; out of area while the sum exceeds ``threshold``. It
    starts at ``threshold + start_margin`` (at the threshold: a stream's first frame is out of area when its
    own evidence exceeds ``reference``) and never exceeds ``threshold + ceiling_margin`` (a stream that comes back to the area
    is recognised within seconds), unless ``threshold`` is None (fitting: the statistic of streams already
    recognised, no ceiling)."""

    def __init__(self, config: PlaceTestConfig, threshold: float | None) -> None:
        if config.reference is None:
            raise ValueError("PlaceEvidence needs a reference (fit_place_validity fits it)")
        self.config = config
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.statistic = 0.0 if self.threshold is None else self.threshold + self.config.start_margin
        self._position: tuple[float, float] | None = None
        self._stamp_ns: int | None = None

    def update(self, similarity: float, east_m: float, north_m: float, stamp_ns: int | None = None) -> bool:
        """One frame's evidence (NaN similarity: no evidence, the statistic stays); True: out of area."""
        c = self.config
        step = 1.0
        if stamp_ns is not None and self._stamp_ns is not None:
            step = min(max(stamp_ns - self._stamp_ns, 0) * 1e-9, c.max_step_s) / c.frame_period_s
        if stamp_ns is not None:
            self._stamp_ns = stamp_ns
        if math.isfinite(similarity):
            jumped = (self._position is not None and math.isfinite(east_m) and math.isfinite(north_m)
                      and math.hypot(east_m - self._position[0], north_m - self._position[1]) > c.jump_m)
            evidence = (1.0 - similarity) + c.jump_weight * jumped
            self.statistic = max(0.0, self.statistic + step * (evidence - c.reference))
            if self.threshold is not None:
                self.statistic = min(self.statistic, self.threshold + c.ceiling_margin)
            if math.isfinite(east_m) and math.isfinite(north_m):
                self._position = (east_m, north_m)
        return self.threshold is not None and self.statistic > self.threshold


def fit_place_validity(predictor: PosePredictor, places: PlaceRecognizer,
                       calibration: Sequence[tuple[torch.Tensor, np.ndarray | None]], *,
                       config: PlaceTestConfig | None = None,
                       sources: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Fit the sequential place test's threshold on ``calibration`` drives of the training area that are not
    in the index: per drive (uint8 RGB [N, 3, H, W] at the input size, capture stamps [N] or None). The
    threshold is the ``quantile`` of their statistic, run as on a stream already recognised.

    Returns ``meta["validity"]`` (module docstring)."""
    cfg = config or PlaceTestConfig()
    if not calibration:
        raise ValueError("fit_place_validity needs calibration drives (frames of the training area)")
    hyps = [places.hypotheses(images, 1) for images, _ in calibration]
    if cfg.reference is None:
        similarity = np.concatenate([h.similarity for h in hyps])
        cfg = replace(cfg, reference=float(np.quantile(1.0 - similarity, cfg.reference_quantile)))
    stats = []
    for (images, stamps), hyp in zip(calibration, hyps, strict=True):
        test = PlaceEvidence(cfg, None)
        for i in range(len(images)):
            test.update(float(hyp.similarity[i]), float(hyp.east_m[i, 0]), float(hyp.north_m[i, 0]),
                        None if stamps is None else int(stamps[i]))
            stats.append(test.statistic)
    threshold = float(np.quantile(stats, cfg.quantile))
    return {"version": VALIDITY_VERSION, "method": PLACE_METHOD, "threshold": threshold,
            **{k: getattr(cfg, k) for k in PlaceTestConfig.__dataclass_fields__},
            "calibration_frames": len(stats),
            "sources": {k: list(map(str, v)) for k, v in (sources or {}).items()},
            "training_area": training_area(predictor)}


# ---------------------------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class FitConfig:
    """How `fit_validity` builds the out-of-area test."""

    dims: int = 128  # PCA dimensions of the stored bank (measured: as good as the full 1536, 12x smaller)
    window_frames: int = 10  # frames averaged (2 s at 5 fps): one occluding truck is not a new city
    quantile: float = 0.97  # of the calibration drives' windowed scores: the threshold


def training_area(predictor: PosePredictor, margin_m: float = 50.0) -> dict[str, float]:
    """The area the checkpoint was trained on: centre lat/lon (degrees) and radius (metres) of its anchors
    (k-means of the training positions) plus ``margin_m``."""
    anchors = predictor.anchors.double().numpy()
    east = predictor.center_enu_m[0] + predictor.scale_m * anchors[:, 0]
    north = predictor.center_enu_m[1] + predictor.scale_m * anchors[:, 1]
    ce, cn = float(np.mean(east)), float(np.mean(north))
    radius = float(np.max(np.hypot(east - ce, north - cn))) + margin_m
    lat, lon, _ = predictor.frame.to_geodetic(ce, cn)
    return {"center_lat_deg": float(np.squeeze(lat)), "center_lon_deg": float(np.squeeze(lon)), "radius_m": radius}


def fit_validity(predictor: PosePredictor, bank: Sequence[torch.Tensor], calibration: Sequence[torch.Tensor], *,
                 config: FitConfig | None = None, sources: Mapping[str, Sequence[str]] | None = None
                 ) -> dict[str, Any]:
    """Fit the out-of-area test on frames of the training area (never on drives used to report).

    Args:
        bank: per drive, uint8 [N_i, 3, H, W] RGB at the input size: the training area as it looks (the
            training routes: every street, both ways, several times of day).
        calibration: per drive, frames of the same area *not* in the bank (other routes): the threshold is
            the ``quantile`` of their windowed scores, so it reflects a new drive, not a near-copy.
        sources: ``{"bank": [...], "calibration": [...]}`` drive names, recorded.

    Returns ``meta["validity"]`` (module docstring).
    """
    cfg = config or FitConfig()
    if not bank or not calibration:
        raise ValueError("fit_validity needs bank drives and calibration drives (frames of the training area)")
    desc = torch.cat([appearance_descriptor(b) for b in bank]).double()
    mean = desc.mean(0)
    _, _, vh = torch.linalg.svd(desc - mean, full_matrices=False)
    proj = vh[: cfg.dims].T.contiguous()  # [F, dims]
    stored = ((desc - mean) @ proj).float()
    scores = [rolling_mean(knn_distance(((appearance_descriptor(c).double() - mean) @ proj).float(), stored)
                           .numpy(), cfg.window_frames) for c in calibration]
    threshold = float(np.quantile(np.concatenate(scores), cfg.quantile))
    return {"version": VALIDITY_VERSION, "method": METHOD, "threshold": threshold,
            "window_frames": cfg.window_frames, "quantile": cfg.quantile,
            "mean": mean.float(), "projection": proj.half(), "bank": stored.half(),
            "bank_frames": int(len(stored)), "calibration_frames": int(sum(len(s) for s in scores)),
            "sources": {k: list(map(str, v)) for k, v in (sources or {}).items()},
            "training_area": training_area(predictor)}


# ---------------------------------------------------------------------------------------------- runtime


class FrameValidity:
    """Image checks and the out-of-area test of one camera stream (state: the previous frame, the window
    of recent scores), with counts per reason. The hook of the node and the evaluation:

    >>> validity = FrameValidity(predictor)
    >>> reasons = validity.assess(batch)   # uint8 [N, 3, H, W] as the model sees it -> reasons per frame
    """

    def __init__(self, predictor: PosePredictor, checks: ImageCheckConfig | None = None) -> None:
        self.checker = ImageChecker(predictor.input_size_px, checks)
        self.counts: dict[str, int] = {}
        self.frames = 0
        meta = predictor.checkpoint.meta.get("validity") or {}
        self.method = meta.get("method")
        self.sequential: PlaceEvidence | None = None
        self.fitted = False
        if self.method == METHOD:
            self.fitted = True
            self.mean = meta["mean"].float()
            self.projection = meta["projection"].float()
            self.bank = meta["bank"].float()
            self.threshold = float(meta["threshold"])
            self.window: deque[float] = deque(maxlen=int(meta["window_frames"]))
        elif self.method == PLACE_METHOD and (predictor.places is not None
                                              or "places" in predictor.checkpoint.meta):
            from perception.models.posenet.places import PlaceRecognizer

            # the test needs the index even when the predictor answers by regression (places=False)
            self.places = predictor.places or PlaceRecognizer(predictor.checkpoint.meta["places"])
            self.threshold = float(meta["threshold"])
            self.sequential = PlaceEvidence(PlaceTestConfig.from_meta(meta), self.threshold)
            self.fitted = True
        self.last_scores = np.zeros(0)

    def scores(self, images_rgb: torch.Tensor | np.ndarray) -> np.ndarray:
        """Per-frame out-of-area scores [N] of the gradient-thumbnail method (cosine distance to the nearest
        bank frame); NaN unfitted or another method."""
        if self.method != METHOD or len(images_rgb) == 0:
            return np.full(len(images_rgb), np.nan)
        d = (appearance_descriptor(images_rgb) - self.mean) @ self.projection
        return knn_distance(d, self.bank).double().numpy()

    def assess(self, images_rgb: torch.Tensor | np.ndarray,
               frame_sizes_px: Sequence[tuple[int, int] | None] | None = None,
               stamps_ns: Sequence[int] | np.ndarray | None = None,
               estimates: PoseEstimates | None = None) -> list[list[str]]:
        """Reasons per frame (empty: valid) for frames uint8 RGB [N, 3, H, W] at the input size, in stream
        order; ``frame_sizes_px``: each frame's (width, height) before resizing, when known; ``stamps_ns``:
        capture times [N], when known (how long a frame has repeated; the sequential test's time steps);
        ``estimates``: the predictor's output for these frames, when at hand (its place similarity and fix
        spare the place test a second search). Counted."""
        images = images_rgb.numpy() if isinstance(images_rgb, torch.Tensor) else np.asarray(images_rgb)
        self.last_scores = self._frame_evidence(images, estimates)
        result = []
        for i, image in enumerate(images):
            stamp = None if stamps_ns is None else int(stamps_ns[i])
            reasons = self.checker.check(image, None if frame_sizes_px is None else frame_sizes_px[i], stamp)
            # a black or blown-out frame says nothing about where it was taken: keep it out of the test
            if self.fitted and not ({"black_frame", "overexposed"} & set(reasons)):
                if self.sequential is not None:
                    far = self.sequential.update(*self.last_scores[i], stamp)
                else:
                    self.window.append(float(self.last_scores[i]))
                    far = sum(self.window) / len(self.window) > self.threshold
                if far:
                    reasons.append("out_of_area")
            for r in reasons:
                self.counts[r] = self.counts.get(r, 0) + 1
            self.frames += 1
            result.append(reasons)
        return result

    def _frame_evidence(self, images: np.ndarray, estimates: PoseEstimates | None) -> np.ndarray:
        """Per frame: the thumbnail method's score [N]; the place test's (similarity, east_m, north_m) [N, 3]."""
        if self.sequential is None:
            return self.scores(images)
        if estimates is not None and estimates.place_similarity is not None:
            sim, east, north = estimates.place_similarity, estimates.east_m, estimates.north_m
        elif len(images):
            hyp = self.places.hypotheses(torch.from_numpy(images), 1)
            sim, east, north = hyp.similarity, hyp.east_m[:, 0], hyp.north_m[:, 0]
        else:
            return np.zeros((0, 3))
        return np.stack([np.asarray(sim, np.float64), np.asarray(east, np.float64),
                         np.asarray(north, np.float64)], 1)

    def reset(self) -> None:
        """Forget the stream (a new drive): previous frame, score window, sequential test (back to
        "not yet recognised")."""
        self.checker.reset()
        if self.method == METHOD:
            self.window.clear()
        if self.sequential is not None:
            self.sequential.reset()


def great_circle_m(lat1_deg: float, lon1_deg: float, lat2_deg: np.ndarray, lon2_deg: np.ndarray) -> np.ndarray:
    """WGS84 geodesic distances [N] in metres from one point to N points (pyproj.Geod)."""
    from pyproj import Geod

    lat2 = np.atleast_1d(np.asarray(lat2_deg, dtype=np.float64))
    lon2 = np.atleast_1d(np.asarray(lon2_deg, dtype=np.float64))
    _, _, dist = Geod(ellps="WGS84").inv(np.full_like(lon2, lon1_deg), np.full_like(lat2, lat1_deg), lon2, lat2)
    return np.asarray(dist, dtype=np.float64)


def area_check(area: dict[str, float], lat_deg: np.ndarray, lon_deg: np.ndarray) -> dict[str, float]:
    """Where a drive's GPS track lies relative to a training area: ``nearest_m``/``median_m`` (distance
    from the area's centre), ``outside_m`` (how far the nearest point lies beyond its radius, 0 inside),
    ``outside_fraction`` (share of points beyond the radius)."""
    d = great_circle_m(area["center_lat_deg"], area["center_lon_deg"], lat_deg, lon_deg)
    if d.size == 0:
        return {"nearest_m": math.nan, "median_m": math.nan, "outside_m": 0.0, "outside_fraction": 0.0}
    return {"nearest_m": float(d.min()), "median_m": float(np.median(d)),
            "outside_m": float(max(0.0, d.min() - area["radius_m"])),
            "outside_fraction": float(np.mean(d > area["radius_m"]))}


class OutOfAreaError(ValueError):
    """A drive lies outside the model's training area (``evaluate`` without ``--allow-out-of-area``)."""


def drives_outside_area(predictor: PosePredictor, drives: Sequence[str | os.PathLike]) -> list[str]:
    """One line per drive whose GPS track lies (mostly) outside the checkpoint's training area: which
    drive, how far (WGS84 great circle from the area's centre, beyond its radius). Drives without GPS
    are not judged here (their frames still are, by the out-of-area test)."""
    from perception.datasets import DriveSpec
    from perception.drives import DriveReader

    meta = predictor.checkpoint.meta.get("validity") or {}
    area = meta.get("training_area") or training_area(predictor)
    lines = []
    for d in drives:
        path = DriveSpec.parse(d).path if not isinstance(d, DriveSpec) else d.path
        with DriveReader(path) as reader:
            track = reader.track()
        ok = np.isfinite(track.lat_deg) & np.isfinite(track.lon_deg)
        where = area_check(area, track.lat_deg[ok], track.lon_deg[ok])
        if where["outside_fraction"] > 0.5:
            lines.append(f"drive {path} lies outside {predictor.model_id}'s training area: its GPS track is "
                         f"{_km(where['median_m'])} from the area's centre ({area['center_lat_deg']:.5f}, "
                         f"{area['center_lon_deg']:.5f}; radius {_km(area['radius_m'])}), "
                         f"{where['outside_fraction']:.0%} of it beyond the radius")
    return lines


def _km(m: float) -> str:
    return f"{m / 1000:,.1f} km" if m >= 2000 else f"{m:,.0f} m"


# ---------------------------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> int:
    """``python -m perception.models.posenet.validity --calibration D... [--bank D...] [--model CKPT] [-o OUT]``:
    fit the out-of-area test and store it in the checkpoint (the same file unless ``-o``): the sequential
    place test when the checkpoint has a place index, else the gradient-thumbnail bank (``--bank``)."""
    from perception.datasets import load_frames
    from perception.models.posenet.places import PlaceRecognizer
    from perception.models.posenet.predictor import PosePredictor

    ap = argparse.ArgumentParser(prog="python -m perception.models.posenet.validity",
                                 description="fit PoseNet's out-of-area test into a checkpoint's metadata")
    ap.add_argument("--model", default=None, help="checkpoint file or weights name (default: the shipped one)")
    ap.add_argument("--bank", nargs="+", default=None, metavar="DRIVE",
                    help="training-area drives (the bank; only for a checkpoint without a place index)")
    ap.add_argument("--calibration", nargs="+", required=True, metavar="DRIVE",
                    help="other training-area drives, not used for reporting (the threshold)")
    ap.add_argument("-o", "--output", default=None, help="checkpoint to write (default: the one read)")
    ap.add_argument("--cache-dir", default=None, help="frame cache folder")
    args = ap.parse_args(argv)
    predictor = PosePredictor(args.model, device="cpu")
    ckpt = predictor.checkpoint
    out = Path(args.output) if args.output else (Path(args.model) if args.model and Path(args.model).is_file()
                                                 else _registered_path(args.model))

    def frames(path: str) -> Any:
        return load_frames([path], size_px=predictor.input_size_px, truth=_AnyFrame(), cache_dir=args.cache_dir)

    if "places" in ckpt.meta:
        meta = fit_place_validity(predictor, PlaceRecognizer(ckpt.meta["places"]),
                                  [(f.images, f.stamp_ns) for f in map(frames, args.calibration)],
                                  sources={"calibration": args.calibration})
        what = f"sequential place test, threshold {meta['threshold']:.3f}"
    elif not args.bank:
        ap.error(f"{out} has no place index: the gradient-thumbnail test needs --bank DRIVE...")
    else:
        meta = fit_validity(predictor, [frames(d).images for d in args.bank],
                            [frames(d).images for d in args.calibration],
                            sources={"bank": args.bank, "calibration": args.calibration})
        what = (f"gradient-thumbnail threshold {meta['threshold']:.4f} over {meta['window_frames']} frames, "
                f"bank {meta['bank_frames']} frames")
    ckpt.meta["validity"] = meta
    ckpt.save(out)
    print(f"wrote {out}: out-of-area {what}, calibrated on {meta['calibration_frames']} frames")
    return 0


def _registered_path(name: str | None) -> Path:
    from perception.models._api import default_weights, get_weights

    return (default_weights("posenet") if name is None else get_weights(name)).path


class _AnyFrame:
    """A `perception.datasets.FrameTruth` that keeps every frame, GPS or not."""

    key = "any-v1"
    what = "an image"
    gps = "none"

    def open(self, reader: Any, size_px: tuple[int, int]) -> Any:
        return lambda frame: {"stamp_ns": frame.stamp_ns}


if __name__ == "__main__":
    raise SystemExit(main())
