"""Two processes for real: torchrun with gloo on this CPU, against one process (slow: each torchrun
start imports torch in three processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perception.models import get_model
from perception.models._api import Checkpoint
from perception.training import HISTORY_FILE, MODEL_FILE, STATE_FILE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVES = ROOT / "sim_data" / "drives"
WORKER = Path(__file__).with_name("ddp_toy_worker.py")


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a test run under torchrun must not make these children think they are workers
    return env


def _run(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args)


def _streetloc(*args: str) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "nodes.cli", *args)


def test_two_processes_of_batch_8_train_the_weights_of_one_process_of_batch_16(tmp_path):
    """Without random augmentation or batch norm, the split of a step's frames over processes does not
    change the result: same frames per step, gradients averaged. Also: resume under torchrun."""
    _torchrun(2, str(WORKER), str(tmp_path / "two"), "8", "1")
    _torchrun(2, str(WORKER), str(tmp_path / "two"), "8", "2", "resume")
    # the same in one process (resumed alike: a resumed run keeps the schedule of its first --epochs)
    _run(sys.executable, str(WORKER), str(tmp_path / "one"), "16", "1")
    _run(sys.executable, str(WORKER), str(tmp_path / "one"), "16", "2", "resume")
    two = torch.load(tmp_path / "two" / STATE_FILE, weights_only=True)
    one = torch.load(tmp_path / "one" / STATE_FILE, weights_only=True)
    assert two["world_size"] == 2 and one["world_size"] == 1 and two["epoch"] == one["epoch"] == 1
    assert two["model"].keys() == one["model"].keys()  # no "module." prefix: the bare model is saved
    for name, w in one["model"].items():
        torch.testing.assert_close(two["model"][name], w, rtol=1e-4, atol=1e-5, msg=name)
    # one history line per epoch, written once (rank 0), validation figures equal
    lines = [json.loads(line) for line in (tmp_path / "two" / HISTORY_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[-1]["val_mae"] == pytest.approx(one["history"][-1]["val_mae"], rel=1e-4)
    assert lines[-1]["train_mse"] == pytest.approx(one["history"][-1]["train_mse"], rel=0.2)  # mean of ranks


TINY = {
    "posenet": ["--backbone", "mobilenet_v3_small", "--input-size", "32x24", "--hidden", "16", "--anchors", "8"],
    "segmenter": ["--input-size", "48x36", "--width-mult", "0.25", "--head-channels", "16"],
    "detector": ["--input-size", "64x48", "--crop", "64x48", "--width-mult", "0.25", "--fpn-channels", "16"],
}


def _meta_without_run(ckpt: Checkpoint) -> dict:
    """The record less what differs between any two runs: when, and the figures of the weights."""
    return {k: v for k, v in ckpt.meta.items() if k not in ("created_utc", "metrics")}


def _same(a, b, where: str = "report") -> None:
    """Equal JSON reports, floats to 1e-6 relative (null, JSON's NaN, equals null), timing aside."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), (where, set(a) ^ set(b))
        for k in b:
            if k != "images_per_s":
                _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(b, float) or isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where


@pytest.mark.parametrize("model", sorted(TINY))
def test_two_process_training_writes_the_checkpoint_one_process_writes(tmp_path, model):
    common = ["--data", f"{DRIVES / 'train_small.mcap'}@::4", "--batch-size", "8", "--threads", "1", "--device",
              "cpu", "--no-augment", "--no-progress", *TINY[model]]
    # the --nproc launcher (torchrun under it; resume under torchrun: the test above)
    _streetloc("train", model, *common, "--epochs", "2", "--out", str(tmp_path / "two"), "--nproc", "2")
    _streetloc("train", model, *common, "--epochs", "2", "--out", str(tmp_path / "one"))
    two, one = Checkpoint.load(tmp_path / "two" / MODEL_FILE), Checkpoint.load(tmp_path / "one" / MODEL_FILE)
    assert _meta_without_run(two) == _meta_without_run(one)
    assert two.meta["metrics"].keys() == one.meta["metrics"].keys()
    assert {k: v.shape for k, v in two.state_dict.items()} == {k: v.shape for k, v in one.state_dict.items()}
    get_model(model, weights=two)  # loads where one-process checkpoints load
    history = [json.loads(line) for line in (tmp_path / "two" / HISTORY_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]

    # evaluation: the drives dealt out to 2 processes, one report, the one a single process writes
    drives = [f"{DRIVES / 'test_small.mcap'}@::2", f"{DRIVES / 'train_small.mcap'}@1::8",
              f"{DRIVES / 'demo_city.mcap'}@::5"]
    args = ["evaluate", model, "--model", str(tmp_path / "two" / MODEL_FILE), "--data", *drives, "--json",
            "--device", "cpu", *(["--allow-out-of-area"] if model == "posenet" else [])]
    single = json.loads(_streetloc(*args).stdout)
    report = json.loads(_streetloc(*args, "--nproc", "2").stdout)  # one report: only rank 0 prints
    assert report.pop("processes") == 2
    _same(report, single)
    assert len(single["per_drive"]) == 3
