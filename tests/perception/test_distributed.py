"""Several processes, without starting any: how drives and frames are dealt out, and how the shards'
results come back together (the 2-process runs are in test_distributed_torchrun.py, slow)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import perception.evaluation as evaluation
from localization.metrics import merge_pose_errors, pose_errors, summarize_pose_errors
from nodes.commands.torchrun import strip_nproc, torchrun_argv
from perception.distributed import DistInfo, shard_by_cost
from perception.evaluation import DriveScore, evaluate_drives, gather_scores
from perception.training import resolve_device, saved_task_state

# ------------------------------------------------------------------------------------------ dealing out


def test_every_drive_goes_to_exactly_one_process_and_the_loads_are_close():
    costs = [9.0, 1.0, 4.0, 4.0, 3.0, 2.0, 8.0]
    shards = shard_by_cost(costs, 3)
    assert sorted(i for s in shards for i in s) == list(range(len(costs)))
    loads = [sum(costs[i] for i in s) for s in shards]
    assert max(loads) - min(loads) <= max(costs) / 2  # 11/10/10 here: no process gets the big ones together
    assert shards == shard_by_cost(costs, 3)  # every process computes the same deal


def test_more_processes_than_drives_leaves_some_idle_and_one_process_takes_all():
    assert shard_by_cost([5.0, 1.0], 4) == [[0], [1], [], []]
    assert shard_by_cost([5.0, 1.0, 2.0], 1) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="world_size"):
        shard_by_cost([1.0], 0)


@pytest.mark.parametrize("n", [64, 61])
def test_each_epoch_every_frame_is_trained_on_and_padding_only_repeats_a_few(n):
    """fit's DistributedSampler: the shards of an epoch cover all frames; padding (to equal shards, so
    that every process takes the same number of steps) repeats fewer frames than there are processes."""
    world = 4
    shards = [list(torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=3))
              for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for i in s]
    padding = len(seen) - n
    assert 0 <= padding < world
    assert sorted(set(seen)) == list(range(n))  # padding removed: each frame once


def test_n_processes_with_batch_b_take_the_frames_of_one_process_with_batch_nb():
    """Why weights do not depend on the process count: step k of N processes with --batch-size B sees
    the same frames as step k of one process with --batch-size N*B (the gradients are averaged)."""
    n, world, batch = 96, 2, 8
    one = list(torch.utils.data.DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=7))
    per_rank = [list(torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=7))
                for r in range(world)]
    for k in range(n // (world * batch)):
        together = sorted(i for s in per_rank for i in s[k * batch:(k + 1) * batch])
        assert together == sorted(one[k * world * batch:(k + 1) * world * batch])


# ------------------------------------------------------------------------------------------ gathering


def test_gathered_shards_come_back_in_drive_order_and_a_lost_drive_is_named():
    a, b, c = (DriveScore(x, 1, 0.1) for x in "abc")
    assert [s.partial for s in gather_scores([[(0, a), (2, c)], [(1, b)]], 3)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"\[1\] were scored by no process"):
        gather_scores([[(0, a), (2, c)], []], 3)
    with pytest.raises(ValueError, match="drive 0 was scored by two"):
        gather_scores([[(0, a)], [(0, a), (1, b), (2, c)]], 3)


class PoseErrorScorer:
    """Random PoseNet-like errors per drive (seeded by its name), a condition kept across drives."""

    model, model_id, device = "posenet", "posenet-test", "cpu"

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.scored_here: list[str] = []

    def score_drive(self, spec):
        self.scored_here.append(spec.path.name)
        rng = np.random.default_rng(sum(spec.path.name.encode()))
        n, k = 40 + len(spec.path.name), 3
        est = SimpleNamespace(
            east_m=rng.normal(0, 5, n), north_m=rng.normal(0, 5, n), cov_enu_m2=np.tile(np.eye(2) * 9.0, (n, 1, 1)),
            heading_deg=rng.uniform(0, 360, n), heading_std_deg=np.full(n, 5.0),
            hyp_east_m=rng.normal(0, 5, (n, k)), hyp_north_m=rng.normal(0, 5, (n, k)),
            hyp_weight=np.full((n, k), 1 / k), hyp_cov_enu_m2=np.tile(np.eye(2) * 9.0, (n, k, 1, 1)))
        errors = pose_errors(est, rng.normal(0, 5, n), rng.normal(0, 5, n), rng.uniform(0, 360, n))
        return DriveScore(errors, n, 0.01 * n, {"source": spec.path.stem}, kept=spec.path.stem[-1])

    def merge(self, partials):
        return merge_pose_errors(partials)

    def summarize(self, partial):
        return summarize_pose_errors(partial)

    def keep(self, spec, score):
        self.conditions.append(score.kept)


def _as_processes(monkeypatch, world: int, run):
    """Run ``run(rank)`` in ``world`` threads that stand for torchrun's processes: each sees its own
    rank, and all_gather_objects exchanges their objects as gloo would (pickled, in rank order)."""
    import pickle

    local = threading.local()
    slots: list = [None] * world
    barrier = threading.Barrier(world, timeout=30)

    def gather(obj):
        slots[local.rank] = pickle.dumps(obj)
        barrier.wait()
        out = [pickle.loads(s) for s in slots]
        barrier.wait()
        return out

    monkeypatch.setattr(evaluation, "current_dist_info", lambda: DistInfo(local.rank, world, local.rank))
    monkeypatch.setattr(evaluation, "all_gather_objects", gather)
    results: list = [None] * world
    errors: list = []

    def target(rank):
        local.rank = rank
        try:
            results[rank] = run(rank)
        except Exception as exc:  # surfaced below, not lost in the thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_a_two_process_report_equals_the_one_process_report(tmp_path, monkeypatch):
    drives = []
    for name, size in (("north_a", 300), ("loop_b", 100), ("dusk_c", 250), ("x_d", 50)):
        path = tmp_path / f"{name}.mcap"
        path.write_bytes(b"\0" * size)  # the size is what deals drives out
        drives.append(str(path))
    single_scorer = PoseErrorScorer()
    single = evaluate_drives(single_scorer, drives)

    scorers = [PoseErrorScorer(), PoseErrorScorer()]
    reports = _as_processes(monkeypatch, 2, lambda rank: evaluate_drives(scorers[rank], drives))

    # each process scored only its share; both hold every drive's condition, in drive order
    assert sorted(scorers[0].scored_here + scorers[1].scored_here) == sorted(p.split("/")[-1] for p in drives)
    assert scorers[0].scored_here and scorers[1].scored_here
    assert scorers[0].conditions == scorers[1].conditions == single_scorer.conditions == ["a", "b", "c", "d"]
    for report in reports:
        assert report.pop("processes") == 2
        assert_same_report(report, single)


def assert_same_report(report: dict, single: dict, *, rel: float = 1e-9) -> None:
    """Equal keys and values, floats to ``rel`` (NaN equals NaN), timing (``images_per_s``) aside."""

    def same(a, b, where):
        if isinstance(b, dict):
            assert isinstance(a, dict) and a.keys() == b.keys(), where
            for k in b:
                if k != "images_per_s":
                    same(a[k], b[k], f"{where}.{k}")
        elif isinstance(b, list):
            assert isinstance(a, list) and len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{where}[{i}]")
        elif isinstance(b, float) or isinstance(a, float):
            assert a == pytest.approx(b, rel=rel, abs=1e-12, nan_ok=True), where
        else:
            assert a == b, where

    same(report, single, "report")


# ------------------------------------------------------------------------------------------ single process


def test_outside_torchrun_nothing_is_distributed(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert saved_task_state(tmp_path) is None
    assert resolve_device("cpu").type == "cpu"


def test_nproc_relaunch_is_the_same_command_under_torchrun_without_nproc():
    argv = ["train", "posenet", "--data", "a.mcap", "--nproc", "2", "--epochs", "1", "--nproc=3", "--np", "4"]
    assert strip_nproc(argv) == ["train", "posenet", "--data", "a.mcap", "--epochs", "1"]
    cmd = torchrun_argv(2, ["evaluate", "posenet", "--data", "x.mcap", "--nproc", "2"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "nodes.cli",
                       "evaluate", "posenet", "--data", "x.mcap"]


def test_resume_with_another_effective_batch_is_refused_with_both_products(tmp_path):
    """2 processes x 8 may continue as 1 x 16 (same steps per epoch); 1 x 8 may not."""
    import importlib.util
    from pathlib import Path

    from perception.training import STATE_FILE, TrainConfig, fit

    # the shared loop's toy task (tests run in importlib mode: this folder is not on sys.path)
    spec = importlib.util.spec_from_file_location("toy_training", Path(__file__).with_name("test_training.py"))
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    ToyTask, ToyData = toy.ToyTask, toy.ToyData  # noqa: N806

    def config(batch, **kw):
        return TrainConfig(out_dir=tmp_path, batch_size=batch, lr=2e-2, device="cpu", progress=False,
                           **{"epochs": 2, **kw})

    fit(ToyTask(), ToyData(32, 0), None, config(16))
    assert torch.load(tmp_path / STATE_FILE, weights_only=True)["world_size"] == 1
    with pytest.raises(ValueError, match=r"1 process\(es\) x --batch-size 16; .*now 1 x 8"):
        fit(ToyTask(), ToyData(32, 0), None, config(8, resume=True, epochs=3))
