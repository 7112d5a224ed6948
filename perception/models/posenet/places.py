"""Place recognition: PoseNet's hypotheses from the training frames that look most alike.

Why: the regression head maps a view to a mixture over anchors, and on held-out routes a third of its
top fixes land > 20 m away. The city is not to blame: the static view at a frame's true pose differs
from the nearest view >= 20 m away by twice what a 1 m move changes (benchmarks/posenet_ambiguity.py),
and a nearest-neighbour search over the *training frames themselves* on a binary gradient thumbnail (below)
puts the nearest one > 20 m away for 0-13 % of validation frames (day 0 %, dusk + heavy traffic 2 %,
overcast 9 %, night 13 %) where the regression has 56-100 % (BENCHMARKS.md "PoseNet place recognition"). A pose regressor interpolates between training views; retrieval keeps
them (Sattler et al., "Understanding the limitations of CNN-based absolute camera pose regression",
CVPR 2019). So a checkpoint may carry a *place index*: the training frames' appearance descriptors
(`validity.appearance_descriptor` on a 30x40 grid: where the edges of facades, windows and kerbs lie;
without its bottom ``skip_bottom_rows`` rows, the road right ahead, whose crosswalks are alike at every
intersection), binarised at the index's mean descriptor (one bit per cell and direction, 220 bytes a frame
with 8 rows left out), with their positions and headings; the predictor turns the ``pool`` most similar
bank frames into hypotheses:

- similarity: 1 - 2 x (Hamming distance / bits), the cosine of the +-1 vectors; weight of a bank frame
  ``softmax(similarity / temperature)`` over the pool, times ``weight_scale`` (<= 1: the probability that *none* of them is right stays);
- bank frames within ``merge_m`` of a stronger one, heading within ``merge_heading_deg``, join its
  hypothesis (weights add; the position is the weighted mean of the members, the heading the strongest
  member's); the ``k`` heaviest hypotheses are published, best first;
- each hypothesis' covariance is along/across the heading: ``along_std_m`` / ``across_std_m`` fitted
  so that the *right* hypothesis' 95 % ellipse holds the truth 95 % of the time on validation drives;
  its heading std likewise (``heading_std_deg``).

`fit_places` builds the index from training drives, `fit_place_calibration` fits the figures above on
validation drives (right = the hypothesis nearest the truth, within ``radius_m``), both stored in
``meta["places"]`` (``streetloc calibrate posenet --places-data TRAIN... --data VAL...``). A checkpoint
without it predicts from the regression alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from perception.models.posenet.validity import appearance_descriptor

PLACES_VERSION = 1
METHOD = "appearance-knn-v1"
CHI2_2DOF_95 = 5.991  # 95 % quantile of chi-square with 2 degrees of freedom


@dataclass(frozen=True)
class PlaceConfig:
    """How bank frames become hypotheses (stored in ``meta["places"]["config"]``)."""

    grid: tuple[int, int] = (30, 40)  # descriptor cells (rows, columns)
    # Descriptor rows left out at the bottom of the grid: the road right ahead. Its crosswalks and lane
    # marks are the same at every intersection and outweighed the facades while stopped at a stop line
    # (top fix one block off for the whole red light); 8 of 30 chosen on validation drives (docs/posenet.md).
    # An index stored without this field used every row.
    skip_bottom_rows: int = 8
    pool: int = 30  # most similar bank frames considered per image
    temperature: float = 0.02  # of the cosine similarities' softmax (fitted)
    weight_scale: float = 1.0  # factor on all weights (fitted; < 1 leaves room for "none is right")
    merge_m: float = 8.0
    merge_heading_deg: float = 60.0
    along_std_m: float = 2.0  # 1-sigma along the hypothesis' heading (fitted)
    across_std_m: float = 1.0  # 1-sigma across it (fitted)
    heading_std_deg: float = 5.0  # (fitted)
    radius_m: float = 10.0  # a hypothesis is right when nearest to the truth and within this
    fitted: bool = False


@dataclass
class PlaceHypotheses:
    """Per image [N] x hypothesis [k]: ENU position (m, the checkpoint's frame), heading (deg, clockwise
    from north), weight (0 where absent), covariance [N, k, 2, 2] (m^2; NaN where absent); ``similarity``
    [N]: the best bank frame's cosine similarity; ``heading_std_deg``: 1-sigma of every heading."""

    east_m: np.ndarray
    north_m: np.ndarray
    heading_deg: np.ndarray
    weight: np.ndarray
    cov_enu_m2: np.ndarray
    similarity: np.ndarray
    heading_std_deg: float


