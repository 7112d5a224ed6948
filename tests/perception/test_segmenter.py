"""PSPNet through the shared seams: registry, frame loader (drives and CamVid-style folders), fit loop,
Checkpoint record, evaluation report and ``streetloc train/evaluate segmenter``; its architecture (output
stride 8, pyramid bins 1/2/3/6, auxiliary head); its IoU figures against hand counts and torchmetrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nodes.cli import main as cli
from perception.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, ROAD
from perception.models import Checkpoint, get_model, list_models, list_weights, resolve_checkpoint
from perception.models.segmenter.data import load_mask_frames
from perception.models.segmenter.evaluation import confusion_matrix, segmentation_figures
from perception.models.segmenter.network import PYRAMID_BINS, PSPNet
from perception.models.segmenter.training import SegmenterTask, class_weights, random_scale_crop

DRIVES = Path(__file__).resolve().parents[2] / "sim_data" / "drives"
TRAIN_DRIVE = str(DRIVES / "train_small.mcap")  # small synthetic drives with truth/segmentation
TEST_DRIVE = str(DRIVES / "test_small.mcap")
TINY = {"width_mult": 0.25, "head_channels": 16}  # ~60 k parameters: behaviour, not accuracy


def save_tiny_segmenter(path: Path, *, size_px: tuple[int, int] = (32, 24)) -> str:
    """An untrained tiny PSPNet with a complete checkpoint record (what the node and evaluate read)."""
    torch.manual_seed(0)
    arch = {"num_classes": NUM_CLASSES, "backbone": "resnet_dilated", **TINY, "aux": True, "output_stride": 8}
    model = get_model("segmenter", **arch)
    return str(Checkpoint(model="segmenter", arch=arch, state_dict=model.state_dict(), meta={
        "input_size_px": list(size_px), "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}).save(path))


def write_camvid(root: Path, masks: list[np.ndarray], *, split: str = "val") -> Path:
    """A CamVid-style split: root/split/NAME.png images and root/splitannot/NAME.png labels."""
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        h, w = mask.shape
        cv2.imwrite(str(root / split / f"f{i:03d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(root / f"{split}annot" / f"f{i:03d}.png"), mask)
    return root / split


def test_pspnet_has_output_stride_8_pyramid_bins_and_an_auxiliary_head_in_training_only():
    assert {"posenet", "segmenter"} <= set(list_models())
    assert {"segmenter_synthetic_city", "segmenter_camvid"} <= set(list_weights("segmenter"))
    model = get_model("segmenter", **TINY)
    assert isinstance(model, PSPNet) and PYRAMID_BINS == (1, 2, 3, 6)
    assert [b[0].output_size for b in model.ppm.branches] == [1, 2, 3, 6]
    x = torch.zeros(2, 3, 48, 64)
    assert model.features(x).shape[-2:] == (6, 8)  # 64x48 / 8: dilated, not strided, after stride 8
    model.train()
    logits, aux = model(x)
    assert logits.shape == aux.shape == (2, NUM_CLASSES, 48, 64)
    model.eval()
    assert model(torch.zeros(1, 3, 30, 42)).shape == (1, NUM_CLASSES, 30, 42)  # any size, labels every pixel
    mobile = get_model("segmenter", backbone="mobilenet_v3_small", width_mult=0.5, head_channels=16)
    assert mobile.features(x).shape[-2:] == (6, 8)


def test_output_stride_16_with_the_stride_4_skip_decoder_labels_every_pixel_and_keeps_the_pyramid():
    model = get_model("segmenter", output_stride=16, widths=[8, 8, 16, 16, 24], head_channels=16,
                      decoder_channels=8)
    assert [b[0].output_size for b in model.ppm.branches] == [1, 2, 3, 6]
    x = torch.zeros(2, 3, 64, 96)
    assert model.features(x).shape[-2:] == (4, 6)  # 96x64 / 16
    assert model.features[model.low_index](model.features[: model.low_index](x)).shape[-2:] == (16, 24)  # / 4
    model.train()
    logits, aux = model(x)
    assert logits.shape == aux.shape == (2, NUM_CLASSES, 64, 96)
    # a one-pixel-wide change in the input moves the logits near it: the decoder sees stride 4, not 16
    model.eval()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 96)
    y = x.clone()
    y[..., 40] += 5.0
    diff = (model(y) - model(x)).abs().amax(dim=(0, 1, 2))
    assert diff[36:45].mean() > 3 * diff[:8].mean()
    with pytest.raises(ValueError, match="widths"):
        get_model("segmenter", widths=[8, 8])


@pytest.mark.parametrize("name", ["segmenter_synthetic_city", "segmenter_camvid"])
def test_every_shipped_checkpoint_loads_with_its_recorded_architecture(name):
    ckpt = resolve_checkpoint(name, model="segmenter")
    model = get_model("segmenter", weights=ckpt)
    w, h = ckpt.input_size_px
    assert model(torch.zeros(1, 3, h, w)).shape == (1, NUM_CLASSES, h, w)


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


def test_iou_agrees_with_torchmetrics_on_random_masks():
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, NUM_CLASSES + 1, (6, 20, 30), generator=g)  # ids 0-11: 11 is the ignore label
    pred = torch.where(torch.rand(truth.shape, generator=g) < 0.6, truth.clamp(max=NUM_CLASSES - 1),
                       torch.randint(0, NUM_CLASSES, truth.shape, generator=g))
    pred[truth == 9] = 2  # pedestrians never found: IoU 0 for 9, not NaN
    ours = segmentation_figures(confusion_matrix(pred, truth))
    metric = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average=None, ignore_index=IGNORE_INDEX)
    theirs = metric(pred, truth).numpy()
    assert [ours["iou_per_class"][n] for n in CLASS_NAMES[:NUM_CLASSES]] == pytest.approx(theirs.tolist(), abs=1e-6)
    assert ours["iou_per_class"]["pedestrian"] == 0.0
    assert ours["miou"] == pytest.approx(float(theirs.mean()), abs=1e-6)


def test_masks_come_from_the_drive_at_the_input_size_or_their_own():
    frames = load_mask_frames([f"{TRAIN_DRIVE}@::40"], size_px=(40, 30))
    masks = frames.truth["mask"]
    assert frames.images.shape[1:] == (3, 30, 40) and masks.shape == (len(frames), 30, 40)
    assert masks.dtype == np.uint8 and masks.max() <= IGNORE_INDEX
    assert (masks == ROAD).mean() > 0.1  # a street view: plenty of road
    native = load_mask_frames([f"{TRAIN_DRIVE}@::40"], size_px=(40, 30), mask_size_px=(0, 0)).truth["mask"]
    assert native.shape[1:] == (120, 160)  # the small drive's own label resolution (160x120), for scoring


def test_camvid_folders_and_their_bad_labels(tmp_path):
    masks = [np.full((18, 24), ROAD, np.uint8), np.full((18, 24), IGNORE_INDEX, np.uint8)]
    masks[0][:6] = 0
    split = write_camvid(tmp_path / "camvid", masks)
    frames = load_mask_frames([split, TRAIN_DRIVE + "@::80"], size_px=(16, 12), mask_size_px=(16, 12))
    assert frames.images.shape[0] == 2 + len(load_mask_frames([TRAIN_DRIVE + "@::80"], size_px=(16, 12)))
    assert frames.drives[0]["source"] == "camvid" and frames.truth["mask"][0, 0, 0] == 0
    assert (frames.truth["mask"][0, -1] == ROAD).all()
    # a dataset root, not a split
    with pytest.raises(ValueError, match="splits val; name one"):
        load_mask_frames([tmp_path / "camvid"], size_px=(16, 12))
    # an id outside the table, named with the file
    bad = masks[0].copy()
    bad[0, 0] = 37
    cv2.imwrite(str(tmp_path / "camvid" / "valannot" / "f001.png"), bad)
    with pytest.raises(ValueError, match=r"valannot/f001.png: ids 37 are outside the 12-label table"):
        load_mask_frames([split], size_px=(16, 12))
    # a label of another size than its image
    cv2.imwrite(str(tmp_path / "camvid" / "valannot" / "f001.png"), masks[0][:10])
    with pytest.raises(ValueError, match=r"f001.png: 24x10 pixels, its image 24x18"):
        load_mask_frames([split], size_px=(16, 12))


def test_augmentation_moves_image_and_mask_together():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(3, 24, 32, dtype=torch.int64)
    mask[:, :, 16:] = ROAD  # the right half is road ...
    image = torch.zeros(3, 3, 24, 32)
    image[:, :, :, 16:] = 1.0  # ... and white
    out_image, out_mask = random_scale_crop(image, mask, scale_min=0.6, scale_max=1.6, generator=g)
    labelled = out_mask != IGNORE_INDEX
    white = out_image[:, 0] > 0.5
    agree = (white == (out_mask == ROAD))[labelled].float().mean()
    assert agree > 0.97  # borders are interpolated, the rest moves in step
    assert (~labelled).any()  # zoomed out somewhere: the border is ignored, not "sky"
    weights = class_weights(np.array([[0, 0, 0, 3], [3, 3, 3, IGNORE_INDEX]]))
    assert weights[0] > weights[3] and max(weights) < 11  # rare classes weigh more, bounded


@pytest.mark.slow  # ~16 s with one thread on a quiet machine, minutes on a busy one
def test_train_and_evaluate_through_the_cli_beat_the_majority_class(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["train", "segmenter", "--data", f"{TRAIN_DRIVE}@::2", "--val-data", f"{TEST_DRIVE}@::8",
                "--out", str(out), "--input-size", "48x36", "--width-mult", "0.25", "--head-channels", "16",
                "--epochs", "5", "--batch-size", "16", "--lr", "1e-2", "--seed", "0", "--device", "cpu",
                "--class-weighting", "none", "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    ckpt = Checkpoint.load(out / "model.pt")  # the same record as PoseNet's
    assert ckpt.model == "segmenter" and ckpt.arch["width_mult"] == 0.25 and ckpt.arch["output_stride"] == 8
    assert ckpt.meta["classes"] == list(CLASS_NAMES[:NUM_CLASSES]) and ckpt.meta["input_size_px"] == [48, 36]
    assert ckpt.meta["recipe"]["aux_weight"] == 0.4
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    # mIoU is higher-is-better: the exported epoch is the best one, not the lowest
    assert ckpt.meta["metrics"]["val"]["miou"] == pytest.approx(max(h["val_miou"] for h in history))
    assert "train_aux_ce" in history[0]  # the auxiliary loss is trained
    with pytest.raises(ValueError, match="segmenter"):
        resolve_checkpoint(str(out / "model.pt"), model="posenet")

    assert cli(["evaluate", "segmenter", "--model", str(out / "model.pt"), "--data", f"{TEST_DRIVE}@1::4",
                "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "segmenter" and report["model_id"] == ckpt.model_id
    assert report["label_size_px"] == [[160, 120]] and report["input_size_px"] == [48, 36]
    # the trivial baseline: every pixel the most common class of the scored frames
    truth = load_mask_frames([f"{TEST_DRIVE}@1::4"], size_px=(48, 36), mask_size_px=(0, 0)).truth["mask"]
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
    assert "mIoU" in text and "road" in text and "160x120" in text


def test_evaluate_scores_a_camvid_folder(tmp_path, capsys):
    masks = [np.full((24, 32), ROAD, np.uint8) for _ in range(3)]
    split = write_camvid(tmp_path / "camvid", masks)
    ckpt = save_tiny_segmenter(tmp_path / "seg.pt")
    assert cli(["evaluate", "segmenter", "--model", ckpt, "--data", str(split), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pixels"] == 3 * 24 * 32 and report["drives"] == [str(split)]
    assert set(report["iou_per_class"]) == set(CLASS_NAMES[:NUM_CLASSES])


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from perception.drives import CameraInfo, DriveMetadata, DriveWriter

    no_masks = tmp_path / "no_masks.mcap"
    with DriveWriter(no_masks, DriveMetadata(source="toy", camera=CameraInfo.from_hfov(32, 24, 90))) as w:
        w.add_image(1_000_000_000, np.zeros((24, 32, 3), np.uint8))
    ckpt = save_tiny_segmenter(tmp_path / "seg.pt")

    def one_line_error(argv: list[str], *expected: str) -> None:
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert all(e in err for e in expected) and len(err.strip().splitlines()) == 1, err

    one_line_error(["evaluate", "segmenter", "--model", ckpt, "--data", str(no_masks), "--device", "cpu"],
                   "no_masks.mcap", "label mask")
    bad_labels = write_camvid(tmp_path / "cv", [np.full((24, 32), 200, np.uint8)])
    one_line_error(["evaluate", "segmenter", "--model", ckpt, "--data", str(bad_labels), "--device", "cpu"],
                   "f000.png", "200", "outside the 12-label table")
    from tests.conftest import save_tiny_posenet

    posenet = save_tiny_posenet(tmp_path / "pose.pt", origin={"lat_deg": 34.0, "lon_deg": -118.0, "alt_m": 0.0})
    one_line_error(["evaluate", "segmenter", "--model", posenet, "--data", TEST_DRIVE, "--device", "cpu"],
                   "pose.pt", "'posenet' model, not 'segmenter'")
    one_line_error(["train", "segmenter", "--data", str(no_masks), "--head-channels", "9999", "--out",
                    str(tmp_path / "r")], "argument --head-channels: 9999 is out of range")


def test_the_task_weighs_the_auxiliary_loss_by_0_4():
    torch.manual_seed(0)
    model = get_model("segmenter", **TINY).train()
    batch = {"image": torch.randn(2, 3, 24, 32), "mask": torch.randint(0, NUM_CLASSES, (2, 24, 32))}
    task = SegmenterTask(arch={}, input_size_px=(32, 24), trained_on=[])
    loss, figures = task.loss(model, batch)
    assert float(loss.detach()) == pytest.approx(figures["ce"] + 0.4 * figures["aux_ce"], rel=1e-5)


def test_evaluate_says_which_frames_it_skipped_and_scores_the_rest(tmp_path, capsys):
    from perception.drives import CameraInfo, DriveMetadata, DriveWriter

    drive = tmp_path / "mixed.mcap"
    road = np.full((24, 32), ROAD, np.uint8)
    with DriveWriter(drive, DriveMetadata(source="toy", camera=CameraInfo.from_hfov(32, 24, 90))) as w:
        for i in range(3):
            w.add_image(1_000_000_000 * (i + 1), np.full((24, 32, 3), 90, np.uint8))
            # the third mask at another size: brought to the drive's own (the first mask's)
            w.add_label_mask(1_000_000_000 * (i + 1), road if i < 2 else road[:12, :16], list(CLASS_NAMES))
        w.add_image(4_000_000_000, jpeg=b"\xff\xd8 not a jpeg \xff\xd9")  # undecodable, with a mask
        w.add_label_mask(4_000_000_000, road, list(CLASS_NAMES))
        w.add_image(5_000_000_000, np.zeros((24, 32, 3), np.uint8))  # no mask at its stamp
    ckpt = save_tiny_segmenter(tmp_path / "seg.pt")
    assert cli(["evaluate", "segmenter", "--model", ckpt, "--data", str(drive), "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["pixels"] == 3 * 24 * 32 and report["label_size_px"] == [[32, 24]]
    assert "mixed.mcap: 2 frame(s) skipped" in captured.err and "no_mask: 1" in captured.err
    assert "corrupt: 1" in captured.err
