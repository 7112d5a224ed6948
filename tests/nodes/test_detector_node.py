"""The detector node: images in, Detections of the same stamp out (frame pixels, project class ids); bad
frames counted, never fatal; queued frames batched; a lock-step replay through launch/replay.toml records
the detections of every frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nodes.bus.messages import Header, Image
from nodes.detector import DetectorNode, DetectorParams
from perception.classes import DETECTABLE_CLASSES
from perception.drives import DriveReader
from perception.drives.topics import CAMERA_TOPIC, DETECTIONS_TOPIC
from tests.perception.test_detector import save_tiny_detector

REPO = Path(__file__).resolve().parents[2]
DRIVE = REPO / "sim_data" / "drives" / "test_small.mcap"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return save_tiny_detector(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def image(stamp_ns: int, w: int = 64, h: int = 48, encoding: str = "bgr8", data=None) -> Image:
    if data is None:
        data = np.random.default_rng(stamp_ns % 1000).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image(header=Header(stamp_ns=stamp_ns, frame_id="camera"), width_px=w, height_px=h, encoding=encoding,
                 data=data)


def node(checkpoint: str, **params) -> DetectorNode:
    # threshold 0: an untrained model's low scores still give boxes to check
    return DetectorNode(DetectorParams(model=checkpoint, device="cpu", score_threshold=0.0, **params))


def check(det, stamp_ns: int, w: int, h: int, model_id: str) -> None:
    assert det.header.stamp_ns == stamp_ns and det.model_id == model_id and det.valid
    assert (det.image_width_px, det.image_height_px) == (w, h)
    n = len(det.scores)
    assert n > 0 and det.boxes_xyxy_px.shape == (n, 4) and det.boxes_xyxy_px.dtype == np.float32
    b = det.boxes_xyxy_px
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
    assert set(det.class_ids.tolist()) <= set(DETECTABLE_CLASSES)
    assert {det.class_names[i] for i in det.class_ids} <= {"sign", "car", "pedestrian", "bicyclist"}


def test_a_frame_becomes_detections_of_the_same_stamp_in_its_own_pixels(checkpoint):
    n = node(checkpoint)
    [(topic, det)] = n.on_message(CAMERA_TOPIC, image(5), 0)
    assert topic == DETECTIONS_TOPIC
    check(det, 5, 64, 48, n.model_id)
    big = np.random.default_rng(1).integers(0, 256, (90, 240, 3), dtype=np.uint8)  # 8:3, letterboxed
    ok, jpeg = cv2.imencode(".jpg", big)
    [(_, det)] = n.on_message(CAMERA_TOPIC, image(6, 240, 90, "jpeg", jpeg.reshape(-1)), 0)
    check(det, 6, 240, 90, n.model_id)
    assert n.resized == 1 and n.letterboxed == 1


@pytest.mark.parametrize("bad", [
    image(5, encoding="jpeg", data=np.frombuffer(b"\xff\xd8 not a jpeg at all", np.uint8).copy()),
    image(5, data=np.zeros((48, 64, 4), np.uint8)),
    image(5, data=np.zeros((48, 64, 3), np.float32)),
    image(5, w=80, data=np.zeros((48, 64, 3), np.uint8)),  # says 80 wide, holds 64
])
def test_a_bad_frame_is_rejected_and_counted_and_the_next_is_fine(checkpoint, bad):
    n = node(checkpoint)
    assert list(n.on_message(CAMERA_TOPIC, bad, 0)) == []  # no answer, no exception
    [(kind, detail)] = n.take_errors()  # reject:camera/image in diagnostics, as in a batch
    assert kind == "reject:camera/image" and "stamp_ns=5" in detail
    assert n.rejected == 1
    [(_, det)] = n.on_message(CAMERA_TOPIC, image(6), 0)
    check(det, 6, 64, 48, n.model_id)


def test_a_batch_detects_in_the_good_frames_and_lists_the_bad(checkpoint):
    n = node(checkpoint, delivery="every")
    out = n.on_batch(CAMERA_TOPIC, [image(1), image(2, encoding="jpeg", data=np.zeros(10, np.uint8)), image(3)], 0)
    assert [d.header.stamp_ns for _, d in out] == [1, 3] and len(n.take_errors()) == 1
    [(_, single)] = n.on_message(CAMERA_TOPIC, image(3), 0)
    np.testing.assert_allclose(single.boxes_xyxy_px, out[1][1].boxes_xyxy_px, atol=1e-3)  # batching changes nothing


def test_another_models_checkpoint_is_a_parameter_error(tmp_path):
    from tests.conftest import save_tiny_posenet

    posenet = save_tiny_posenet(tmp_path / "pose.pt", origin={"lat_deg": 34.0, "lon_deg": -118.0, "alt_m": 0.0})
    with pytest.raises(ValueError, match=r"pose.pt: holds a 'posenet' model, not 'detector'"):
        DetectorNode(DetectorParams(model=posenet, device="cpu"))
    with pytest.raises((ValueError, OSError), match="nope.pt"):
        DetectorNode(DetectorParams(model=str(tmp_path / "nope.pt"), device="cpu"))


@pytest.mark.slow  # ~15 s alone (three nodes import torch), a minute on the shared 2-core machine
def test_a_lockstep_replay_records_the_detections_of_every_frame(checkpoint, bus_config, tmp_path):
    run = tmp_path / "run.mcap"
    out = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "replay", str(DRIVE), "--lockstep", "--end-s", "3",
         "--launch", "launch/replay.toml", "--arg", "detector=true", "--arg", f"detector_model={checkpoint}",
         "--arg", "device=cpu", "--arg", "monitor=false", "--lockstep-topics", "perception/detections",
         "--record", str(run)], capture_output=True, text=True, cwd=REPO, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    with DriveReader(DRIVE) as drive:
        frames = [s for s in drive.image_stamps() if s < drive.start_ns + 3_000_000_000]
    with DriveReader(run) as recorded:
        stamps = sorted({raw.stamp_ns for raw in recorded.messages([DETECTIONS_TOPIC])})
        sets = list(recorded.boxes(DETECTIONS_TOPIC))
    assert stamps == frames and len(frames) >= 3
    assert all(d.model_id.startswith("detector-") for d in sets)
