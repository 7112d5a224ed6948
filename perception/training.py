"""The training loop every streetloc model shares (PoseNet, the segmenter; the detector next).

A model plugs in as a `Task`: it builds its network, turns a batch into a loss, augments a batch on the
device, validates, and exports a deployable checkpoint. `fit` does the rest, once for all models:

- deterministic with a seed: the data order of epoch ``e`` is torch's `DistributedSampler` permutation
  seeded by ``seed + e`` and augmentation draws from a generator seeded the same way, so ``--resume``
  continues exactly where the interrupted run would have gone;
- AdamW, linear warm-up then cosine decay (torch's `LinearLR` then `CosineAnnealingLR`), gradient clipping;
- mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler) and channels_last;
- validation every epoch, the best model exported (``model.pt``) and the full training state saved
  (``train_state.pt``: weights, optimizer, scheduler, scaler, epoch, history) for ``--resume``;
- several processes with DDP when started by ``torchrun`` (`perception.distributed`; one process per
  GPU with NCCL, or CPU processes with gloo): each trains on its `DistributedSampler` shard,
  ``--batch-size`` is per process, batch norm is synchronised across GPUs, rank 0 validates and writes
  while the others wait; the checkpoint is the one a single process writes (docs/distributed.md);
- a tqdm progress bar with loss, throughput and ETA (stderr; a line per quarter epoch when not a terminal).

A model's training module (named by its registry entry, e.g. `perception.models.posenet.training`)
offers ``Options`` (a msgspec Struct of its own options; the command layer makes them flags) and
``make_task(options, data: DataConfig, *, resume_state) -> TrainSetup``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Protocol

import numpy as np
import torch
from msgspec import Meta
from torch import nn
from tqdm import tqdm

from perception.distributed import (  # noqa: F401 - DistInfo, init_distributed: imported from here before
    DistInfo,
    broadcast_object,
    current_dist_info,
    env_rank,
    init_distributed,
    mean_across,
    shutdown_distributed,
)

STATE_FILE = "train_state.pt"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.jsonl"


# A field's type, default, bounds and meaning are declared once here: the ``streetloc train`` options (the
# command layer derives them with `nodes.params`), their help and their checks all come from it.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


@dataclass
class TrainConfig:
    """Options of `fit` (the ``streetloc train`` options of the same names)."""

    out_dir: Annotated[Path, Meta(
        description="output directory: model.pt, train_state.pt, history.jsonl")]
    epochs: Annotated[int, Meta(ge=1, description="passes over the training frames")] = 30
    batch_size: Annotated[int, Meta(ge=1, description="frames per optimizer step, per process under DDP")] = 32
    lr: Annotated[float, Meta(gt=0, description="peak learning rate of AdamW (after the warm-up)")] = 2e-3
    weight_decay: Annotated[float, Meta(ge=0, description="AdamW weight decay")] = 1e-4
    warmup_epochs: Annotated[float, Meta(ge=0, description="linear learning-rate warm-up, epochs")] = 1.0
    min_lr_ratio: Annotated[float, Meta(
        ge=0, le=1, description="the cosine decay ends at lr * this ratio")] = 0.02
    grad_clip_norm: Annotated[float, Meta(gt=0, description="gradient norm clipped to this (L2)")] = 5.0
    seed: Annotated[int, Meta(
        ge=0, description="seed of everything random: data order, augmentation, validation split")] = 0
    device: Annotated[str, Meta(
        pattern=DEVICE_PATTERN, description="auto (CUDA when present), cpu, cuda, cuda:N")] = "auto"
    amp: Annotated[bool, Meta(description="mixed precision (bf16, else fp16); CUDA only")] = True
    channels_last: Annotated[bool, Meta(description="channels-last memory format; CUDA only")] = True
    num_workers: Annotated[int, Meta(
        ge=0, description="DataLoader worker processes (0: in-process; in-memory datasets need none)")] = 0
    threads: Annotated[Annotated[int, Meta(ge=1)] | None, Meta(
        description="CPU threads for torch; none: torch's default")] = None
    resume: Annotated[bool, Meta(description="continue the run in out_dir from its last epoch")] = False
    progress: Annotated[bool, Meta(description="progress bar on stderr (else epoch lines only)")] = True
    deterministic: Annotated[bool, Meta(description="deterministic torch algorithms (reproducible runs)")] = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


@dataclass
class DataConfig:
    """Which frames train and validate a model (the ``streetloc train`` options of the same names)."""

    drives: Annotated[Sequence[str], Meta(
        min_length=1, description="training drives; DRIVE@START:STOP:STEP takes a slice of the frames "
        "(lund.mcap@0::2)")]
    val_drives: Annotated[Sequence[str], Meta(
        description="validation drives; empty: hold out val_fraction of the training frames")] = ()
    val_fraction: Annotated[float, Meta(
        ge=0, lt=1, description="share of the training frames held out for validation, in 4 s blocks "
        "(when no validation drives)")] = 0.1
    seed: Annotated[int, Meta(ge=0, description="seed of the validation split")] = 0
    cache_dir: Annotated[Path | None, Meta(
        description="folder caching decoded, resized frames (a second run skips JPEG decoding); none: no cache")] = None


class Task(Protocol):
    """What a model brings to the shared loop. Batches are dicts whose ``image`` is a tensor [B, ...];
    other values may be tensors or lists of tensors (moved to the device alike). Optional attributes:
    ``monitor_mode`` (below), ``collate(samples) -> batch`` (the DataLoader's; default: torch's
    default collate, which stacks; a detector's ragged boxes need their own) and
    ``ddp_find_unused_parameters`` (True when some parameters get no gradient in some steps; DDP only).
    Under torchrun ``loss`` gets the DDP-wrapped model (its ``.module`` is the network), ``validate``
    and ``export`` the bare one on rank 0 (docs/distributed.md)."""

    name: str
    monitor: str  # the validation figure that picks the best epoch
    # monitor_mode: "min" (default: errors, losses) or "max" (mIoU, mAP); an optional attribute
    summary_keys: tuple[str, ...]  # validation figures shown on the epoch line (all go to history.jsonl)

    def build_model(self) -> nn.Module: ...

    def augment(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Training-time augmentation of a batch already on the device (and normalization)."""
        ...

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Evaluation-time preparation (normalization only)."""
        ...

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar loss to minimise, figures to show) for a prepared batch."""
        ...

    def validate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict[str, float]:
        ...

    def export(self, model: nn.Module, metrics: Mapping[str, float], config: TrainConfig, path: Path) -> None:
        """Write the deployable checkpoint of ``model`` (its record carries ``metrics``)."""
        ...

    def state(self) -> dict[str, Any]:
        """Task settings that must survive a resume (target normalization...)."""
        ...


class TrainSetup(NamedTuple):
    """What a model's ``make_task`` returns: the task and its training and validation sets."""

    task: Task
    train_set: torch.utils.data.Dataset
    val_set: torch.utils.data.Dataset | None


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    model_path: Path | None = None
    wall_s: float = 0.0


# ---------------------------------------------------------------------------------------------- helpers


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> the local CUDA device when present (LOCAL_RANK under torchrun), else CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine (use auto or cpu)")
    return device


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible GEMMs; harmless on CPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def to_device(value: Any, device: torch.device) -> Any:
    """A tensor, or a list/tuple/dict of them (a detector's boxes per image), on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, list | tuple):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def saved_task_state(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The task state (`Task.state`) of the run saved in ``out_dir``, None when there is none: a model's
    ``make_task`` keeps what must not change on ``--resume`` (PoseNet: its frame and normalization).
    Under torchrun (process group made) rank 0 reads it and hands it to the others, whose machines may
    not hold ``out_dir``."""
    state = None
    if env_rank() == 0 or not current_dist_info().enabled:
        path = Path(out_dir) / STATE_FILE
        if path.is_file():
            state = dict(torch.load(path, map_location="cpu", weights_only=True).get("task_state", {}))
    return broadcast_object(state)


def lr_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                 min_lr_ratio: float) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at
    ``total_steps`` (stepped once per optimizer step)."""
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=base_lr * min_lr_ratio)
    if warmup_steps <= 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0,
                                               total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def progress_bar(total: int, *, desc: str, enabled: bool = True, stream: Any = None) -> tqdm:
    """A tqdm bar on stderr: redrawn on a terminal; elsewhere (logs, CI) a line per quarter, so a log
    file stays short."""
    stream = stream or sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    extra = {} if tty else {"miniters": max(1, total // 4), "mininterval": 0.0, "ascii": True}
    return tqdm(total=total, desc=desc, disable=not enabled, file=stream, unit="step", dynamic_ncols=tty,
                leave=True, **extra)


def _fmt_duration(seconds: float) -> str:
    """Seconds as ``mm:ss`` or ``h:mm:ss``."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def log(msg: str, *, enabled: bool = True) -> None:
    """A line on stderr; from rank 0 only under torchrun (N copies of every line would say nothing more)."""
    if enabled and env_rank() == 0:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the loop


