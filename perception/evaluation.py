"""Scoring a model against drives' ground truth, the same way for every model (``streetloc evaluate``).

A model brings a `Scorer`: it scores one drive at a time into a partial result (PoseNet: per-frame
errors; a segmenter: a confusion matrix), merges partials, and summarizes them into flat figures.
`evaluate_drives` runs it over the drives and returns the report every model shares::

    {"model": "posenet", "model_id": "posenet-f09b1cf9", "checkpoint": "(default)",
     "drives": ["demo_city.mcap"], <the model's figures>, "images_per_s": 380.0, "device": "cpu",
     "per_drive": {drive: <figures>}}          # per_drive only with several drives

`record_metrics` stores a report's figures in the checkpoint's record (``meta.metrics["eval:<drives>"]``).
The PoseNet figures are in `perception.models.posenet.evaluation`.

Under torchrun (``streetloc evaluate ... --nproc N``) the drives are dealt out to the processes (about
equal bytes each, `perception.distributed.shard_by_cost`), each scores its own, and every process gathers
all `DriveScore` records and merges them in drive order: the report is the single-process one (figures
equal to float rounding; ``images_per_s`` is the rate of one process, and ``processes`` says how many
ran). A drive is never split: its frames are scored in order by one process (PoseNet's validity checks
follow the stream). So that nothing is lost, a scorer keeps nothing across drives inside `score_drive`:
what it accumulates besides the report goes into `DriveScore.kept` and its optional ``keep``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, Protocol, TypeVar

from msgspec import Meta

from perception.datasets import DriveSpec
from perception.distributed import (
    all_gather_objects,
    current_dist_info,
    env_rank,
    init_distributed,
    shard_by_cost,
    under_torchrun,
)
from perception.training import DEVICE_PATTERN, log, resolve_device

P = TypeVar("P")


@dataclass
class EvalConfig:
    """How a checkpoint is run over the drives: the keywords of every model's ``evaluate`` (their
    defaults are these) and the ``streetloc evaluate`` options of the same names (`nodes.params`)."""

    device: Annotated[str, Meta(
        pattern=DEVICE_PATTERN, description="auto (CUDA when present), cpu, cuda, cuda:N")] = "auto"
    batch_size: Annotated[int, Meta(ge=1, description="images per forward pass")] = 64
    cache_dir: Annotated[Path | None, Meta(
        description="folder caching decoded frames (as streetloc train's); none: no cache")] = None
    record: Annotated[bool, Meta(
        description="store the figures in the checkpoint's record (meta.metrics)")] = False


@dataclass
class DriveScore(Generic[P]):
    """One drive scored: the model's partial result, frames scored, seconds of inference, and figures
    that belong to the drive alone (its source, frames skipped)."""

    partial: P
    frames: int
    infer_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    # what the scorer accumulates across drives besides the report (PoseNet: the drive's condition and
    # validity counts), handed to its ``keep`` in drive order by every process once all drives are in
    kept: Any = None


class Scorer(Protocol[P]):
    """What a model brings to `evaluate_drives`."""

    model: str  # the registered model name
    model_id: str
    device: Any

    def score_drive(self, spec: DriveSpec) -> DriveScore[P]:
        """Score one drive. Keeps nothing in the scorer: under torchrun other processes score the other
        drives; what must be accumulated goes into ``DriveScore.kept`` (then ``keep``)."""
        ...

    def merge(self, partials: list[P]) -> P: ...

    def summarize(self, partial: P) -> dict[str, Any]:
        """Flat, JSON-ready figures (numbers; NaN where undefined)."""
        ...

    # optional: keep(spec: DriveSpec, score: DriveScore[P]) -> None, called for every drive in drive order
    # after all are scored (in every process), to accumulate ``score.kept``


def drive_cost(spec: DriveSpec) -> float:
    """The share of work of a drive, for dealing drives out to processes: its bytes over its frame step
    (a folder dataset: 1)."""
    step = spec.frames.step or 1
    return (spec.path.stat().st_size if spec.path.is_file() else 1.0) / step


def score_shards(scorer: Scorer[P], specs: Sequence[DriveSpec]) -> list[DriveScore[P]]:
    """Every drive's `DriveScore`, in drive order: all scored here in a single process; under torchrun
    this process scores its shard and gathers the others' (every process returns the whole list)."""
    info = current_dist_info()
    if not info.enabled:
        return [scorer.score_drive(spec) for spec in specs]
    shards = shard_by_cost([drive_cost(s) for s in specs], info.world_size)
    idle = sum(not s for s in shards)
    if idle:
        log(f"evaluate: {info.world_size} processes for {len(specs)} drive(s): {idle} idle (a drive is "
            "scored whole by one process)")
    mine = [(i, scorer.score_drive(specs[i])) for i in shards[info.rank]]
    return gather_scores(all_gather_objects(mine), len(specs))


