"""The live camera: OpenCV capture of a device, a video file or a stream URL onto ``camera/image``.

Publishes exactly what replay publishes (``Image`` with intrinsics, JPEG or raw BGR), stamped with the
wall-clock time of capture.

A video file stands in for a device: it plays at its own frame rate (or ``fps``), in real time. Like a
device, it does not wait for a node that falls behind: frames whose time has passed are skipped (counted,
``late_frames`` in the close line) rather than published late. A device is opened with a one-frame
driver buffer where the backend allows (V4L2), so that a read returns the newest frame, not one that
waited in the driver's queue. A camera that disappears (unplugged, stream down, unreadable file) is
reported in diagnostics and reopened every ``reopen_interval_s``; the node never dies of it.

Calibration file (TOML), pixels of the calibrated resolution::

    width_px = 640
    height_px = 480
    fx_px = 525.0
    fy_px = 525.0
    cx_px = 319.5
    cy_px = 239.5

Without one, intrinsics come from ``hfov_deg`` (a pinhole with the principal point at the centre).
Intrinsics are rescaled when frames are resized to ``width_px`` x ``height_px``.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from typing import Annotated

import cv2
import msgspec
import numpy as np

from nodes.bus.messages import CameraInfo, Header, Image
from nodes.runtime import Node, Outputs, node_main
from perception.drives.topics import CAMERA_TOPIC

log = logging.getLogger("streetloc.camera")


class CameraParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    source: Annotated[str, msgspec.Meta(description="device index ('0'), video file or stream URL")] = "0"
    width_px: Annotated[int, msgspec.Meta(ge=0, description="output width (0: as captured)")] = 0
    height_px: Annotated[int, msgspec.Meta(ge=0, description="output height (0: as captured)")] = 0
    fps: Annotated[float, msgspec.Meta(ge=0, description="frames per second to publish (0: the source's rate)")] = 0.0
    encoding: Annotated[str, msgspec.Meta(pattern="^(jpeg|bgr8)$", description="jpeg or bgr8")] = "jpeg"
    jpeg_quality: Annotated[int, msgspec.Meta(ge=1, le=100, description="JPEG quality")] = 90
    calibration: Annotated[str, msgspec.Meta(description="TOML file of intrinsics ('' = from hfov_deg)")] = ""
    hfov_deg: Annotated[float, msgspec.Meta(gt=1, lt=179, description="horizontal FOV without calibration")] = 70.0
    loop: Annotated[bool, msgspec.Meta(description="video files: start over at the end")] = False
    reopen_interval_s: Annotated[float, msgspec.Meta(gt=0, description="retry period of a lost camera")] = 1.0


def load_calibration(path: str) -> CameraInfo:
    """The camera of a calibration TOML (size and pinhole intrinsics, in pixels); ValueError naming the
    file and key."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    values = {}
    for key in ("width_px", "height_px", "fx_px", "fy_px", "cx_px", "cy_px"):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r}")
        value = data[key]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{path}: {key} = {value!r} is not a positive number")
        values[key] = float(value)
    return CameraInfo(int(values["width_px"]), int(values["height_px"]), values["fx_px"], values["fy_px"],
                      values["cx_px"], values["cy_px"])


