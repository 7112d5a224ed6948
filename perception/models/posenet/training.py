"""Training PoseNet with the shared loop: its options, its `Task`, and how its data and anchors are set
up from drives (``streetloc train posenet``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import torch
from torch import nn

from localization.geodesy import GeoOrigin, LocalFrame
from perception.datasets import block_split
from perception.models._api import Checkpoint, utc_now
from perception.models.posenet.anchors import fit_anchors
from perception.models.posenet.data import PoseDataset, load_pose_frames
from perception.models.posenet.evaluation import calibrate_scales, pose_errors, summarize_pose_errors
from perception.models.posenet.loss import pose_nll
from perception.models.posenet.network import (
    DEFAULT_ANCHORS,
    DEFAULT_BACKBONE,
    DEFAULT_INPUT_SIZE_PX,
    posenet,
)
from perception.models.posenet.predictor import enu_crs, raw_to_estimates
from perception.training import DataConfig, TrainConfig, TrainSetup, log
from perception.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    normalize,
    normalize01,
    photometric_augment,
)


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PoseNet's own training options (``streetloc train posenet --backbone ... --no-augment``).

    ``extra`` of a field's Meta: ``metavar`` and ``low``/``high`` (bounds of each number of a pair).
    """

    backbone: Annotated[Literal["mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet34"], msgspec.Meta(
        description="torchvision backbone, trained from scratch")] = DEFAULT_BACKBONE
    input_size: Annotated[tuple[int, int], msgspec.Meta(
        description="model input in pixels", extra={"metavar": "WxH", "low": 16, "high": 4096})] = DEFAULT_INPUT_SIZE_PX
    hidden: Annotated[int, msgspec.Meta(ge=1, description="width of the head's hidden layer")] = 256
    dropout: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0, description="dropout in the head")] = 0.2
    beta: Annotated[float, msgspec.Meta(
        ge=0.0, description="beta-NLL weighting (0: plain Gaussian/von Mises NLL)")] = 0.5
    pool_grid: Annotated[tuple[int, int], msgspec.Meta(
        description="grid the features are pooled to before the head",
        extra={"metavar": "ROWSxCOLS", "low": 1, "high": 16})] = (3, 4)
    anchors: Annotated[int, msgspec.Meta(
        ge=1, description="anchor points (k-means of the training positions)")] = DEFAULT_ANCHORS
    augment: Annotated[bool, msgspec.Meta(description="photometric augmentation")] = True
    init: Annotated[str | None, msgspec.Meta(
        description="fine-tune: start from this checkpoint (file or weights name) and keep its architecture, "
        "input size, local frame and anchors (the options of those are ignored); none: from scratch",
        extra={"metavar": "CKPT"})] = None