def gather_scores(shards: Sequence[Sequence[tuple[int, DriveScore[P]]]], n_drives: int) -> list[DriveScore[P]]:
    """The (drive index, score) pairs of every process, put back in drive order. ValueError when a
    drive is missing or scored twice (the processes did not agree on the shards)."""
    by_index: dict[int, DriveScore[P]] = {}
    for shard in shards:
        for i, score in shard:
            if i in by_index:
                raise ValueError(f"evaluate: drive {i} was scored by two processes")
            by_index[i] = score
    missing = sorted(set(range(n_drives)) - set(by_index))
    if missing:
        raise ValueError(f"evaluate: drive(s) {missing} were scored by no process")
    return [by_index[i] for i in range(n_drives)]


def evaluate_drives(scorer: Scorer[P], drives: Sequence[DriveSpec | str | os.PathLike], *,
                    checkpoint: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score every drive with ``scorer``; the report described in the module docstring.

    A "drive" is whatever the scorer reads (a drive file, ``PATH@START:STOP:STEP``; a dataset folder
    for a model that reads one): only its existence is checked here.
    """
    specs = [d if isinstance(d, DriveSpec) else DriveSpec.parse(d) for d in drives]
    if not specs:
        raise ValueError("no drives given")
    for spec in specs:
        if not spec.path.exists():
            raise FileNotFoundError(f"drive {spec.path}: no such file")
    if under_torchrun():  # a library caller under torchrun: join the others (a no-op once joined)
        init_distributed(resolve_device(str(scorer.device)))
    scores = score_shards(scorer, specs)
    keep = getattr(scorer, "keep", None)
    if keep is not None:
        for spec, score in zip(specs, scores, strict=True):
            keep(spec, score)
    infer_s = sum(s.infer_s for s in scores)
    frames = sum(s.frames for s in scores)
    result: dict[str, Any] = {
        "model": scorer.model, "model_id": scorer.model_id,
        "checkpoint": str(checkpoint) if checkpoint else "(default)", "drives": [str(s) for s in specs],
        **scorer.summarize(scorer.merge([s.partial for s in scores])),
        "images_per_s": frames / infer_s if infer_s > 0 else float("nan"), "device": str(scorer.device)}
    skipped: dict[str, int] = {}  # frames not scored, per reason (no truth at their time, corrupt), all drives
    for score in scores:
        for reason, n in (score.extra.get("skipped") or {}).items():
            skipped[reason] = skipped.get(reason, 0) + n
    if skipped:
        result["skipped"] = skipped
    world = current_dist_info().world_size
    if world > 1:
        result["processes"] = world
    if len(specs) > 1:
        result["per_drive"] = {str(spec): {**scorer.summarize(s.partial), **s.extra}
                               for spec, s in zip(specs, scores, strict=True)}
    return result


def record_metrics(model: str, checkpoint: str | os.PathLike | None, result: dict[str, Any]) -> None:
    """Write ``result``'s numeric figures into the checkpoint file's ``meta.metrics["eval:<drives>"]``.

    ``checkpoint`` is a file, a registered weights name, or None (the model's default weights). Under
    torchrun only rank 0 writes (every process holds the same report).
    """
    if env_rank() != 0:
        return
    from perception.models._api import Checkpoint, default_weights, get_weights

    if checkpoint is None:
        path = default_weights(model).path
    elif not os.path.exists(str(checkpoint)):
        path = get_weights(str(checkpoint)).path
    else:
        path = checkpoint
    ckpt = Checkpoint.load(path)
    metrics = dict(ckpt.meta.get("metrics", {}))
    figures = {k: v for k, v in result.items() if isinstance(v, int | float)}
    metrics["eval:" + ",".join(os.path.basename(d) for d in result["drives"])] = figures
    ckpt.meta["metrics"] = metrics
    ckpt.save(path)
