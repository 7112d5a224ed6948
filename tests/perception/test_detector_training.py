"""``streetloc train detector`` end to end on a tiny drive: a checkpoint the predictor loads, a history
with COCO figures, and ``--resume`` continuing the run (slow: it trains)."""

from __future__ import annotations

import json

import pytest

from tests.perception.test_detector import write_box_drive

pytestmark = pytest.mark.slow


def test_train_then_resume_then_detect(tmp_path):
    from nodes.cli import main
    from perception.models.detector.predictor import DetectorPredictor

    drive = write_box_drive(tmp_path / "d.mcap", frames=8)
    out = tmp_path / "run"
    common = ["train", "detector", "--data", drive, "--val-data", drive, "--out", str(out), "--input-size", "64x48",
              "--crop", "48x48", "--width-mult", "0.25", "--fpn-channels", "16", "--batch-size", "4",
              "--threads", "1", "--no-progress", "--device", "cpu"]
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all("val_map50" in h for h in history)
    predictor = DetectorPredictor(str(out / "model.pt"), device="cpu")
    assert predictor.input_size_px == (64, 48) and predictor.checkpoint.meta["classes"][1] == "car"