def _descriptors(images_rgb: torch.Tensor, config: PlaceConfig, chunk: int = 2048) -> torch.Tensor:
    """`appearance_descriptor` of the image above its bottom ``skip_bottom_rows`` / rows, on the grid's
    other rows: float32 [N, 2 * (rows - skip) * cols]. The road there changes nothing (not even the
    descriptor's per-image centring)."""
    rows, cols = config.grid
    if not 0 <= config.skip_bottom_rows < rows:
        raise ValueError(f"place index: skip_bottom_rows {config.skip_bottom_rows} must lie in [0, {rows})")
    kept_rows = rows - config.skip_bottom_rows
    top_px = round(images_rgb.shape[-2] * kept_rows / rows)
    return torch.cat([appearance_descriptor(images_rgb[s:s + chunk, :, :top_px], (kept_rows, cols))
                      for s in range(0, len(images_rgb), chunk)])


def fit_places(images_rgb: torch.Tensor, east_m: np.ndarray, north_m: np.ndarray, heading_deg: np.ndarray, *,
               config: PlaceConfig | None = None, sources: Sequence[str] = ()) -> dict[str, Any]:
    """The place index of training frames: uint8 RGB [N, 3, H, W] at the model's input size with their
    positions (m, the checkpoint's ENU frame) and headings (deg) -> ``meta["places"]``."""
    cfg = config or PlaceConfig()
    keep = np.isfinite(east_m) & np.isfinite(north_m) & np.isfinite(heading_deg)
    if keep.sum() < cfg.pool:
        raise ValueError(f"a place index needs at least {cfg.pool} frames with a position and a heading; "
                         f"got {int(keep.sum())}")
    idx = torch.from_numpy(np.nonzero(keep)[0])
    desc = _descriptors(images_rgb[idx], cfg)
    mean = desc.mean(0)
    return {"version": PLACES_VERSION, "method": METHOD, "config": asdict(cfg), "mean": mean,
            "bits": torch.from_numpy(_pack(desc, mean)),
            "east_m": torch.from_numpy(np.asarray(east_m, np.float32)[keep]),
            "north_m": torch.from_numpy(np.asarray(north_m, np.float32)[keep]),
            "heading_deg": torch.from_numpy(np.asarray(heading_deg, np.float32)[keep]),
            "bank_frames": int(len(desc)), "sources": [str(s) for s in sources]}


