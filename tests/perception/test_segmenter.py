"""The second model through the shared seams: registry, frame loader, fit loop, Checkpoint record,
evaluation report and ``streetloc train/evaluate segmenter``; and its IoU figures against hand counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nodes.cli import main as cli
from perception.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, ROAD
from perception.models import Checkpoint, get_model, list_models, resolve_checkpoint
from perception.models.segmenter.data import load_mask_frames
from perception.models.segmenter.evaluation import confusion_matrix, segmentation_figures

DRIVES = Path(__file__).resolve().parents[2] / "sim_data" / "drives"
TRAIN_DRIVE = str(DRIVES / "train_small.mcap")  # small synthetic drives with truth/segmentation
TEST_DRIVE = str(DRIVES / "test_small.mcap")


def test_registered_beside_posenet_and_labels_every_pixel():
    assert {"posenet", "segmenter"} <= set(list_models())
    model = get_model("segmenter", width=4, depth=2).eval()
    logits = model(torch.zeros(2, 3, 24, 32))
    assert logits.shape == (2, NUM_CLASSES, 24, 32)


def test_iou_from_a_hand_counted_confusion_matrix():
    # truth: 4 road, 2 sky, 2 ignored; prediction: road right 3 times, one road called sky, sky right twice,
    # the ignored pixels predicted as car (they must not count anywhere)
    truth = np.array([[3, 3, 3, 3], [0, 0, IGNORE_INDEX, IGNORE_INDEX]])
    pred = np.array([[3, 3, 3, 0], [0, 0, 8, 8]])
    cm = confusion_matrix(pred, truth)
    assert cm.sum() == 6 and cm[3, 3] == 3 and cm[3, 0] == 1 and cm[0, 0] == 2 and cm[:, 8].sum() == 0
    f = segmentation_figures(cm)
    assert f["iou_per_class"]["road"] == pytest.approx(3 / 4)  # TP 3, FN 1, FP 0
    assert f["iou_per_class"]["sky"] == pytest.approx(2 / 3)  # TP 2, FN 0, FP 1
    assert math.isnan(f["iou_per_class"]["car"])  # in neither truth nor (counted) prediction
    assert f["miou"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert f["pixel_accuracy"] == pytest.approx(5 / 6)


def test_masks_come_from_the_drive_at_the_input_size():
    frames = load_mask_frames([f"{TRAIN_DRIVE}@::40"], size_px=(40, 30))
    masks = frames.truth["mask"]
    assert frames.images.shape[1:] == (3, 30, 40) and masks.shape == (len(frames), 30, 40)
    assert masks.dtype == np.uint8 and masks.max() <= IGNORE_INDEX
    assert (masks == ROAD).mean() > 0.1  # a street view: plenty of road


def test_train_and_evaluate_through_the_cli_beat_the_majority_class(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["train", "segmenter", "--data", f"{TRAIN_DRIVE}@::2", "--val-data", f"{TEST_DRIVE}@::8",
                "--out", str(out), "--input-size", "40x30", "--width", "8", "--depth", "2", "--epochs", "4",
                "--batch-size", "16", "--lr", "1e-2", "--seed", "0", "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    ckpt = Checkpoint.load(out / "model.pt")  # the same record as PoseNet's
    assert ckpt.model == "segmenter" and ckpt.arch == {"num_classes": NUM_CLASSES, "width": 8, "depth": 2}
    assert ckpt.meta["classes"] == list(CLASS_NAMES[:NUM_CLASSES]) and ckpt.meta["input_size_px"] == [40, 30]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    # mIoU is higher-is-better: the exported epoch is the best one, not the lowest
    assert ckpt.meta["metrics"]["val"]["miou"] == pytest.approx(max(h["val_miou"] for h in history))
    with pytest.raises(ValueError, match="segmenter"):
        resolve_checkpoint(str(out / "model.pt"), model="posenet")

    assert cli(["evaluate", "segmenter", "--model", str(out / "model.pt"), "--data", f"{TEST_DRIVE}@1::4",
                "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "segmenter" and report["model_id"] == ckpt.model_id
    # the trivial baseline: every pixel the most common class of the scored frames
    truth = load_mask_frames([f"{TEST_DRIVE}@1::4"], size_px=(40, 30)).truth["mask"]
    labelled = truth[truth != IGNORE_INDEX]
    assert report["pixels"] == labelled.size
    majority = np.bincount(labelled).max() / labelled.size
    baseline_miou = majority / len(np.unique(labelled))  # the majority class's IoU; every other class 0
    assert report["pixel_accuracy"] > majority + 0.1, (report["pixel_accuracy"], majority)
    assert report["miou"] > baseline_miou + 0.05, (report["miou"], baseline_miou)
    assert set(report["iou_per_class"]) == set(CLASS_NAMES[:NUM_CLASSES])

    assert cli(["evaluate", "segmenter", "--model", str(out / "model.pt"), "--data", TEST_DRIVE,
                "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "mIoU" in text and "road" in text


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from perception.drives import CameraInfo, DriveMetadata, DriveWriter

    no_masks = tmp_path / "no_masks.mcap"
    with DriveWriter(no_masks, DriveMetadata(source="toy", camera=CameraInfo.from_hfov(32, 24, 90))) as w:
        w.add_image(1_000_000_000, np.zeros((24, 32, 3), np.uint8))
    ckpt = tmp_path / "seg.pt"
    model = get_model("segmenter", width=4, depth=1)
    Checkpoint(model="segmenter", arch={"num_classes": NUM_CLASSES, "width": 4, "depth": 1},
               state_dict=model.state_dict(), meta={"input_size_px": [32, 24],
                                                    "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}).save(ckpt)
    assert cli(["evaluate", "segmenter", "--model", str(ckpt), "--data", str(no_masks), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no_masks.mcap" in err and "label mask" in err and len(err.strip().splitlines()) == 1
    assert cli(["evaluate", "segmenter", "--data", str(no_masks)]) == 2
    assert "no default weights" in capsys.readouterr().err
    assert cli(["train", "segmenter", "--data", str(no_masks), "--depth", "9", "--out", str(tmp_path / "r")]) == 2
    assert "argument --depth: 9 is out of range" in capsys.readouterr().err
