"""PoseNet inference: a checkpoint ready to localize images (preprocessing, batching, device and
precision), and the conversion of raw outputs to metres, lat/lon and calibrated covariances.

Hypotheses: the anchor mixture opened rather than collapsed. The ``pool`` most probable anchors'
candidates are taken best first; one closer than ``merge_m`` to a stronger kept one is merged into it (its
probability added: neighbouring anchors learn to point at the same place, so the raw top 5 are often
one place three times); the hypotheses are the top anchor's mode (the top-level fix) and then the
other kept modes by merged weight, ``k`` in all. Each carries the offset covariance
(scaled by ``cov_scale``) as its covariance *if it is the right one*, and its weight is the merged
softmax probability at ``temperature``. Both figures are fitted on validation drives by
`perception.models.posenet.evaluation.fit_hypothesis_calibration` and stored in the checkpoint's
``meta.calibration.hypotheses`` (`HypothesisCalibration`).

Input geometry (`fit_to_input`): a frame of another aspect than the input is centre-cropped to the
input's aspect, then resized; never stretched (a stretched street is another street to the network).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from localization.metrics import HYPOTHESIS_RADIUS_M
from perception.models._api import Checkpoint, resolve_checkpoint
from perception.models.posenet.network import NUM_FIXED, decode, posenet
from perception.models.posenet.places import PlaceHypotheses, PlaceRecognizer
from perception.transforms import ASPECT_TOLERANCE, crop_to_aspect, normalize, resize_to_input

__all__ = ["ASPECT_TOLERANCE", "crop_to_aspect"]  # re-exported: the node reads them here

def with_places(est: PoseEstimates, hyp: PlaceHypotheses, frame: LocalFrame) -> PoseEstimates:
    """``est`` with its hypotheses replaced by the place hypotheses ``hyp`` (positions in ``frame``): the
    top-level fix becomes the heaviest one (position, heading and their stds); its covariance is the
    mixture's second moment about that position, so a plain consumer sees the look-alike streets as
    spread. Frames without any place hypothesis keep the regression's output."""
    w = hyp.weight
    has = w[:, 0] > 0
    wn = w / np.where(w.sum(1, keepdims=True) > 0, w.sum(1, keepdims=True), 1.0)
    d = np.stack([hyp.east_m - hyp.east_m[:, :1], hyp.north_m - hyp.north_m[:, :1]], -1)  # [N, k, 2]
    d = np.where(np.isfinite(d), d, 0.0)
    c = np.where(np.isfinite(hyp.cov_enu_m2), hyp.cov_enu_m2, 0.0)
    spread = np.einsum("nk,nkij->nij", wn, c + d[..., :, None] * d[..., None, :])
    east = np.where(has, hyp.east_m[:, 0], est.east_m)
    north = np.where(has, hyp.north_m[:, 0], est.north_m)
    lat, lon, _ = frame.to_geodetic(east, north)
    hlat, hlon, _ = frame.to_geodetic(hyp.east_m, hyp.north_m)
    heading_std = np.full(w.shape, float(hyp.heading_std_deg))
    return PoseEstimates(
        east, north, np.atleast_1d(lat), np.atleast_1d(lon), np.where(has[:, None, None], spread, est.cov_enu_m2),
        np.where(has, hyp.heading_deg[:, 0], est.heading_deg), np.where(has, heading_std[:, 0], est.heading_std_deg),
        hyp.east_m, hyp.north_m, np.asarray(hlat, np.float64), np.asarray(hlon, np.float64), w, hyp.cov_enu_m2,
        hyp.heading_deg, np.where(w > 0, heading_std, np.nan), np.asarray(hyp.similarity, np.float64))


