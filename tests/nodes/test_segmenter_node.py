"""The segmenter node: images in, label masks with their class table and pixel fractions out; bad frames
counted, never fatal; queued frames batched; a lock-step replay of a shipped drive records every mask."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nodes.bus.messages import Header, Image, Segmentation
from nodes.segmenter import SegmenterNode, SegmenterParams
from perception.classes import CLASS_NAMES, NUM_CLASSES
from perception.drives import DriveReader
from perception.drives.topics import CAMERA_TOPIC, SEGMENTATION_TOPIC
from sim_data import DEFAULT_DEMO_DRIVE
from tests.perception.test_segmenter import save_tiny_segmenter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """An untrained tiny PSPNet (32x24) with a complete record: the node's behaviour, not its accuracy."""
    return save_tiny_segmenter(tmp_path_factory.mktemp("ckpt") / "tiny_seg.pt")


def image(stamp_ns: int, w: int = 32, h: int = 24, encoding: str = "bgr8", data=None) -> Image:
    if data is None:
        data = np.random.default_rng(stamp_ns % 1000).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image(header=Header(stamp_ns=stamp_ns, frame_id="camera"), width_px=w, height_px=h, encoding=encoding,
                 data=data)


def check_mask(seg: Segmentation, node: SegmenterNode, stamp_ns: int) -> None:
    assert seg.header.stamp_ns == stamp_ns and seg.model_id == node.model_id and seg.valid
    assert seg.label_mask.dtype == np.uint8 and seg.label_mask.shape == (24, 32)  # the model's output size
    assert seg.label_mask.max() < NUM_CLASSES  # never the ignore label
    assert seg.class_names == list(CLASS_NAMES)  # the whole table the ids index
    counts = np.bincount(seg.label_mask.ravel(), minlength=len(CLASS_NAMES)) / seg.label_mask.size
    assert seg.class_fractions == pytest.approx(counts.tolist())
    assert sum(seg.class_fractions) == pytest.approx(1.0)


def test_an_image_becomes_a_mask_of_the_same_stamp(checkpoint):
    node = SegmenterNode(SegmenterParams(model=checkpoint, device="cpu"))
    [(topic, seg)] = node.on_message(CAMERA_TOPIC, image(7), 0)
    assert topic == SEGMENTATION_TOPIC
    check_mask(seg, node, 7)


def test_other_sizes_mono_and_jpeg_are_resized_and_labelled(checkpoint):
    node = SegmenterNode(SegmenterParams(model=checkpoint, device="cpu"))
    big = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", big)
    for msg in [image(1, 640, 480, data=big), image(2, 640, 480, "mono8", big[:, :, 0]),
                image(3, 640, 480, "jpeg", jpeg.reshape(-1))]:
        [(_, seg)] = node.on_message(CAMERA_TOPIC, msg, 0)
        check_mask(seg, node, msg.header.stamp_ns)
    assert node.resized == 3


@pytest.mark.parametrize("bad", [
    image(5, encoding="jpeg", data=np.frombuffer(b"\xff\xd8 not a jpeg at all", np.uint8).copy()),
    image(5, data=np.zeros((24, 32, 4), np.uint8)),  # BGRA where BGR was promised
    image(5, data=np.zeros((24, 32, 3), np.float32)),
    image(5, encoding="rgb16", data=np.zeros((24, 32, 3), np.uint8)),  # an encoding it cannot read
])
def test_a_bad_frame_is_rejected_and_counted_and_the_next_is_labelled(checkpoint, bad):
    node = SegmenterNode(SegmenterParams(model=checkpoint, device="cpu"))
    assert list(node.on_message(CAMERA_TOPIC, bad, 0)) == []  # no answer, no exception
    [(kind, detail)] = node.take_errors()  # reject:camera/image in diagnostics, as in a batch
    assert kind == "reject:camera/image" and "stamp_ns=5" in detail
    assert node.rejected == 1
    [(_, seg)] = node.on_message(CAMERA_TOPIC, image(6), 0)
    check_mask(seg, node, 6)


def test_a_batch_labels_the_good_frames_and_lists_the_bad(checkpoint):
    node = SegmenterNode(SegmenterParams(model=checkpoint, device="cpu", delivery="every", max_batch=8))
    assert node.max_batch(CAMERA_TOPIC) == 8
    bad = image(2, encoding="jpeg", data=np.zeros(10, np.uint8))
    outputs = node.on_batch(CAMERA_TOPIC, [image(1), bad, image(3)], 0)
    rejects = node.take_errors()
    assert [seg.header.stamp_ns for _, seg in outputs] == [1, 3] and len(rejects) == 1
    assert rejects[0][0] == f"reject:{CAMERA_TOPIC}" and "stamp_ns=2" in rejects[0][1]
    single = node.on_message(CAMERA_TOPIC, image(3), 0)[0][1]
    assert np.array_equal(single.label_mask, outputs[1][1].label_mask)  # batching changes nothing
    assert node.batches == 2 and node.largest_batch == 2


def test_a_wrong_model_is_a_parameter_error(tmp_path):
    from tests.conftest import save_tiny_posenet

    with pytest.raises((ValueError, OSError), match="nope.pt"):
        SegmenterNode(SegmenterParams(model=str(tmp_path / "nope.pt"), device="cpu"))
    posenet = save_tiny_posenet(tmp_path / "pose.pt", origin={"lat_deg": 34.0, "lon_deg": -118.0, "alt_m": 0.0})
    with pytest.raises(ValueError, match="'posenet' model, not 'segmenter'"):
        SegmenterNode(SegmenterParams(model=posenet, device="cpu"))


def test_lockstep_replay_of_a_shipped_drive_records_a_mask_for_every_frame(checkpoint, bus_config, tmp_path):
    end_s = 3.0
    launch = tmp_path / "segmenter.toml"
    launch.write_text(f'description = "the segmenter alone"\nexternal_topics = ["camera/image"]\n\n'
                      f'[nodes.segmenter]\nmodule = "nodes.segmenter"\n\n[nodes.segmenter.params]\n'
                      f'model = "{checkpoint}"\ndevice = "cpu"\ndelivery = "every"\n')
    run = tmp_path / "run.mcap"
    out = subprocess.run([sys.executable, "-m", "nodes.cli", "replay", str(DEFAULT_DEMO_DRIVE), "--lockstep",
                          "--lockstep-topics", SEGMENTATION_TOPIC, "--end-s", str(end_s), "--launch", str(launch),
                          "--record", str(run), "--record-topics", SEGMENTATION_TOPIC],
                         capture_output=True, text=True, cwd=REPO, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "unanswered" not in out.stderr
    with DriveReader(DEFAULT_DEMO_DRIVE) as drive:
        frames = [s for s in drive.image_stamps() if s < drive.start_ns + end_s * 1e9]
    with DriveReader(run) as recorded:
        masks = list(recorded.label_masks(SEGMENTATION_TOPIC))
    assert len(frames) >= 5 and sorted(m.header.stamp_ns for m in masks) == frames
    assert all(m.label_mask.shape == (24, 32) and m.label_mask.max() < NUM_CLASSES for m in masks)


def test_importing_the_node_leaves_torch_out():
    """The launcher reads the node's Params to check a launch file: that must not cost a torch import."""
    code = ("import sys, nodes.segmenter\n"
            "sys.exit('nodes.segmenter imported torch' if 'torch' in sys.modules else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
