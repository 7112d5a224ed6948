"""Running training and evaluation as several processes (``torchrun``), the pieces both share.

``torchrun --nproc-per-node=N`` (or ``streetloc train/evaluate ... --nproc N``, which starts it) runs N
copies of the same command; torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` in each. `init_distributed` joins them into one process group (NCCL between GPUs, gloo on
CPU); without those variables everything here is a no-op and a single process runs as before.

- Training (`perception.training.fit`): each process trains on its shard of every epoch (torch's
  `DistributedSampler`), DDP averages the gradients; rank 0 alone validates and writes, the others wait
  for it (`broadcast_object`) at the end of each epoch.
- Evaluation (`perception.evaluation.evaluate_drives`): the drives are dealt out by `shard_by_cost`, each
  process scores its own, and `all_gather_objects` hands every process all partial results, merged in
  drive order into the report one process would have written.

See docs/distributed.md for the commands (one machine, several machines).
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# How long a process waits at a collective for the others (rank 0 validating an epoch while the others
# wait is the longest wait): NCCL's default of 10 min is too short for a large validation set.
DEFAULT_TIMEOUT_S = 3600.0
TIMEOUT_ENV = "STREETLOC_DIST_TIMEOUT_S"

_owned = False  # whether init_distributed made the process group (then shutdown_distributed ends it)


@dataclass(frozen=True)
class DistInfo:
    """This process' place among those torchrun started (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index of this process on its machine: its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_rank() -> int:
    """This process' rank from torchrun's environment (0 when not under torchrun): valid before the
    process group is made, so that logs of every rank but 0 can be silenced from the start."""
    return int(os.environ.get("RANK", "0") or 0)


def under_torchrun() -> bool:
    """Whether torchrun (or another launcher setting WORLD_SIZE > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def current_dist_info() -> DistInfo:
    """The process group as it stands (one process when none is initialized)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def init_distributed(device: torch.device | str = "cpu") -> DistInfo:
    """Join the process group torchrun set up (env RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT);
    a no-op in a single process, and when the group already exists.

    Backend: NCCL when ``device`` is CUDA (each process then uses GPU ``LOCAL_RANK``: set here, so a
    plain ``"cuda"`` means this process' GPU), gloo otherwise. Collectives wait up to
    ``$STREETLOC_DIST_TIMEOUT_S`` (default 3600 s) for the slowest process.
    """
    global _owned
    if not under_torchrun():
        return DistInfo()
    device = torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)  # before NCCL's first collective: it works on the current GPU
    if not dist.is_initialized():
        timeout = dt.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)
        _owned = True
    return current_dist_info()


def shutdown_distributed() -> None:
    """End the process group if `init_distributed` made it (a caller's own group is left alone)."""
    global _owned
    if _owned and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every process (pickled; tensors keep their device type). Also the
    point where every process waits for ``src``: rank 0 writes, then broadcasts, the others go on."""
    if not current_dist_info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process' ``obj``, in rank order, on every process (``[obj]`` in a single process)."""
    info = current_dist_info()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_across(figures: dict[str, float]) -> dict[str, float]:
    """The mean over processes of each figure (every process passes the same keys)."""
    if not current_dist_info().enabled or not figures:
        return dict(figures)
    keys = sorted(figures)
    t = torch.tensor([float(figures[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t = (t / dist.get_world_size()).cpu()
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def shard_by_cost(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Deal items out to ``world_size`` processes so that their summed costs are close: the largest item
    first to the least loaded process (longest-processing-time rule; ties by the lower rank).

    Returns the item indices of each process, each list ascending. Every index is in exactly one list;
    processes beyond the number of items get none. Deterministic: every process computes the same
    assignment from the same costs.
    """
    if world_size < 1:
        raise ValueError(f"world_size {world_size}: must be at least 1")
    shards: list[list[int]] = [[] for _ in range(world_size)]
    load = [(0.0, rank) for rank in range(world_size)]  # a heap of (summed cost, rank)
    order = sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i))
    for i in order:
        total, rank = heapq.heappop(load)
        shards[rank].append(i)
        heapq.heappush(load, (total + float(costs[i]), rank))
    return [sorted(s) for s in shards]
