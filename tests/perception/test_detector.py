"""The detector: its grid and outputs, target assignment, mAP against pycocotools' definition, label
folders (KITTI, YOLO txt), the letterbox geometry, ``streetloc evaluate detector`` and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.classes import BICYCLIST, CAR, CLASS_NAMES, PEDESTRIAN, SIGN
from perception.drives import CameraInfo, DriveMetadata, DriveWriter
from perception.models.detector.evaluation import coco_map
from perception.models.detector.loss import assign, detection_loss
from perception.models.detector.network import (
    DETECTOR_CLASS_NAMES,
    STRIDES,
    decode,
    detector,
    flatten_outputs,
    grid_points,
)

REPO = Path(__file__).resolve().parents[2]
KITTI = REPO.parent / "shared" / "data" / "kitti_object"
T0_NS = 1_700_000_000_000_000_000
TINY_ARCH = {"backbone": "mobilenet_v3_small", "width_mult": 0.25, "fpn_channels": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a CPU shared with other processes, two threads wait at barriers for each other
    (tens of times slower; see nodes/posenet.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny_detector(path, *, input_size_px: tuple[int, int] = (64, 48)) -> str:
    """An untrained tiny detector with a complete checkpoint record (the training task's own export):
    for testing what consumes a checkpoint (the node, evaluate), not accuracy."""
    from perception.models.detector.training import DetectorTask
    from perception.training import TrainConfig

    torch.manual_seed(0)
    task = DetectorTask(arch=TINY_ARCH, input_size_px=input_size_px, trained_on=[])
    model = task.build_model().eval()
    task.export(model, {}, TrainConfig(out_dir=Path(path).parent), Path(path))
    return str(path)


def write_box_drive(path, frames: int = 6, *, boxes: bool = True, size=(64, 48)) -> str:
    """A drive of grey frames with one car box each (or no truth/boxes channel)."""
    w, h = size
    with DriveWriter(path, DriveMetadata(source="test", camera=CameraInfo.from_hfov(w, h, 70))) as wr:
        for i in range(frames):
            t = T0_NS + i * 100_000_000
            img = np.full((h, w, 3), 90, np.uint8)
            cv2.rectangle(img, (10 + i, 12), (30 + i, 30), (20, 20, 200), -1)
            wr.add_image(t, img)
            if boxes:
                wr.add_boxes(t, np.array([[10 + i, 12, 31 + i, 31]], np.float32), np.array([CAR], np.int32),
                             list(CLASS_NAMES))
    return str(path)


# ---------------------------------------------------------------------------------------------- network


def test_outputs_at_strides_8_16_32_and_decoding_stays_in_the_image():
    model = detector(**TINY_ARCH).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 96, 128))
    assert [tuple(o.shape[-2:]) for o in outs] == [(96 // s, 128 // s) for s in STRIDES]
    assert flatten_outputs(outs).shape == (2, sum(96 // s * 128 // s for s in STRIDES), 5 + 4)
    det = decode(outs, (128, 96), score_threshold=0.0, max_detections=50)
    for b, s, a in zip(det.boxes, det.scores, det.labels, strict=True):
        assert 0 < len(b) <= 50 and ((b[:, 0] >= 0) & (b[:, 2] <= 128) & (b[:, 3] <= 96)).all()
        assert ((s >= 0) & (s <= 1)).all() and ((a >= 0) & (a < 4)).all()
        assert torch.all(s[:-1] >= s[1:])  # best first


def _points(size=(128, 96)):
    outs = [torch.zeros(1, 9, size[1] // s, size[0] // s) for s in STRIDES]
    xy, stride = grid_points(outs)
    level = torch.cat([torch.full((o.shape[-2] * o.shape[-1],), i) for i, o in enumerate(outs)])
    return xy, stride, level


def test_a_4_px_sign_between_grid_points_still_gets_positives_at_stride_8():
    xy, stride, level = _points()
    who = assign(xy, stride, level, torch.tensor([[21.0, 30.0, 25.0, 39.0]]))  # 4x9 px, no point inside
    pos = torch.nonzero(who == 0).squeeze(1)
    assert 1 <= len(pos) <= 4 and (stride[pos] == 8).all()


def test_objects_go_to_the_level_of_their_size_and_shared_points_to_the_smaller():
    xy, stride, level = _points((320, 256))
    big = torch.tensor([[40.0, 40.0, 240.0, 200.0]])
    who = assign(xy, stride, level, big)
    assert (stride[who == 0] == 32).all() and (who == 0).sum() >= 4
    both = torch.tensor([[100.0, 100.0, 140.0, 140.0], [110.0, 110.0, 130.0, 130.0]])
    who = assign(xy, stride, level, both)
    centre = int(torch.nonzero((stride == 8) & (xy[:, 0] == 14) & (xy[:, 1] == 14)).squeeze())
    assert who[centre] == 1  # the point at (116, 116) px lies in both: the smaller box owns it


@pytest.mark.slow  # ~3 s alone, 25 s on the shared 2-core machine
def test_the_loss_learns_a_box():
    """A few dozen steps on one image with one box: loss falls and the box is found where it is."""
    torch.manual_seed(0)
    model = detector(**TINY_ARCH)
    img = torch.zeros(1, 3, 64, 64)
    img[:, :, 16:40, 20:36] = 2.0
    boxes, labels = [torch.tensor([[20.0, 16.0, 36.0, 40.0]])], [torch.tensor([2])]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss, figures = detection_loss(model(img), boxes, labels)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.3 * first and figures["iou"] > 0.5
    model.eval()
    with torch.no_grad():
        det = decode(model(img), (64, 64), score_threshold=0.05)
    assert int(det.labels[0][0]) == 2
    from torchvision.ops import box_iou

    assert float(box_iou(det.boxes[0][:1], boxes[0])) > 0.6  # the best box is on the object
    assert float(det.scores[0][0]) > 0.5 > float(torch.cat([det.scores[0][1:], torch.zeros(1)]).max())  # only it


# ---------------------------------------------------------------------------------------------- mAP


def _crops_holding(box: list[float], label: int, focus: float, n: int = 400) -> float:
    """Share of ``n`` random 160x128 crops of a 320x240 frame (a row of 12 cars, and ``box``) that hold
    ``box`` whole, with ``focus`` of the crops placed around a box of a class drawn among those present."""
    from perception.models.detector.training import random_crop

    cars = [[10.0 + 25 * k, 100.0, 30.0 + 25 * k, 115.0] for k in range(12)]
    boxes = [torch.tensor(cars + [box])] * n
    labels = [torch.tensor([1] * 12 + [label])] * n
    images = torch.zeros(n, 3, 240, 320, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    _, out_b, out_l = random_crop(images, boxes, labels, (160, 128), g, focus=focus)
    w, h = box[2] - box[0], box[3] - box[1]
    whole = [bool(((lb == label) & ((b[:, 2] - b[:, 0]) == w) & ((b[:, 3] - b[:, 1]) == h)).any())
             for b, lb in zip(out_b, out_l, strict=True)]
    return float(np.mean(whole))


def test_a_lone_bicyclist_in_a_corner_is_in_a_fair_share_of_the_training_crops():
    # one bicyclist among 12 cars, near the bottom-right corner: a uniform quarter-frame crop holds it
    # whole in ~1 % of the crops (why 6 epochs learnt no bicyclist); half the crops focused on a class
    # drawn among {car, bicyclist} put it in about a quarter of them
    corner = [295.0, 205.0, 305.0, 235.0]
    assert _crops_holding(corner, 3, focus=0.0) < 0.05
    assert 0.18 < _crops_holding(corner, 3, focus=0.5) < 0.32
    # a focused crop holds its box whole, shifted into the crop's own pixels
    assert _crops_holding(corner, 3, focus=1.0) > 0.4


def test_map_follows_the_coco_definition():
    truth = [np.array([[10, 10, 50, 50], [60, 60, 90, 100]], np.float32)]
    labels = [np.array([1, 2])]
    perfect = coco_map(truth, [np.array([0.9, 0.8])], labels, truth, labels)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map50_95"] == pytest.approx(1.0)
    assert np.isnan(perfect["ap50_per_class"]["sign"])  # no truth, no AP; not in the mean
    # a car box 8 px off, IoU 1280 / 1920 = 0.667: a hit at 0.50 .. 0.65, a miss from 0.70 on
    shifted = [np.array([[18, 10, 58, 50], [60, 60, 90, 100]], np.float32)]
    r = coco_map(shifted, [np.array([0.9, 0.8])], labels, truth, labels)
    assert r["ap50_per_class"]["car"] == pytest.approx(1.0)
    assert r["ap50_95_per_class"]["car"] == pytest.approx(0.4, abs=1e-6)  # 4 of 10 thresholds
    # a false alarm ranked above the hit: precision 1/2 at recall 1 -> AP 0.5 (101-point interpolation)
    fa = [np.array([[200, 200, 240, 240], [10, 10, 50, 50]], np.float32)]
    r = coco_map(fa, [np.array([0.95, 0.9])], [np.array([1, 1])], truth[:1], [np.array([1, 2])])
    assert r["ap50_per_class"]["car"] == pytest.approx(0.5)
    assert r["ap50_per_class"]["pedestrian"] == 0.0  # truth, never found
    by_bin = {b["score_lo"]: (b["detections"], b["hit_share_iou50"]) for b in r["calibration"]}
    assert by_bin[0.9] == (2, 0.5) and by_bin[0.5][0] == 0  # 0.95 a false alarm, 0.9 a hit


def test_an_ignored_tiny_box_is_neither_hit_nor_miss():
    truth = [np.array([[10, 10, 50, 50], [100, 100, 103, 104]], np.float32)]
    labels = [np.array([1, 1])]
    det = [np.array([[10, 10, 50, 50], [100, 100, 103, 104]], np.float32)]
    ignore = [np.array([False, True])]
    found = coco_map(det, [np.array([0.9, 0.95])], labels, truth, labels, ignore=ignore)
    missed = coco_map([det[0][:1]], [np.array([0.9])], [np.array([1])], truth, labels, ignore=ignore)
    assert found["map50"] == pytest.approx(1.0) and missed["map50"] == pytest.approx(1.0)
    assert found["truth_per_class"]["car"] == 1


# ---------------------------------------------------------------------------------------------- folders


@pytest.mark.skipif(not KITTI.is_dir(), reason="../shared/data/kitti_object not present")
def test_kitti_types_map_to_the_detector_classes():
    from perception.formats import load_folder, sniff
    from perception.formats.kitti import read_labels

    boxes, labels = read_labels(KITTI / "label_2" / "000000.txt")
    assert len(boxes) == len(labels) and set(labels.tolist()) <= {1, 2, 3}
    frames = load_folder(KITTI, size_px=(320, 240), fmt=sniff(KITTI))
    assert frames.images.shape[1:] == (3, 240, 320) and len(frames) == 3
    width = cv2.imread(str(KITTI / "image_2" / "000000.png")).shape[1]  # 1224..1242, 375 tall: 3.3:1
    assert frames.truth["scale"][0] == pytest.approx(320 / width)  # letterboxed: one scale, the width's


def test_kitti_label_lines_map_and_a_bad_line_is_named(tmp_path):
    from perception.formats.kitti import read_labels

    f = tmp_path / "000001.txt"
    f.write_text("Van 0 0 0 1 2 11 22 0 0 0 0 0 0 0\nPerson_sitting 0 0 0 5 5 9 19 0 0 0 0 0 0 0\n"
                 "Cyclist 0 0 0 1 1 2 2 0 0 0 0 0 0 0\nDontCare -1 -1 -10 1 1 5 5 -1 -1 -1 -1000 -1000 -1000 -10\n"
                 "Tram 0 0 0 1 1 5 5 0 0 0 0 0 0 0\n")
    boxes, labels = read_labels(f)
    assert [DETECTOR_CLASS_NAMES[i] for i in labels] == ["car", "pedestrian", "bicyclist"]
    assert boxes[0].tolist() == [1, 2, 11, 22]
    f.write_text("Car 0 0 0 1 2 11\nBoat 0 0 0 1 2 3 4 0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"000001.txt:1: not a KITTI object label"):
        read_labels(f)


def test_yolo_txt_boxes_in_pixels_with_and_without_classes_txt(tmp_path):
    from perception.formats import load_folder, sniff
    from perception.formats.yolo_txt import read_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((100, 200, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n3 0.25 0.25 0.1 0.1\n")
    [(_, boxes, labels)] = read_folder(tmp_path)
    assert labels.tolist() == [1, 3] and boxes[0].tolist() == pytest.approx([80, 30, 120, 70])
    (tmp_path / "classes.txt").write_text("pedestrian\ntree\ncar\n")
    (tmp_path / "labels" / "a.txt").write_text("2 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.1 0.1\n0 0.1 0.1 0.1 0.1\n")
    [(_, boxes, labels)] = read_folder(tmp_path)
    assert [DETECTOR_CLASS_NAMES[i] for i in labels] == ["car", "pedestrian"]  # tree is no detector class
    frames = load_folder(tmp_path, size_px=(64, 48), fmt=sniff(tmp_path))
    assert frames.truth["boxes"][0][0].tolist() == pytest.approx([80 * 0.32, 30 * 0.32, 120 * 0.32, 70 * 0.32])
    (tmp_path / "labels" / "a.txt").write_text("7 0.5 0.5 0.2 0.4\n")
    with pytest.raises(ValueError, match=r"a.txt:1: class 7 is outside the 3-class table"):
        read_folder(tmp_path)


# ---------------------------------------------------------------------------------------------- geometry


def test_a_wide_frame_is_letterboxed_and_boxes_come_back_in_its_pixels(tmp_path):
    from perception.models.detector.predictor import DetectorPredictor, fit_to_input

    wide = np.full((90, 240, 3), 255, np.uint8)
    prepared, scale = fit_to_input(wide, (64, 48))
    assert prepared.shape == (3, 48, 64) and scale == pytest.approx(64 / 240)
    assert prepared[:, :24].min() == 255 and prepared[:, 25:].max() == 0  # bars at the bottom, not stretched
    predictor = DetectorPredictor(save_tiny_detector(tmp_path / "t.pt"), device="cpu")
    [(boxes, scores, labels)] = predictor.detect_bgr([wide], score_threshold=0.0)
    assert len(boxes) and (boxes[:, 2] <= 240).all() and (boxes[:, 3] <= 90).all()


# ---------------------------------------------------------------------------------------------- evaluate


def test_evaluate_prints_map_per_class_as_json_and_bad_inputs_are_one_line(tmp_path, capsys):
    from nodes.cli import main
    from tests.conftest import save_tiny_posenet

    ckpt = save_tiny_detector(tmp_path / "tiny.pt")
    drive = write_box_drive(tmp_path / "d.mcap")
    no_boxes = write_box_drive(tmp_path / "plain.mcap", boxes=False)
    assert main(["evaluate", "detector", "--model", ckpt, "--data", drive, "--json", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"map50", "map50_95", "ap50_per_class", "ap50_95_per_class", "all_boxes"} <= set(r)
    assert set(r["ap50_per_class"]) == {"sign", "car", "pedestrian", "bicyclist"}
    assert r["truth_per_class"]["car"] == 6 and r["ap50_per_class"]["sign"] is None  # no sign truth: null
    posenet = save_tiny_posenet(tmp_path / "pose.pt", origin={"lat_deg": 34.0, "lon_deg": -118.0, "alt_m": 0.0})
    empty = tmp_path / "empty.mcap"
    with DriveWriter(empty, DriveMetadata(source="test")):
        pass
    for args, words in [(["--model", ckpt, "--data", no_boxes], [str(no_boxes), "truth/boxes"]),
                        (["--model", posenet, "--data", drive], ["pose.pt", "'posenet' model, not 'detector'"]),
                        (["--model", ckpt, "--data", str(empty)], [str(empty)]),
                        (["--model", ckpt, "--data", str(tmp_path)], [str(tmp_path), "not a KITTI"])]:
        code = main(["evaluate", "detector", *args, "--device", "cpu"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and "Traceback" not in lines[0], lines
        assert all(w in lines[0] for w in words), lines[0]


# ---------------------------------------------------------------------------------------------- default weights


def test_the_default_checkpoint_is_small_and_sees_nothing_in_a_black_frame():
    from perception.models import default_weights
    from perception.models.detector.predictor import DetectorPredictor

    entry = default_weights("detector")
    if not entry.path.is_file():
        pytest.skip("perception/weights/detector_synthetic_city.pt not trained yet")
    assert entry.path.stat().st_size <= 15e6
    predictor = DetectorPredictor(device="cpu")
    assert predictor.class_names == ["sign", "car", "pedestrian", "bicyclist"]
    assert predictor.class_ids == [SIGN, CAR, PEDESTRIAN, BICYCLIST]
    [(boxes, _, _)] = predictor.detect_bgr([np.zeros((240, 320, 3), np.uint8)])
    assert len(boxes) == 0
