"""The shared training loop with a toy task: loss goes down, checkpoints, exact resume, sharding."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from torch import nn

from perception.training import MODEL_FILE, STATE_FILE, TrainConfig, fit, lr_scheduler, progress_bar


class ToyTask:
    """Regress the mean brightness of an image: a task any small conv net learns in a few steps."""

    name = "toy"
    monitor = "mae"
    summary_keys = ("mae",)

    def __init__(self) -> None:
        self.exported: list[dict] = []

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 1))

    def prepare(self, batch):
        return {**batch, "image": batch["image"].float() / 255.0}

    def augment(self, batch, generator):
        batch = self.prepare(batch)
        jitter = 1.0 + 0.01 * torch.randn(batch["image"].shape[0], 1, 1, 1, generator=generator)
        return {**batch, "image": batch["image"] * jitter}

    def loss(self, model, batch):
        pred = model(batch["image"])[:, 0]
        loss = ((pred - batch["target"]) ** 2).mean()
        return loss, {"mse": float(loss.detach())}

    def validate(self, model, loader, device):
        errs = []
        with torch.no_grad():
            for batch in loader:
                batch = self.prepare(batch)
                errs.append((model(batch["image"])[:, 0] - batch["target"]).abs())
        return {"mae": float(torch.cat(errs).mean())}

    def export(self, model, metrics, config, path):
        self.exported.append(dict(metrics))
        torch.save({"state_dict": model.state_dict(), "metrics": dict(metrics)}, path)

    def state(self):
        return {"toy": 1}


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        self.target = self.images.float().mean(dim=(1, 2, 3)) / 255.0 * 4.0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "target": self.target[i]}


def _config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(out_dir=tmp_path, epochs=kw.pop("epochs", 4), batch_size=16, lr=2e-2, device="cpu",
                       progress=False, warmup_epochs=0.5, **kw)


def test_loss_goes_down_and_files_are_written(tmp_path):
    task = ToyTask()
    result = fit(task, ToyData(128, 0), ToyData(32, 1), _config(tmp_path))
    losses = [r["train_mse"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["val_mae"] < result.history[0]["val_mae"]
    assert (tmp_path / MODEL_FILE).is_file() and (tmp_path / STATE_FILE).is_file()
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    best = torch.load(tmp_path / MODEL_FILE, weights_only=True)["metrics"]["mae"]
    assert best == pytest.approx(min(r["val_mae"] for r in result.history))


def test_resume_continues_from_the_saved_epoch_exactly(tmp_path):
    straight = fit(ToyTask(), ToyData(64, 0), ToyData(16, 1), _config(tmp_path / "a", epochs=3))

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # Ctrl-C after the state of epoch 2 was saved

    with pytest.raises(KeyboardInterrupt):
        fit(ToyTask(), ToyData(64, 0), ToyData(16, 1), _config(tmp_path / "b", epochs=3), on_epoch=interrupt)
    resumed = fit(ToyTask(), ToyData(64, 0), ToyData(16, 1), _config(tmp_path / "b", epochs=3, resume=True))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.epochs_run == 3
    # same seed, same data order, same augmentation draws: the interrupted run ends where the straight one did
    assert resumed.history[-1]["val_mae"] == pytest.approx(straight.history[-1]["val_mae"], rel=1e-5)


def test_resume_without_a_run_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        fit(ToyTask(), ToyData(16, 0), None, _config(tmp_path, resume=True))


def test_same_seed_same_result_other_seed_other_result(tmp_path):
    a = fit(ToyTask(), ToyData(64, 0), ToyData(16, 1), _config(tmp_path / "a", epochs=1))
    b = fit(ToyTask(), ToyData(64, 0), ToyData(16, 1), _config(tmp_path / "b", epochs=1))
    c = fit(ToyTask(), ToyData(64, 0), ToyData(16, 1), _config(tmp_path / "c", epochs=1, seed=5))
    assert a.history[0]["val_mae"] == b.history[0]["val_mae"]
    assert a.history[0]["val_mae"] != c.history[0]["val_mae"]


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = lr_scheduler(opt, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert lrs[10] == pytest.approx(1.0)
    # cosine: half-way through the decay the lr is half-way between peak and floor
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-6)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert sched.get_last_lr()[0] == pytest.approx(0.1, abs=1e-6)
    assert math.isclose(max(lrs), 1.0)


def test_lr_schedule_state_resumes_where_it_stopped():
    def run(steps, state=None):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = lr_scheduler(opt, total_steps=50, warmup_steps=5, min_lr_ratio=0.0)
        if state:
            opt.load_state_dict(state[0])
            sched.load_state_dict(state[1])
        for _ in range(steps):
            opt.step()
            sched.step()
        return opt, sched

    straight = run(30)[1].get_last_lr()[0]
    opt, sched = run(12)
    resumed = run(18, (opt.state_dict(), sched.state_dict()))[1].get_last_lr()[0]
    assert resumed == pytest.approx(straight)


def test_data_order_is_a_permutation_per_epoch_fixed_by_the_seed(tmp_path):
    """fit draws its order from DistributedSampler seeded by the config: same seed, same order."""
    seen: list[list[float]] = []

    class Recording(ToyTask):
        def loss(self, model, batch):
            seen[-1].extend(batch["target"].tolist())
            return super().loss(model, batch)

    for run in ("a", "b"):
        seen.append([])
        fit(Recording(), ToyData(32, 0), None, _config(tmp_path / run, epochs=2))
    assert seen[0] == seen[1]
    epoch1, epoch2 = seen[0][:32], seen[0][32:]
    assert sorted(epoch1) == sorted(ToyData(32, 0).target.tolist()) and epoch1 != epoch2


def test_progress_prints_loss_and_eta_lines_off_a_terminal():
    out = io.StringIO()
    bar = progress_bar(8, desc="[toy epoch 1/2]", stream=out)
    for _ in range(8):
        bar.set_postfix(loss="0.5", refresh=False)
        bar.update()
    bar.close()
    lines = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert 2 <= len(lines) <= 6  # a line per quarter, not per step
    assert "loss=0.5" in lines[-1] and "8/8" in lines[-1] and "<" in lines[-1]  # tqdm: elapsed<remaining


def test_resume_of_a_run_saved_with_the_old_lambda_schedule_goes_on_at_its_step(tmp_path):
    fit(ToyTask(), ToyData(64, 0), None, _config(tmp_path, epochs=2))
    state_path = tmp_path / STATE_FILE
    state = torch.load(state_path, weights_only=True)
    steps = state["scheduler"]["last_epoch"]
    # what the LambdaLR of earlier streetloc versions saved
    state["scheduler"] = {"base_lrs": [2e-2], "last_epoch": steps, "_step_count": steps + 1, "_last_lr": [1e-2],
                          "lr_lambdas": [None]}
    torch.save(state, state_path)
    resumed = fit(ToyTask(), ToyData(64, 0), None, _config(tmp_path, epochs=4, resume=True))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    straight = fit(ToyTask(), ToyData(64, 0), None, _config(tmp_path / "straight", epochs=4))
    assert resumed.history[-1]["lr"] == pytest.approx(straight.history[-1]["lr"])
