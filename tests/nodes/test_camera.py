"""The live camera node, with a video file standing in for a device."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from nodes.camera import Camera, CameraParams, load_calibration


def make_video(path, frames: int = 12, size=(96, 64), fps: float = 20.0) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, : (i + 1) * 6] = (0, 200, 0)
        writer.write(img)
    writer.release()
    return str(path)


def test_video_file_publishes_frames_like_replay(tmp_path):
    video = make_video(tmp_path / "v.avi")
    cam = Camera(CameraParams(source=video, encoding="jpeg", hfov_deg=90.0))
    assert cam.tick_hz() == pytest.approx(20.0)
    outputs = []
    while not cam.is_finished():
        outputs.extend(cam.on_tick(0))
    assert len(outputs) == 12
    topic, msg = outputs[0]
    assert topic == "camera/image" and msg.encoding == "jpeg" and (msg.width_px, msg.height_px) == (96, 64)
    assert msg.intrinsics.fx_px == pytest.approx(48.0) and msg.intrinsics.cx_px == 48.0
    decoded = cv2.imdecode(msg.data, cv2.IMREAD_COLOR)
    assert decoded.shape == (64, 96, 3)
    green = cv2.imdecode(outputs[-1][1].data, cv2.IMREAD_COLOR)[:, :, 1].mean()
    assert green > decoded[:, :, 1].mean()  # the bar grows frame by frame: frames come in order


def test_resize_and_calibration_rescaled(tmp_path):
    video = make_video(tmp_path / "v.avi")
    calib = tmp_path / "cam.toml"
    calib.write_text("width_px = 96\nheight_px = 64\nfx_px = 80.0\nfy_px = 81.0\ncx_px = 47.5\ncy_px = 31.5\n")
    cam = Camera(CameraParams(source=video, encoding="bgr8", width_px=48, height_px=32, calibration=str(calib)))
    _, msg = cam.on_tick(0)[0]
    assert msg.data.shape == (32, 48, 3)
    assert (msg.intrinsics.fx_px, msg.intrinsics.fy_px, msg.intrinsics.cx_px) == (40.0, 40.5, 23.75)


def test_missing_camera_is_reported_then_reopened(tmp_path):
    video = tmp_path / "later.avi"
    cam = Camera(CameraParams(source=str(video), reopen_interval_s=0.01))
    assert cam.on_tick(0) == ()
    assert "cannot open" in cam.health()["camera-lost"]
    shutil.copy(make_video(tmp_path / "v.avi"), video)  # the camera comes back
    import time

    time.sleep(0.02)
    cam.on_tick(0)  # reopens
    outputs = cam.on_tick(0)
    assert outputs and cam.health() == {}
    assert cam.failures >= 1


def test_bad_calibration_names_file_and_key(tmp_path):
    calib = tmp_path / "cam.toml"
    calib.write_text("width_px = 96\nheight_px = 64\nfx_px = -1\nfy_px = 1\ncx_px = 1\ncy_px = 1\n")
    with pytest.raises(ValueError, match=r"cam.toml: fx_px = -1"):
        load_calibration(str(calib))
    calib.write_text("width_px = 96\n")
    with pytest.raises(ValueError, match="missing key 'height_px'"):
        load_calibration(str(calib))