class PoseNetTask:
    """PoseNet for `perception.training.fit`."""

    name = "posenet"
    monitor = "position_error_m_median"
    summary_keys = ("position_error_m_median", "position_error_m_p95", "heading_error_deg_median",
                    "within_95_ellipse", "position_cov_scale")

    def __init__(self, *, arch: Mapping[str, Any], input_size_px: tuple[int, int], frame: LocalFrame,
                 center_enu_m: tuple[float, float], scale_m: float, anchors: np.ndarray, anchor_spacing: float,
                 trained_on: list[dict], augment: AugmentConfig | None = None, beta: float = 0.5) -> None:
        self.arch = {**dict(arch), "num_anchors": int(len(anchors))}
        self.anchors = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
        self.anchor_spacing = float(anchor_spacing)
        self.input_size_px = (int(input_size_px[0]), int(input_size_px[1]))
        self.frame = frame
        self.center_enu_m = (float(center_enu_m[0]), float(center_enu_m[1]))
        self.scale_m = float(scale_m)
        self.trained_on = trained_on
        self.augment_cfg = augment
        self.beta = beta
        self.mean = torch.tensor(IMAGENET_MEAN)
        self.std = torch.tensor(IMAGENET_STD)
        self.calibration = {"position_cov_scale": 1.0, "heading_var_scale": 1.0}
        self.initial_state: dict[str, torch.Tensor] | None = None  # fine-tuning: the starting weights
        self.init_from: dict[str, str] | None = None  # fine-tuning: which checkpoint

    def state(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_size_px": list(self.input_size_px),
                "geo_origin": self.frame.origin.to_dict(), "center_enu_m": list(self.center_enu_m),
                "scale_m": self.scale_m}

    def build_model(self) -> nn.Module:
        model = posenet(**self.arch)
        model.set_anchors(self.anchors, self.anchor_spacing)
        if self.initial_state is not None:
            model.load_state_dict(self.initial_state)
        return model

    def augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.augment_cfg is None:
            return self.prepare(batch)
        x = photometric_augment(batch["image"], self.augment_cfg, generator)
        return {**batch, "image": normalize01(x, self.mean, self.std)}

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**batch, "image": normalize(batch["image"], self.mean, self.std)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raw = model(batch["image"])
        net = model.module if hasattr(model, "module") else model  # DDP wraps the model
        return pose_nll(raw, batch["position"], batch["heading_rad"], batch["heading_valid"], net.anchors,
                        net.offset_scale, beta=self.beta)

    @torch.inference_mode()
    def _predict(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raws, truth = [], {"position": [], "heading_rad": [], "heading_valid": []}
        for batch in loader:
            batch = self.prepare({k: v.to(device) for k, v in batch.items()})
            raws.append(model(batch["image"]).float().cpu())
            for k in truth:
                truth[k].append(batch[k].cpu())
        return torch.cat(raws), {k: torch.cat(v) for k, v in truth.items()}

    def validate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict[str, float]:
        """Errors in metres/degrees on the validation frames, ellipse coverage before calibration, and
        the calibration (covariance inflation) that makes the 95% ellipse hold 95% of them."""
        raw, truth = self._predict(model, loader, device)
        est = raw_to_estimates(raw, model.anchors, model.offset_scale, frame=self.frame,
                               center_enu_m=self.center_enu_m, scale_m=self.scale_m)
        pos = truth["position"].double().numpy()
        east = self.center_enu_m[0] + self.scale_m * pos[:, 0]
        north = self.center_enu_m[1] + self.scale_m * pos[:, 1]
        heading = np.where(truth["heading_valid"].numpy(), np.degrees(truth["heading_rad"].double().numpy()), np.nan)
        errors = pose_errors(est, east, north, heading)
        self.calibration = calibrate_scales(errors)
        summary = summarize_pose_errors(errors)
        flat = {k: v for k, v in summary.items() if isinstance(v, int | float)}
        flat.update(self.calibration)
        return flat

    def export(self, model: nn.Module, metrics: Mapping[str, float], config: TrainConfig, path: Path) -> None:
        recipe = {k: v for k, v in config.to_dict().items() if k not in ("out_dir", "resume", "progress")}
        recipe["beta"] = self.beta
        recipe["init"] = self.init_from
        recipe["augment"] = None if self.augment_cfg is None else self.augment_cfg.__dict__
        ckpt = Checkpoint(model="posenet", arch=self.arch, state_dict=model.state_dict(), meta={
            "input_size_px": list(self.input_size_px),
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channel_order": "rgb",
                              "resize": "stretch the whole frame to input_size_px (INTER_AREA)"},
            "geo_origin": self.frame.origin.to_dict(),
            "crs": enu_crs(self.frame.origin),
            "center_enu_m": list(self.center_enu_m), "scale_m": self.scale_m,
            "calibration": dict(self.calibration),
            "trained_on": self.trained_on, "recipe": recipe,
            "metrics": {"val": {k: float(v) for k, v in metrics.items()}},
            "created_utc": utc_now(),
        })
        ckpt.save(path)




