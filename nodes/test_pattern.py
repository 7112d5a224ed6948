"""A camera that needs no hardware: publishes a moving test pattern on ``camera/image``.

For bringing up a graph, load-testing the bus and perception nodes, and the launch tests; like
ROS's ``image_publisher`` or a V4L2 test-pattern device.
"""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
import numpy as np

from nodes.bus.messages import Header, Image
from nodes.runtime import Node, Outputs, node_main
from perception.drives.messages import CameraInfo
from perception.drives.topics import CAMERA_TOPIC


class TestPatternParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rate_hz: Annotated[float, msgspec.Meta(gt=0, le=1000, description="frames per second")] = 10.0
    width_px: Annotated[int, msgspec.Meta(ge=16, le=7680, description="image width")] = 320
    height_px: Annotated[int, msgspec.Meta(ge=16, le=4320, description="image height")] = 240
    encoding: Annotated[str, msgspec.Meta(pattern="^(bgr8|jpeg)$", description="bgr8 or jpeg")] = "bgr8"
    hfov_deg: Annotated[float, msgspec.Meta(gt=1, lt=179, description="horizontal field of view")] = 90.0


class TestPatternCamera(Node):
    """Publishes colour bars with a moving bar and the frame number, at rate_hz."""

    __test__ = False  # not a pytest test class
    name = "test_pattern"
    Params = TestPatternParams
    publishes = (CAMERA_TOPIC,)

    def __init__(self, params: TestPatternParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        bars = np.array([[255, 255, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0],
                         [255, 0, 255], [0, 0, 255], [255, 0, 0], [0, 0, 0]], np.uint8)
        cols = (np.arange(p.width_px) * len(bars) // p.width_px)
        self._background = np.broadcast_to(bars[cols][None], (p.height_px, p.width_px, 3)).copy()
        self._intrinsics = CameraInfo.from_hfov(p.width_px, p.height_px, p.hfov_deg)
        self.frame_index = 0

    def tick_hz(self) -> float:
        return self.params.rate_hz

    def render(self, frame_index: int) -> np.ndarray:
        """The BGR frame number ``frame_index``: uint8 [H, W, 3]."""
        img = self._background.copy()
        w = self.params.width_px
        x = (frame_index * 4) % w
        img[:, x:x + max(2, w // 40)] = 128
        # frame number in binary along the top rows, so a receiver can check what it got
        bits = (frame_index >> np.arange(16)) & 1
        cell = max(1, w // 16)
        img[:4, : 16 * cell] = np.repeat(bits * 255, cell)[:, None].astype(np.uint8)
        return img

    def on_tick(self, now_ns: int) -> Outputs:
        img = self.render(self.frame_index)
        p = self.params
        if p.encoding == "jpeg":
            import cv2

            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            data = buf.reshape(-1)
        else:
            data = img
        self.frame_index += 1
        msg = Image(header=Header(stamp_ns=time.time_ns(), frame_id="camera"), width_px=p.width_px,
                    height_px=p.height_px, encoding=p.encoding, data=data, intrinsics=self._intrinsics)
        return [(CAMERA_TOPIC, msg)]


if __name__ == "__main__":
    raise SystemExit(node_main(TestPatternCamera))