def fit(task: Task, train_set: torch.utils.data.Dataset, val_set: torch.utils.data.Dataset | None,
        config: TrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``task``'s model on ``train_set``, validating on ``val_set`` every epoch.

    Writes into ``config.out_dir``: ``train_state.pt`` (after every epoch), ``model.pt`` (the best epoch
    by ``task.monitor``, or the last when there is no validation set) and ``history.jsonl``.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    dist_info = init_distributed(device)  # torchrun: join the group (gloo on CPU, NCCL on CUDA)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=config.deterministic)
    main = dist_info.is_main
    out_dir = Path(config.out_dir)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)

    model = task.build_model().to(device)  # the same on every process (same seed; DDP copies rank 0's too)
    if dist_info.rank > 0:
        # from here each process its own random stream (dropout masks); rank 0 keeps a single process' one
        torch.manual_seed(config.seed * 1000003 + dist_info.rank * 1_000_000_007)
    cuda = device.type == "cuda"
    if cuda and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist_info.enabled and cuda:
        # batch statistics over every GPU's batch; torch's SyncBatchNorm runs on GPUs only: on CPU each
        # process normalizes with its own batch and DDP hands rank 0's running statistics to all
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # num_replicas/rank given: works without a process group (one process) and under torchrun alike
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                                  shuffle=True, seed=config.seed)
    collate = getattr(task, "collate", None)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers, collate_fn=collate,
        drop_last=len(sampler) > config.batch_size, pin_memory=cuda, persistent_workers=config.num_workers > 0)
    steps_per_epoch = max(1, len(loader))
    total_steps = steps_per_epoch * config.epochs
    scheduler = lr_scheduler(optimizer, total_steps=total_steps,
                             warmup_steps=int(config.warmup_epochs * steps_per_epoch), min_lr_ratio=config.min_lr_ratio)
    amp_dtype = None
    if cuda and config.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)

    start_epoch, history = 0, []
    best_value, best_epoch, best_metrics = math.inf, -1, {}
    state_path = out_dir / STATE_FILE
    if config.resume:
        # rank 0 reads the state and hands it to the others (their machines may not hold out_dir)
        state = None
        if main:
            state = (torch.load(state_path, map_location="cpu", weights_only=True) if state_path.is_file()
                     else None)
        state = broadcast_object(state)
        if state is None:
            raise FileNotFoundError(f"--resume: {state_path} does not exist (nothing to resume in {out_dir})")
        saved_batch = int(state.get("config", {}).get("batch_size", config.batch_size))
        saved_world = int(state.get("world_size", 1))
        if saved_batch * saved_world != config.batch_size * dist_info.world_size:
            # another effective batch is another number of steps per epoch: the saved schedule and data
            # order would not line up
            raise ValueError(f"--resume: {state_path} was trained with {saved_world} process(es) x --batch-size "
                             f"{saved_batch}; resume with the same product (now {dist_info.world_size} x "
                             f"{config.batch_size})")
        if state.get("task") != task.name:
            raise ValueError(f"--resume: {state_path} is a {state.get('task')!r} run, not {task.name!r}")
        if state.get("task_state") != _jsonable(task.state()):
            raise ValueError(f"--resume: {state_path} was trained with other data settings "
                             f"({state.get('task_state')}); start a new --out directory")
        model.load_state_dict(state["model"])
        if set(state["scheduler"]) == set(scheduler.state_dict()):
            scheduler.load_state_dict(state["scheduler"])
        else:
            # a run saved before the schedule was torch's LinearLR + CosineAnnealingLR (a LambdaLR of
            # the same curve): walk the schedule to the saved step instead
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
                for _ in range(int(state["scheduler"].get("last_epoch", 0))):
                    scheduler.step()
        optimizer.load_state_dict(state["optimizer"])  # after the walk: the lr is the saved one
        scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        history = list(state.get("history", []))
        best_value = float(state.get("best_value", math.inf))
        best_epoch = int(state.get("best_epoch", -1))
        best_metrics = dict(state.get("best_metrics", {}))
        log(f"resuming {task.name} from {state_path} at epoch {start_epoch + 1}/{config.epochs}", enabled=main)

    ddp_model: nn.Module = model
    if dist_info.enabled:
        # DDP copies rank 0's weights to every process here, then averages the gradients of each step.
        # A task whose loss leaves some parameters without a gradient in some steps (a detector's box
        # head on images without boxes) says so with ``ddp_find_unused_parameters = True``.
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None,
            find_unused_parameters=bool(getattr(task, "ddp_find_unused_parameters", False)))

    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=max(64, config.batch_size), shuffle=False,
                                                 collate_fn=collate,
                                                 num_workers=config.num_workers, pin_memory=cuda)
    epoch_times: list[float] = []
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        sampler.set_epoch(epoch)
        # each process its own augmentation draws (the same draws on every shard would correlate them);
        # rank 0's are those of a single-process run
        aug_gen = torch.Generator(device=device).manual_seed(config.seed * 1000003 + epoch
                                                             + dist_info.rank * 1_000_000_007)
        ddp_model.train()
        remaining_s = (config.epochs - epoch - 1) * (float(np.mean(epoch_times)) if epoch_times else 0.0)
        bar = progress_bar(steps_per_epoch, desc=f"[{task.name} epoch {epoch + 1}/{config.epochs}]",
                           enabled=config.progress and main)
        running: dict[str, float] = {}
        seen = 0
        for step, batch in enumerate(loader):
            batch = {k: to_device(v, device) for k, v in batch.items()}
            batch = task.augment(batch, aug_gen)
            if cuda and config.channels_last and batch["image"].ndim == 4:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                        else contextlib.nullcontext())
            with autocast:
                loss, figures = task.loss(ddp_model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{task.name}: loss became {loss.item()} at epoch {epoch + 1} step "
                                         f"{step + 1}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += int(batch["image"].shape[0]) * dist_info.world_size
            figures = {"loss": float(loss.detach()), **figures}
            for k, v in figures.items():  # exponential running means: the bar shows a trend, not noise
                running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
            elapsed_s = max(1e-9, time.perf_counter() - t_epoch)
            left_s = (steps_per_epoch - step - 1) * elapsed_s / (step + 1) + remaining_s
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in running.items()}, "lr": f"{scheduler.get_last_lr()[0]:.3g}",
                             "img/s": f"{seen / elapsed_s:.0f}", "all": _fmt_duration(left_s)}, refresh=False)
            bar.update()
        bar.close()
        running = mean_across(running)  # the figures of every shard, not rank 0's alone
        record: dict[str, Any] = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in running.items()},
                                  "lr": scheduler.get_last_lr()[0]}
        metrics: dict[str, float] = {}
        if main and val_loader is not None:
            model.eval()
            metrics = task.validate(model, val_loader, device)
            record.update({f"val_{k}": v for k, v in metrics.items()})
        epoch_times.append(time.perf_counter() - t_epoch)
        record["epoch_s"] = epoch_times[-1]
        history.append(record)
        if main:
            sign = -1.0 if getattr(task, "monitor_mode", "min") == "max" else 1.0
            value = sign * metrics.get(task.monitor, sign * math.inf) if metrics else -float(epoch)  # no val: the last
            value = value if math.isfinite(value) else math.inf  # a NaN figure never beats a number
            improved = value <= best_value
            if improved:
                best_value, best_epoch, best_metrics = value, epoch + 1, dict(metrics)
                task.export(model, metrics, config, out_dir / MODEL_FILE)
            shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in task.summary_keys) or "-"
            log(f"[{task.name} epoch {epoch + 1}/{config.epochs}] {epoch_times[-1]:.0f}s val: {shown or '-'}"
                f"{'  (best, saved)' if improved else ''}")
            _save_state(state_path, task, model, optimizer, scheduler, scaler, epoch, history, best_value,
                        best_epoch, best_metrics, config, world_size=dist_info.world_size)
            with open(out_dir / HISTORY_FILE, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            if on_epoch is not None:
                on_epoch(record)
        if dist_info.enabled:
            # the others wait here while rank 0 validates and writes, then all hold rank 0's record
            history[-1], best_epoch, best_metrics = broadcast_object((record, best_epoch, best_metrics))
    shutdown_distributed()
    return FitResult(len(history), best_epoch, best_metrics, history,
                     out_dir / MODEL_FILE if main else None, time.perf_counter() - started)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _save_state(path: Path, task: Task, model: nn.Module, optimizer, scheduler, scaler, epoch: int,
                history: list, best_value: float, best_epoch: int, best_metrics: dict, config: TrainConfig,
                *, world_size: int = 1) -> None:
    state = {
        "task": task.name, "task_state": _jsonable(task.state()), "epoch": epoch,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "history": history, "best_value": best_value, "best_epoch": best_epoch,
        "best_metrics": best_metrics, "config": config.to_dict(), "world_size": world_size,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # an interrupted save never corrupts the state a --resume needs
