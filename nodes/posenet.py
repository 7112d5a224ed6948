"""The PoseNet node: ``camera/image`` in, ``posenet/fix`` out (lat, lon, heading, ENU covariance, model id).

Runs the checkpoint named by ``model`` (a file or a registered weights name; empty: the default checkpoint
for the default synthetic city) on CUDA in fp16 with channels_last when present, on CPU in fp32
otherwise. With ``delivery = "every"`` (lock-step, or a recording) frames that queued up while the model
was busy are taken together, up to ``max_batch`` in one forward pass, so a slow model catches up
instead of falling further behind; with ``"latest"`` (live) it always works on the newest frame.

Each fix carries the top-``hypotheses`` modes of the model's anchor mixture (``GeoFix.hypotheses``,
best first: position, weight = probability it is the right one, covariance if it is, heading; calibrated
on validation drives, `perception.models.posenet.predictor`); the top-level fields are the best one.

Input geometry: a frame of another size is resized; one of another aspect (16:9 against the model's
4:3) is first centre-cropped to the model's aspect, never stretched (counted as ``cropped``). When the
frame's intrinsics say the cropped view's horizontal field of view differs from the model's camera by
more than 10 %, the node says so once in its log (the fix is kept: a field-of-view change is a zoom the
model was not trained for, which its validity check judges).

A frame the fix should not be trusted for (black, over-exposed, frozen, extreme aspect, out of the
model's area: `perception.models.posenet.validity`) still gets its fix, with ``valid=False`` and the
reasons in ``reason``; diagnostics count them (``flagged:<reason>``).

A bad frame is an answer, not a crash: one whose layout is not an image (4 channels, float pixels, wrong byte count) or whose JPEG does not
decode is rejected and counted in diagnostics (``reject:camera/image``, alone or in a batch, where the
other frames still get their fixes; should the batch's
forward pass itself fail, the runtime hands the frames over again one by one).

    python -m nodes.posenet --param model=runs/posenet/model.pt --param device=cpu
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

import msgspec
import numpy as np

from nodes.bus.messages import FixHypothesis, GeoFix, Header, Image
from nodes.camera_model import CameraModelNode, CameraModelParams
from nodes.runtime import node_main
from perception.drives.topics import POSENET_TOPIC

log = logging.getLogger("streetloc.posenet")


class PoseNetParams(CameraModelParams, kw_only=True, forbid_unknown_fields=True):
    """The camera-model parameters (`nodes.camera_model`) and PoseNet's own."""

    min_heading_std_deg: Annotated[float, msgspec.Meta(
        ge=0, description="floor of the published heading std, deg")] = 0.5
    hypotheses: Annotated[int, msgspec.Meta(
        ge=0, le=32, description="top hypotheses (modes of the anchor mixture) per fix; 0: none")] = 5