def _pack(desc: torch.Tensor, mean: torch.Tensor) -> np.ndarray:
    """Descriptors float [N, F] -> bits above ``mean``, packed: uint8 [N, 8 * ceil(F / 64)] (whole
    64-bit words, zero-padded, so that Hamming distances run on uint64)."""
    bits = (desc - mean).numpy() > 0
    words = -(-bits.shape[1] // 64)
    bits = np.pad(bits, ((0, 0), (0, 64 * words - bits.shape[1])))
    return np.packbits(bits, axis=1)


class PlaceRecognizer:
    """Hypotheses from a place index (``meta["places"]``).

    >>> places = PlaceRecognizer(checkpoint.meta["places"])
    >>> hyp = places.hypotheses(images, k=5)       # uint8 RGB [N, 3, H, W] at the input size
    """

    def __init__(self, meta: Mapping[str, Any], config: PlaceConfig | None = None) -> None:
        if meta.get("method") != METHOD:
            raise ValueError(f"place index method {meta.get('method')!r} is not {METHOD!r}")
        missing = [k for k in ("mean", "bits", "east_m", "north_m", "heading_deg") if k not in meta]
        if missing:
            raise ValueError(f"place index lacks {', '.join(missing)}")
        n = {k: len(meta[k]) for k in ("bits", "east_m", "north_m", "heading_deg")}
        if len(set(n.values())) != 1 or meta["bits"].shape[-1] * 8 < meta["mean"].numel():
            raise ValueError(f"place index arrays disagree: {n} views, {meta['bits'].shape[-1] * 8} bits for "
                             f"{meta['mean'].numel()} cells")
        stored = {k: v for k, v in dict(meta.get("config", {})).items() if k in PlaceConfig.__dataclass_fields__}
        if "grid" in stored:
            stored["grid"] = tuple(stored["grid"])
        stored.setdefault("skip_bottom_rows", 0)  # indices made before the field used every row
        self.config = config or PlaceConfig(**stored)
        self.mean = meta["mean"].float()
        self.bits = int(self.mean.numel())
        self.bank = np.ascontiguousarray(meta["bits"].numpy()).view(np.uint64)  # [M, words]
        self.east_m = meta["east_m"].double().numpy()
        self.north_m = meta["north_m"].double().numpy()
        self.heading_deg = meta["heading_deg"].double().numpy()

    def with_config(self, **changes: Any) -> PlaceRecognizer:
        """The same index with other figures (calibration)."""
        other = object.__new__(PlaceRecognizer)
        other.__dict__.update(self.__dict__)
        other.config = replace(self.config, **changes)
        return other

    def neighbours(self, images_rgb: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The ``pool`` most similar bank frames: (index int64 [N, pool], cosine similarity float64 [N, pool]),
        most similar first."""
        query = np.ascontiguousarray(_pack(_descriptors(images_rgb, self.config), self.mean)).view(np.uint64)
        pool = min(self.config.pool, len(self.bank))
        index = np.empty((len(query), pool), np.int64)
        hamming = np.empty((len(query), pool), np.int64)
        for i, q in enumerate(query):  # one image at a time: [M, words] at once, not [N, M, words]
            d = np.bitwise_count(self.bank ^ q).sum(1, dtype=np.int64)
            top = np.argpartition(d, pool - 1)[:pool] if pool < len(d) else np.arange(len(d))
            top = top[np.argsort(d[top], kind="stable")]
            index[i], hamming[i] = top, d[top]
        return index, 1.0 - 2.0 * hamming / self.bits

    def hypotheses(self, images_rgb: torch.Tensor, k: int) -> PlaceHypotheses:
        return self.from_neighbours(*self.neighbours(images_rgb), k=k)

    def from_neighbours(self, index: np.ndarray, similarity: np.ndarray, k: int) -> PlaceHypotheses:
        """`neighbours`' output -> the top-``k`` merged hypotheses (module docstring)."""
        cfg = self.config
        n, m = index.shape
        logits = similarity / cfg.temperature
        w = np.exp(logits - logits.max(1, keepdims=True))
        w = cfg.weight_scale * w / w.sum(1, keepdims=True)
        e, no, h = self.east_m[index], self.north_m[index], self.heading_deg[index]
        close = (np.hypot(e[:, :, None] - e[:, None, :], no[:, :, None] - no[:, None, :]) < cfg.merge_m) & (
            np.abs((h[:, :, None] - h[:, None, :] + 180.0) % 360.0 - 180.0) < cfg.merge_heading_deg)
        owner = np.tile(np.arange(m), (n, 1))
        kept = np.ones((n, m), bool)
        for j in range(1, m):  # sorted by similarity: a near stronger kept frame absorbs this one
            near = close[:, j, :j] & kept[:, :j]
            has = near.any(1)
            kept[:, j] = ~has
            owner[has, j] = near[has].argmax(1)
        rows = np.broadcast_to(np.arange(n)[:, None], (n, m))
        mass = np.zeros((n, m))
        np.add.at(mass, (rows, owner), w)
        se, sn = np.zeros((n, m)), np.zeros((n, m))
        np.add.at(se, (rows, owner), w * e)
        np.add.at(sn, (rows, owner), w * no)
        order = np.argsort(-np.where(kept, mass, -1.0), axis=1, kind="stable")[:, :k]
        take = np.take_along_axis(kept, order, 1)
        # merged softmax masses can sum to 1 + 1e-16: probabilities on the wire must stay in [0, 1]
        wt = np.clip(np.where(take, np.take_along_axis(mass, order, 1), 0.0), 0.0, 1.0)
        safe = np.where(wt > 0, wt, 1.0)
        east = np.where(take, np.take_along_axis(se, order, 1) / safe, np.nan)
        north = np.where(take, np.take_along_axis(sn, order, 1) / safe, np.nan)
        heading = np.where(take, np.take_along_axis(h, order, 1), np.nan)
        cov = hypothesis_covariance(heading, cfg.along_std_m, cfg.across_std_m)
        if wt.shape[1] < k:  # fewer bank frames than k
            pad = k - wt.shape[1]
            east, north, heading, wt = (np.pad(a, ((0, 0), (0, pad)), constant_values=v)
                                        for a, v in ((east, np.nan), (north, np.nan), (heading, np.nan), (wt, 0.0)))
            cov = np.pad(cov, ((0, 0), (0, pad), (0, 0), (0, 0)), constant_values=np.nan)
        return PlaceHypotheses(east, north, heading, wt, cov, similarity[:, 0].copy(), cfg.heading_std_deg)


def hypothesis_covariance(heading_deg: np.ndarray, along_std_m: float, across_std_m: float) -> np.ndarray:
    """ENU covariance [..., 2, 2] (m^2) of an ellipse ``along_std_m`` along ``heading_deg`` (clockwise
    from north) and ``across_std_m`` across it; NaN where the heading is."""
    a = np.radians(heading_deg)
    fwd = np.stack([np.sin(a), np.cos(a)], -1)  # (east, north)
    right = np.stack([np.cos(a), -np.sin(a)], -1)
    return (along_std_m**2 * fwd[..., :, None] * fwd[..., None, :]
            + across_std_m**2 * right[..., :, None] * right[..., None, :])


def _right(hyp: PlaceHypotheses, east_m: np.ndarray, north_m: np.ndarray, radius_m: float) -> np.ndarray:
    """bool [N, k]: the hypothesis nearest the truth, when within ``radius_m``."""
    d = np.hypot(hyp.east_m - east_m[:, None], hyp.north_m - north_m[:, None])
    d = np.where(np.isfinite(d), d, np.inf)
    nearest = d.argmin(1)
    right = np.zeros(d.shape, bool)
    rows = np.arange(len(d))
    right[rows, nearest] = d[rows, nearest] <= radius_m
    return right


def fit_place_calibration(recognizer: PlaceRecognizer, images_rgb: torch.Tensor, east_m: np.ndarray,
                          north_m: np.ndarray, heading_deg: np.ndarray, *, k: int = 5) -> dict[str, Any]:
    """Fit temperature, weight scale, along/across and heading stds on validation frames (never the
    bank's, never the reported ones). Returns the fitted ``config`` dict and before/after figures."""
    index, sim = recognizer.neighbours(images_rgb)
    radius = recognizer.config.radius_m

    def log_loss(rec: PlaceRecognizer) -> float:
        hyp = rec.from_neighbours(index, sim, k)
        right = _right(hyp, east_m, north_m, radius)
        p = np.clip(hyp.weight, 1e-6, 1 - 1e-6)
        present = hyp.weight > 0
        return float(-np.mean(np.where(right, np.log(p), np.log1p(-p))[present]))

    best = (math.inf, recognizer.config.temperature, 1.0)
    for temperature in (0.002, 0.004, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08):
        for scale in (0.6, 0.7, 0.8, 0.9, 1.0):
            loss = log_loss(recognizer.with_config(temperature=temperature, weight_scale=scale))
            if loss < best[0]:
                best = (loss, temperature, scale)
    rec = recognizer.with_config(temperature=best[1], weight_scale=best[2])
    hyp = rec.from_neighbours(index, sim, k)
    right = _right(hyp, east_m, north_m, radius)
    r, c = np.nonzero(right)
    de, dn = east_m[r] - hyp.east_m[r, c], north_m[r] - hyp.north_m[r, c]
    a = np.radians(hyp.heading_deg[r, c])
    along = de * np.sin(a) + dn * np.cos(a)
    across = de * np.cos(a) - dn * np.sin(a)
    # each 1-D std from its 95 % quantile (robust to the few near-misses inside the radius)
    along_std = float(np.quantile(np.abs(along), 0.95) / 1.96) if len(r) else rec.config.along_std_m
    across_std = float(np.quantile(np.abs(across), 0.95) / 1.96) if len(r) else rec.config.across_std_m
    dh = np.abs((hyp.heading_deg[r, c] - heading_deg[r] + 180.0) % 360.0 - 180.0)
    dh = dh[np.isfinite(dh)]
    heading_std = float(np.quantile(dh, 0.95) / 1.96) if len(dh) else rec.config.heading_std_deg
    # the two 1-D fits do not make a 95 % 2-D ellipse by themselves: scale both until it holds 95 %
    rec = rec.with_config(along_std_m=max(along_std, 0.2), across_std_m=max(across_std, 0.2),
                          heading_std_deg=max(heading_std, 0.5), fitted=True)
    m2 = (along / rec.config.along_std_m) ** 2 + (across / rec.config.across_std_m) ** 2
    if len(m2):
        s = math.sqrt(max(float(np.quantile(m2, 0.95)) / CHI2_2DOF_95, 1e-6))
        rec = rec.with_config(along_std_m=rec.config.along_std_m * s, across_std_m=rec.config.across_std_m * s)
    return {"config": asdict(rec.config), "frames": int(len(east_m)), "log_loss": best[0],
            "right_share": float(right.any(1).mean()) if len(right) else float("nan")}