class Camera(Node):
    """Captures frames with OpenCV and publishes them on camera/image."""

    name = "camera"
    Params = CameraParams
    publishes = (CAMERA_TOPIC,)

    def __init__(self, params: CameraParams | None = None) -> None:
        super().__init__(params)
        p: CameraParams = self.params
        self._calibration = load_calibration(p.calibration) if p.calibration else None
        self._capture: cv2.VideoCapture | None = None
        self._is_file = not p.source.isdigit() and "://" not in p.source
        self._next_open = 0.0
        self._source_fps = 0.0
        self._finished = False
        self._play_t0 = 0.0  # video files: wall time (monotonic) of frame 0 of the current pass
        self._play_index = 0  # video files: frames taken (read or skipped) in the current pass
        self.frames = 0
        self.late_frames = 0  # video files: frames skipped because their time had passed
        self.failures = 0  # opens or reads that failed
        self.problem = ""
        self._open()

    # -- capture -----------------------------------------------------------------------------------
    def _open(self) -> bool:
        p = self.params
        source: int | str = int(p.source) if p.source.isdigit() else p.source
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            self.failures += 1
            self.problem = f"cannot open camera source {p.source!r}"
            if self.failures == 1:
                log.warning("%s; retrying every %.1f s", self.problem, p.reopen_interval_s)
            self._next_open = time.monotonic() + p.reopen_interval_s
            return False
        if not self._is_file:
            if p.width_px and p.height_px:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, p.width_px)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, p.height_px)
            if p.fps:
                capture.set(cv2.CAP_PROP_FPS, p.fps)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queued one (V4L2; else ignored)
        self._play_t0, self._play_index = 0.0, 0
        self._source_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        if self.problem:
            log.info("camera source %r is back", p.source)
        self.problem = ""
        self._capture = capture
        return True

    def _lost(self, why: str) -> None:
        self.failures += 1
        self.problem = why
        log.warning("%s; reopening", why)
        if self._capture is not None:
            self._capture.release()
        self._capture = None
        self._next_open = time.monotonic() + self.params.reopen_interval_s

    def tick_hz(self) -> float:
        if self.params.fps:
            return self.params.fps
        return self._source_fps if 0 < self._source_fps <= 240 else 30.0

    def intrinsics_for(self, width_px: int, height_px: int) -> CameraInfo:
        """Intrinsics of a published frame of this size (calibration rescaled, or from the FOV)."""
        if self._calibration is not None:
            return self._calibration.scaled(width_px, height_px)
        return CameraInfo.from_hfov(width_px, height_px, self.params.hfov_deg)

    def on_tick(self, now_ns: int) -> Outputs:
        if self._capture is None:
            if time.monotonic() >= self._next_open:
                self._open()
            return ()
        if self._is_file:
            self._skip_late_frames()
        ok, frame = self._capture.read()
        stamp_ns = time.time_ns()
        self._play_index += 1
        if not ok or frame is None:
            if self._is_file and self.frames > 0:
                if self.params.loop:
                    self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    self._play_t0, self._play_index = 0.0, 0
                    return ()
                self._finished = True
                return ()
            self._lost(f"camera source {self.params.source!r} gave no frame")
            return ()
        return [(CAMERA_TOPIC, self.make_image(frame, stamp_ns))]

    def _skip_late_frames(self) -> None:
        """A file played in real time: skip the frames whose time has passed (this tick came late), as a
        device would have overwritten them."""
        now = time.monotonic()
        if self._play_index == 0:
            self._play_t0 = now
            return
        due = int((now - self._play_t0) * self.tick_hz() + 1e-6)  # the frame whose time it is now
        while self._play_index < due:
            if self._capture is None or not self._capture.grab():  # the end: read() below finds it
                return
            self._play_index += 1
            self.late_frames += 1

    def make_image(self, frame: np.ndarray, stamp_ns: int) -> Image:
        """The bus message of one captured frame (uint8 [H, W, 3] BGR or [H, W] grey)."""
        p = self.params
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if p.width_px and p.height_px and frame.shape[:2] != (p.height_px, p.width_px):
            frame = cv2.resize(frame, (p.width_px, p.height_px), interpolation=cv2.INTER_AREA)
        height, width = frame.shape[:2]
        if p.encoding == "jpeg":
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            data = buf.reshape(-1)
        else:
            data = np.ascontiguousarray(frame)
        self.frames += 1
        return Image(Header(stamp_ns=stamp_ns, frame_id="camera"), width_px=width, height_px=height,
                     encoding=p.encoding, data=data, intrinsics=self.intrinsics_for(width, height))

    def health(self) -> dict[str, str]:
        return {"camera-lost": self.problem} if self.problem else {}

    def is_finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        log.info("camera: %d frames published%s", self.frames,
                 f", {self.late_frames} skipped as late (the node fell behind the file's rate)" if self.late_frames else "")
        if self._capture is not None:
            self._capture.release()


if __name__ == "__main__":
    raise SystemExit(node_main(Camera))