class PoseNetNode(CameraModelNode):
    """Localizes each camera frame with PoseNet and publishes a GeoFix with the learned covariance."""

    name = "posenet"
    Params = PoseNetParams
    publishes = (POSENET_TOPIC,)
    what_out = "fixes"

    def __init__(self, params: PoseNetParams | None = None) -> None:
        super().__init__(params)
        from perception.models.posenet.validity import FrameValidity

        self.validity = FrameValidity(self.predictor)  # black/frozen/... and out-of-area; state of this stream
        self.resized = 0
        self.cropped = 0
        self._fov_warned = False

    def load_predictor(self, params: Any) -> Any:
        from perception.models import PosePredictor

        return PosePredictor(params.model or None, device=params.device, half=params.fp16,
                             max_batch=params.max_batch, hypotheses=params.hypotheses)

    # ------------------------------------------------------------------------------------ frames

    def image_bgr(self, msg: Image) -> np.ndarray:
        """The frame as uint8 BGR [H, W, 3]; ValueError naming what is wrong when it is not an image."""
        return msg.to_bgr()  # the one decode path of the project (perception.drives.messages.Image)

    def _prepare(self, msg: Image) -> np.ndarray:
        image = self.image_bgr(msg)
        if image.shape[0] == 0 or image.shape[1] == 0:  # OpenCV's resize would raise cv2.error on it
            raise ValueError(f"frame stamp_ns={msg.header.stamp_ns}: {image.shape[1]}x{image.shape[0]} px "
                             "has no pixels")
        if (image.shape[1], image.shape[0]) != (msg.width_px, msg.height_px):
            log.debug("frame says %dx%d but holds %dx%d", msg.width_px, msg.height_px, image.shape[1], image.shape[0])
        w, h = image.shape[1], image.shape[0]
        if (w, h) != self.predictor.input_size_px:
            self.resized += 1
            from perception.models.posenet.predictor import ASPECT_TOLERANCE

            iw, ih = self.predictor.input_size_px
            if h and abs(w / h - iw / ih) > ASPECT_TOLERANCE * iw / ih:
                self.cropped += 1
                self._check_fov(msg, w, h)
        return self.predictor.prepare_bgr(image)

    def _check_fov(self, msg: Image, width_px: int, height_px: int) -> None:
        """Log once when the cropped view's field of view is not the model's camera's (intrinsics known)."""
        from perception.models.posenet.predictor import cropped_hfov_deg

        cam = msg.intrinsics
        model_hfov = self.predictor.camera_hfov_deg
        if self._fov_warned or cam is None or model_hfov is None or cam.width_px != width_px:
            return
        hfov = cropped_hfov_deg(width_px, height_px, cam.fx_px, self.predictor.input_size_px)
        if abs(hfov - model_hfov) > 0.1 * model_hfov:
            self._fov_warned = True
            log.warning("frames of %dx%d centre-cropped to the model's aspect see %.0f deg across, the model's "
                        "camera %.0f deg: fixes may be off (a zoom it was not trained for)",
                        width_px, height_px, hfov, model_hfov)

    def _infer(self, msgs: list[Image], prepared: list[np.ndarray]) -> list[tuple[str, GeoFix]]:
        import torch

        batch = np.stack(prepared)
        est = self.predictor.predict(torch.from_numpy(batch))
        flags = self.validity.assess(batch, [(m.width_px, m.height_px) for m in msgs],
                                     [m.header.stamp_ns for m in msgs], est)
        self._errors += [(f"flagged:{r}", f"frame {m.header.stamp_ns}")
                         for m, f in zip(msgs, flags, strict=True) for r in f]
        floor = self.params.min_heading_std_deg
        out = []
        for i, msg in enumerate(msgs):
            cov = est.cov_enu_m2[i]
            finite = bool(np.all(np.isfinite(cov)) and np.isfinite(est.lat_deg[i]) and np.isfinite(est.lon_deg[i]))
            # a non-finite estimate travels as NaN (unknown) with valid=False: +-inf is outside the bounds
            # of a GeoFix and would be rejected at decode, leaving the frame unanswered
            lat, lon = (float(est.lat_deg[i]), float(est.lon_deg[i])) if finite else (math.nan, math.nan)
            if not finite:
                cov = np.full((2, 2), math.nan)
            fix = GeoFix(
                header=Header(stamp_ns=msg.header.stamp_ns, frame_id="posenet", trace=list(msg.header.trace)),
                lat_deg=lat, lon_deg=lon,
                heading_deg=float(est.heading_deg[i]),
                cov_enu_m2=(float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 0]), float(cov[1, 1])),
                heading_std_deg=float(max(floor, est.heading_std_deg[i])),
                source=self.model_id, valid=finite and not flags[i],
                reason=",".join(flags[i] + ([] if finite else ["non_finite"])),
                hypotheses=self._hypotheses(est, i, floor),
            )
            out.append((POSENET_TOPIC, fix))
        return out

    @staticmethod
    def _hypotheses(est, i: int, heading_floor_deg: float) -> list[FixHypothesis]:
        """Frame ``i``'s hypotheses as records (absent ones and non-finite ones left out)."""
        if est.hyp_weight is None:
            return []
        heading = float(est.heading_deg[i])
        heading_std = float(max(heading_floor_deg, est.heading_std_deg[i]))
        out = []
        for j in range(est.hyp_weight.shape[1]):
            c = est.hyp_cov_enu_m2[i, j]
            lat, lon = float(est.hyp_lat_deg[i, j]), float(est.hyp_lon_deg[i, j])
            if not (np.isfinite(lat) and np.isfinite(lon) and np.all(np.isfinite(c))):
                continue
            h, h_std = heading, heading_std  # the regression has one heading per image: every mode shares it
            if est.hyp_heading_deg is not None and np.isfinite(est.hyp_heading_deg[i, j]):  # place hypotheses
                h = float(est.hyp_heading_deg[i, j])
                h_std = float(max(heading_floor_deg, est.hyp_heading_std_deg[i, j]))
            out.append(FixHypothesis(lat_deg=lat, lon_deg=lon, weight=float(est.hyp_weight[i, j]),
                                     cov_enu_m2=(float(c[0, 0]), float(c[0, 1]), float(c[1, 0]), float(c[1, 1])),
                                     heading_deg=h, heading_std_deg=h_std))
        return out

    def close_details(self) -> str:
        return f", {self.resized} resized ({self.cropped} cropped to the model's aspect)"


NODE = PoseNetNode

if __name__ == "__main__":
    raise SystemExit(node_main(PoseNetNode))