def make_task(options: Options, data: DataConfig, *, resume_state: Mapping[str, Any] | None = None) -> TrainSetup:
    """The PoseNet task and its datasets from the drives of ``data``.

    ``resume_state`` (`perception.training.saved_task_state`) is the task state of the run being resumed:
    it keeps its local frame and target normalization, whatever the data now says.
    """
    size = (int(options.input_size[0]), int(options.input_size[1]))
    frame = None
    center = scale = None
    init = _initial_checkpoint(options.init) if options.init else None
    if init is not None:  # fine-tuning keeps what the weights mean: input, frame, normalization, anchors
        size = tuple(int(v) for v in init.meta["input_size_px"])
        frame = LocalFrame(GeoOrigin.from_dict(init.meta["geo_origin"]))
        center, scale = tuple(init.meta["center_enu_m"]), float(init.meta["scale_m"])
        log(f"fine-tuning {options.init} ({init.model_id}): {init.arch}, {size[0]}x{size[1]}")
    if resume_state and "geo_origin" in resume_state:
        frame = LocalFrame(GeoOrigin.from_dict(resume_state["geo_origin"]))
        center, scale = tuple(resume_state["center_enu_m"]), float(resume_state["scale_m"])

    def progress(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            log(f"  decoded {done}/{total} frames")

    log(f"reading {len(data.drives)} training drive(s) at {size[0]}x{size[1]}")
    frames = load_pose_frames(data.drives, size_px=size, frame=frame, cache_dir=data.cache_dir, progress=progress)
    if data.val_drives:
        train_frames = frames
        val_frames = load_pose_frames(data.val_drives, size_px=size, frame=frames.frame, cache_dir=data.cache_dir)
    else:
        train_idx, val_idx = block_split(len(frames), val_fraction=data.val_fraction, seed=data.seed)
        train_frames, val_frames = frames.subset(train_idx), frames.subset(val_idx)
    if center is None:
        center = (float(np.mean(train_frames.east_m)), float(np.mean(train_frames.north_m)))
        extent = max(np.abs(train_frames.east_m - center[0]).max(), np.abs(train_frames.north_m - center[1]).max())
        scale = float(max(extent, 1.0))
    log(f"{len(train_frames)} training frames, {len(val_frames)} validation frames; "
        f"area {2 * scale:.0f} m across; skipped {frames.skipped or 'none'}")
    train_norm = np.stack([train_frames.east_m - center[0], train_frames.north_m - center[1]], 1) / scale
    if init is not None:
        state = {k: v.float() for k, v in init.state_dict.items()}
        anchors, spacing = state["anchors"].numpy(), float(state["offset_scale"])
        arch = {k: v for k, v in init.arch.items() if k != "num_anchors"}
    else:
        anchors, spacing = fit_anchors(train_norm, min(options.anchors, len(train_frames)), seed=data.seed)
        arch = {"backbone": options.backbone, "hidden": options.hidden, "dropout": options.dropout,
                "pool_grid": list(options.pool_grid)}
    log(f"{len(anchors)} anchors, {spacing * scale:.1f} m apart")
    task = PoseNetTask(
        arch=arch, input_size_px=size,
        frame=frames.frame, center_enu_m=center, scale_m=scale, anchors=anchors, anchor_spacing=spacing,
        trained_on=frames.drives, augment=AugmentConfig() if options.augment else None, beta=options.beta)
    if init is not None:
        task.initial_state = state
        task.init_from = {"model_id": init.model_id, "source": str(options.init)}
    train_set = PoseDataset(train_frames, center_enu_m=center, scale_m=scale)
    val_set = PoseDataset(val_frames, center_enu_m=center, scale_m=scale) if len(val_frames) else None
    return TrainSetup(task, train_set, val_set)


def _initial_checkpoint(name_or_path: str) -> Checkpoint:
    """The checkpoint fine-tuning starts from: a file, or a registered weights name."""
    from perception.models._api import get_weights

    if Path(name_or_path).is_file():
        ckpt = Checkpoint.load(name_or_path)
    else:
        ckpt = get_weights(name_or_path).load()
    if ckpt.model != "posenet":
        raise ValueError(f"--init {name_or_path}: a {ckpt.model} checkpoint, not posenet")
    return ckpt