def fit_to_input(image_bgr: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """One BGR frame (any size, or mono) -> uint8 RGB [3, H, W] at ``size_px`` = (width, height):
    centre-cropped to the input's aspect, then resized (the one geometry rule of the node and
    ``evaluate``). ValueError when it is not an image."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim not in (2, 3):
        raise ValueError(f"image must be uint8 [H, W, 3] BGR; got {getattr(image_bgr, 'shape', type(image_bgr))}")
    return resize_to_input(crop_to_aspect(image_bgr, size_px[0] / size_px[1]), size_px)


def cropped_hfov_deg(width_px: int, height_px: int, fx_px: float, size_px: tuple[int, int]) -> float:
    """Horizontal field of view (deg) left after `crop_to_aspect` of a ``width_px`` x ``height_px`` frame
    with focal length ``fx_px`` to the input's aspect."""
    aspect = size_px[0] / size_px[1]
    w = min(float(width_px), height_px * aspect) if width_px / height_px > aspect else float(width_px)
    return float(np.degrees(2.0 * np.arctan2(w / 2.0, fx_px)))


@dataclass(frozen=True)
class HypothesisCalibration:
    """How raw anchors become hypotheses (stored as ``meta.calibration.hypotheses``).

    temperature: softmax temperature of the anchor scores (> 1 softens over-confident weights).
    cov_scale: factor on the offset covariance so that the right hypothesis' 95 % ellipse holds the truth
        95 % of the time. radius_m: a hypothesis is *right* when it is the one nearest to the truth and
        within this distance; weights estimate that probability. merge_m: modes closer than this merge.
    pool: anchors considered before merging. fitted: False for the uncalibrated defaults.
    """

    temperature: float = 1.0
    cov_scale: float = 1.0
    radius_m: float = HYPOTHESIS_RADIUS_M
    merge_m: float = 5.0
    pool: int = 32
    fitted: bool = False

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> HypothesisCalibration:
        d = dict(meta.get("calibration", {}).get("hypotheses", {}))
        return cls(**{k: type(getattr(cls, k))(d[k]) for k in cls.__dataclass_fields__ if k in d})


@dataclass
class PoseEstimates:
    """Predictions for a batch of N images, in metres and degrees.

    Attributes:
        east_m, north_m: float64 [N] in the checkpoint's ENU frame.
        lat_deg, lon_deg: float64 [N] WGS84.
        cov_enu_m2: float64 [N, 2, 2] east/north covariance (calibrated).
        heading_deg: float64 [N] clockwise from north in [0, 360).
        heading_std_deg: float64 [N] 1-sigma (calibrated), at most 180.
        hyp_east_m, hyp_north_m, hyp_lat_deg, hyp_lon_deg: float64 [N, k] the hypotheses
            (hypothesis 0 is the top-level position, the top anchor's mode); NaN where a frame has fewer than k.
        hyp_weight: float64 [N, k] probability that each is the right one; 0 where absent.
        hyp_cov_enu_m2: float64 [N, k, 2, 2] covariance of each if it is the right one.
        hyp_heading_deg, hyp_heading_std_deg: float64 [N, k] each hypothesis' heading and its 1-sigma
            (place recognition, `places`); None: every hypothesis shares the top-level heading.
        place_similarity: float64 [N] cosine similarity of the most similar indexed view (place recognition;
            the out-of-area test's evidence, `validity`); None without a place index.
    """

    east_m: np.ndarray
    north_m: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    cov_enu_m2: np.ndarray
    heading_deg: np.ndarray
    heading_std_deg: np.ndarray
    hyp_east_m: np.ndarray | None = None
    hyp_north_m: np.ndarray | None = None
    hyp_lat_deg: np.ndarray | None = None
    hyp_lon_deg: np.ndarray | None = None
    hyp_weight: np.ndarray | None = None
    hyp_cov_enu_m2: np.ndarray | None = None
    hyp_heading_deg: np.ndarray | None = None
    hyp_heading_std_deg: np.ndarray | None = None
    place_similarity: np.ndarray | None = None

    def hypothesis_count(self) -> np.ndarray:
        """int [N] hypotheses per frame."""
        if self.hyp_weight is None:
            return np.zeros(len(self), np.int64)
        return np.sum(np.isfinite(self.hyp_east_m), axis=1)

    def __len__(self) -> int:
        return len(self.east_m)


def checkpoint_frame(meta: Mapping[str, Any]) -> LocalFrame:
    return LocalFrame(GeoOrigin.from_dict(meta["geo_origin"]))


def enu_crs(origin: GeoOrigin) -> dict[str, str]:
    """The local frame the outputs live in, as PROJ describes it (east/north metres on a tangent plane)."""
    o = origin
    return {"kind": "enu", "ellipsoid": "WGS84",
            "proj": ("+proj=pipeline +step +proj=cart +ellps=WGS84 +step +proj=topocentric +ellps=WGS84 "
                     f"+lat_0={o.lat_deg!r} +lon_0={o.lon_deg!r} +h_0={o.alt_m!r}")}


class PosePredictor:
    """A loaded PoseNet checkpoint ready to localize images: preprocessing, batching, fp16 and
    channels_last on CUDA (fp32 on CPU), conversion to metres, lat/lon and calibrated covariances.

    >>> predictor = PosePredictor("posenet_synthetic_city")          # or a file, or None: the default
    >>> est = predictor.predict_bgr([image_bgr])                      # uint8 [H, W, 3] BGR, any size
    >>> est.lat_deg[0], est.cov_enu_m2[0]
    """

    def __init__(self, checkpoint: Checkpoint | str | Path | None = None, *, device: str | torch.device = "auto",
                 half: bool | None = None, channels_last: bool | None = None, max_batch: int = 64,
                 hypotheses: int = 5, calibration: HypothesisCalibration | None = None, places: bool = True) -> None:
        from perception.training import resolve_device

        self.checkpoint = resolve_checkpoint(checkpoint if not isinstance(checkpoint, Path) else str(checkpoint),
                                             model="posenet")
        meta = self.checkpoint.meta
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else (half and cuda)  # fp16 kernels on CPU are slow, not fast
        self.channels_last = cuda if channels_last is None else channels_last
        self.max_batch = max(1, int(max_batch))
        self.model_id = self.checkpoint.model_id
        self.input_size_px = self.checkpoint.input_size_px
        self.frame = checkpoint_frame(meta)
        self.center_enu_m = tuple(float(v) for v in meta["center_enu_m"])
        self.scale_m = float(meta["scale_m"])
        calib = meta.get("calibration", {})
        self.cov_scale = float(calib.get("position_cov_scale", 1.0))
        self.heading_var_scale = float(calib.get("heading_var_scale", 1.0))
        if hypotheses < 0:
            raise ValueError(f"hypotheses={hypotheses!r} must be at least 0")
        self.hypotheses = int(hypotheses)
        # the training camera's horizontal field of view (deg) when the checkpoint records it
        hfov = meta.get("camera_hfov_deg")
        self.camera_hfov_deg = None if hfov is None else float(hfov)
        self.calibration = calibration or HypothesisCalibration.from_meta(meta)
        norm = meta["normalization"]
        self.mean = torch.tensor(norm["mean"], device=self.device)
        self.std = torch.tensor(norm["std"], device=self.device)
        model = posenet(weights=self.checkpoint).to(self.device)
        self.anchors = model.anchors.detach().float().cpu().clone()  # kept fp32 whatever the model runs in
        self.offset_scale = float(model.offset_scale)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.half() if self.half else model
        # the place index (`places`), when the checkpoint has one and ``places`` is not turned off
        self.places = PlaceRecognizer(meta["places"]) if places and meta.get("places") else None

    def prepare_bgr(self, image_bgr: np.ndarray) -> np.ndarray:
        """One BGR frame (any size, or mono) -> uint8 RGB [3, H, W] at the input size; ValueError when
        it is not an image."""
        return fit_to_input(image_bgr, self.input_size_px)

    def predict_bgr(self, images_bgr: Sequence[np.ndarray]) -> PoseEstimates:
        return self.predict(torch.from_numpy(np.stack([self.prepare_bgr(im) for im in images_bgr])))

    @torch.inference_mode()
    def predict_raw(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] RGB at the input size -> raw outputs float32 [N, 8], in chunks of max_batch."""
        outs = []
        for chunk in images.split(self.max_batch):
            x = normalize(chunk.to(self.device, non_blocking=True), self.mean, self.std)
            if self.half:
                x = x.half()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(self.model(x).float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, NUM_FIXED + 3 * self.model.num_anchors)

    def predict(self, images: torch.Tensor) -> PoseEstimates:
        """uint8 [N, 3, H, W] RGB at the input size -> `PoseEstimates`: the regression's, or, with a
        place index, the place hypotheses' (`with_places`)."""
        est = self.estimates(self.predict_raw(images))
        if self.places is not None and self.hypotheses > 0 and len(images):
            est = with_places(est, self.places.hypotheses(images.cpu(), self.hypotheses), self.frame)
        return est

    def estimates(self, raw: torch.Tensor) -> PoseEstimates:
        return raw_to_estimates(raw, self.anchors, self.offset_scale, frame=self.frame,
                                center_enu_m=self.center_enu_m, scale_m=self.scale_m,
                                cov_scale=self.cov_scale, heading_var_scale=self.heading_var_scale,
                                hypotheses=self.hypotheses, calibration=self.calibration)


def select_hypotheses(logits: torch.Tensor, candidates: torch.Tensor, *, k: int, merge: float, pool: int,
                      temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture's top-``k`` modes per image.

    logits [N, K] anchor scores; candidates [N, K, 2] their positions (any unit); ``merge`` in that unit.
    Returns (index [N, k] long, the anchor of each mode, -1 where a frame has fewer; weight [N, k] float64,
    softmax(logits / temperature) summed over the anchors merged into the mode, 0 where absent).
    Mode 0 is the top anchor's (with what merged into it), the others by merged weight.
    """
    # numpy, not torch: ~30 steps on tensors of a few dozen numbers, where torch's per-call overhead
    # (~10 us) made this 3 ms a frame at batch 1 and numpy takes a tenth of that
    lg = logits.detach().cpu().double().numpy() / temperature
    cand = candidates.detach().cpu().double().numpy()
    n, num = lg.shape
    m = min(num, max(k, pool))
    prob = np.exp(lg - lg.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    rows = np.arange(n)[:, None]
    idx = np.argpartition(-prob, m - 1, axis=1)[:, :m] if m < num else np.tile(np.arange(num), (n, 1))
    idx = np.take_along_axis(idx, np.argsort(-prob[rows, idx], axis=1, kind="stable"), 1)  # by probability
    p = prob[rows, idx]  # [N, M]
    c = cand[rows, idx]  # [N, M, 2]
    close = ((c[:, :, None, :] - c[:, None, :, :]) ** 2).sum(-1) < merge * merge  # [N, M, M]
    owner = np.tile(np.arange(m), (n, 1))  # the kept mode each candidate merged into
    kept = np.ones((n, m), bool)
    for j in range(1, m):
        # candidates are sorted by probability: a near stronger kept one absorbs this one
        near = close[:, j, :j] & kept[:, :j]
        has = near.any(1)
        kept[:, j] = ~has
        owner[has, j] = near[has].argmax(1)  # the strongest near one
    weight = np.zeros((n, m))
    np.add.at(weight, (np.broadcast_to(rows, (n, m)), owner), p)
    # mode 0 is the top anchor's (the top-level fix, as before: on validation drives the heaviest merged
    # mode was no better, 66.0 vs 66.2 % within 5 m); the others by merged weight
    key = np.where(kept, weight, -1.0)
    key[:, 0] = 2.0
    order = np.argsort(-key, axis=1, kind="stable")
    kept, weight, idx = (np.take_along_axis(a, order, 1) for a in (kept, weight, idx))
    rank = np.cumsum(kept, axis=1) - 1  # position among the kept
    take = kept & (rank < k)
    out_idx = np.full((n, k), -1, np.int64)
    out_w = np.zeros((n, k))
    r, col = np.nonzero(take)
    out_idx[r, rank[r, col]] = idx[r, col]
    out_w[r, rank[r, col]] = weight[r, col]
    return torch.from_numpy(out_idx), torch.from_numpy(out_w)


def raw_to_estimates(raw: torch.Tensor, anchors: torch.Tensor, offset_scale: torch.Tensor | float, *,
                     frame: LocalFrame, center_enu_m: Sequence[float], scale_m: float, cov_scale: float = 1.0,
                     heading_var_scale: float = 1.0, hypotheses: int = 0,
                     calibration: HypothesisCalibration | None = None) -> PoseEstimates:
    """Raw outputs [N, NUM_FIXED + 3K] -> metres, degrees, lat/lon (see `PoseEstimates`), with the
    top-``hypotheses`` modes of the mixture (`select_hypotheses`, figures from ``calibration``)."""
    d = decode(raw, anchors.cpu(), float(offset_scale))
    hyp = None
    if hypotheses > 0:
        cal = calibration or HypothesisCalibration()
        hyp = select_hypotheses(d.logits, d.candidates, k=hypotheses, merge=cal.merge_m / scale_m,
                                pool=cal.pool, temperature=cal.temperature)
    pos = d.position.double().numpy()
    east = center_enu_m[0] + scale_m * pos[:, 0]
    north = center_enu_m[1] + scale_m * pos[:, 1]
    cov = d.covariance().double().numpy() * (scale_m**2) * cov_scale
    heading_var = np.exp(d.heading_log_var.double().numpy()) * heading_var_scale
    heading_std_deg = np.minimum(np.degrees(np.sqrt(heading_var)), 180.0)
    lat, lon, _ = frame.to_geodetic(east, north)
    est = PoseEstimates(east, north, np.atleast_1d(lat), np.atleast_1d(lon), cov,
                        np.mod(np.degrees(d.heading_rad.double().numpy()), 360.0), heading_std_deg)
    if hyp is not None:
        idx, weight = hyp
        present = (idx >= 0).numpy()
        cand = d.candidates.double().gather(1, idx.clamp_min(0)[:, :, None].expand(-1, -1, 2)).numpy()
        he = np.where(present, center_enu_m[0] + scale_m * cand[:, :, 0], np.nan)
        hn = np.where(present, center_enu_m[1] + scale_m * cand[:, :, 1], np.nan)
        hlat, hlon, _ = frame.to_geodetic(he, hn)
        # the network has one offset covariance per image: every mode shares it
        off = d.offset_covariance().double().numpy() * (scale_m**2) * cal.cov_scale  # [N, 2, 2]
        hcov = np.where(present[:, :, None, None], off[:, None], np.nan)
        est.hyp_east_m, est.hyp_north_m = he, hn
        est.hyp_lat_deg, est.hyp_lon_deg = np.asarray(hlat, np.float64), np.asarray(hlon, np.float64)
        est.hyp_weight, est.hyp_cov_enu_m2 = weight.numpy(), hcov
    return est


