"""PoseNet inference: a checkpoint ready to localize images (preprocessing, batching, device and
precision), and the conversion of raw outputs to metres, lat/lon and calibrated covariances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from localization.geodesy import GeoOrigin, LocalFrame
from perception.models._api import Checkpoint, resolve_checkpoint
from perception.models.posenet.network import NUM_FIXED, decode, posenet
from perception.transforms import normalize, resize_to_input


@dataclass
class PoseEstimates:
    """Predictions for a batch of N images, in metres and degrees.

    Attributes:
        east_m, north_m: float64 [N] in the checkpoint's ENU frame.
        lat_deg, lon_deg: float64 [N] WGS84.
        cov_enu_m2: float64 [N, 2, 2] east/north covariance (calibrated).
        heading_deg: float64 [N] clockwise from north in [0, 360).
        heading_std_deg: float64 [N] 1-sigma (calibrated), at most 180.
    """

    east_m: np.ndarray
    north_m: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    cov_enu_m2: np.ndarray
    heading_deg: np.ndarray
    heading_std_deg: np.ndarray

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
                 half: bool | None = None, channels_last: bool | None = None, max_batch: int = 64) -> None:
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
        norm = meta["normalization"]
        self.mean = torch.tensor(norm["mean"], device=self.device)
        self.std = torch.tensor(norm["std"], device=self.device)
        model = posenet(weights=self.checkpoint).to(self.device)
        self.anchors = model.anchors.detach().float().cpu().clone()  # kept fp32 whatever the model runs in
        self.offset_scale = float(model.offset_scale)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.half() if self.half else model

    def prepare_bgr(self, image_bgr: np.ndarray) -> np.ndarray:
        """One BGR frame (any size, or mono) -> uint8 RGB [3, H, W] at the input size; ValueError when
        it is not an image."""
        return resize_to_input(image_bgr, self.input_size_px)

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
        """uint8 [N, 3, H, W] RGB at the input size -> `PoseEstimates`."""
        return self.estimates(self.predict_raw(images))

    def estimates(self, raw: torch.Tensor) -> PoseEstimates:
        return raw_to_estimates(raw, self.anchors, self.offset_scale, frame=self.frame,
                                center_enu_m=self.center_enu_m, scale_m=self.scale_m,
                                cov_scale=self.cov_scale, heading_var_scale=self.heading_var_scale)


def raw_to_estimates(raw: torch.Tensor, anchors: torch.Tensor, offset_scale: torch.Tensor | float, *,
                     frame: LocalFrame, center_enu_m: Sequence[float], scale_m: float, cov_scale: float = 1.0,
                     heading_var_scale: float = 1.0) -> PoseEstimates:
    """Raw outputs [N, NUM_FIXED + 3K] -> metres, degrees, lat/lon (see `PoseEstimates`)."""
    d = decode(raw, anchors.cpu(), float(offset_scale))
    pos = d.position.double().numpy()
    east = center_enu_m[0] + scale_m * pos[:, 0]
    north = center_enu_m[1] + scale_m * pos[:, 1]
    cov = d.covariance().double().numpy() * (scale_m**2) * cov_scale
    heading_var = np.exp(d.heading_log_var.double().numpy()) * heading_var_scale
    heading_std_deg = np.minimum(np.degrees(np.sqrt(heading_var)), 180.0)
    lat, lon, _ = frame.to_geodetic(east, north)
    return PoseEstimates(east, north, np.atleast_1d(lat), np.atleast_1d(lon), cov,
                         np.mod(np.degrees(d.heading_rad.double().numpy()), 360.0), heading_std_deg)


