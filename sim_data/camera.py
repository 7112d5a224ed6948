"""The simulated camera: a pinhole with zero pitch and roll, looking along the vehicle's heading.

Frames and conventions (the same as ``perception.drives.CameraInfo``):

- World: the city's local ENU frame (east_m, north_m, up_m) at the drive's geo origin.
- Camera: x right, y down, z forward (OpenCV); the optical axis is horizontal, ``height_m`` above the
  road, pointing along ``heading_deg`` (degrees clockwise from north, as a compass reads).
- Image: continuous pixel coordinates (u, v) with pixel (i, j) covering [i, i+1) x [j, j+1), so its
  centre is (i + 0.5, j + 0.5) and the principal point of a centred camera is (W/2, H/2). Boxes use the
  same coordinates: a box (x1, y1, x2, y2) covers the pixels x1 <= i < x2, y1 <= j < y2.

Because the camera never pitches or rolls, every vertical line in the world projects to an image column
and every point at one depth has one depth for its whole column, which is what lets the renderer draw
walls and objects column by column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.drives.messages import CameraInfo


class PinholeCamera(CameraInfo, frozen=True):
    """The simulated camera: a ``CameraInfo`` without distortion (see the module docstring for the pixel
    convention), plus the projections the renderer needs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width_px < 8 or self.height_px < 8:
            raise ValueError(f"image size {self.width_px}x{self.height_px} px is too small (at least 8x8)")

    @classmethod
    def from_hfov(cls, width_px: int, height_px: int, hfov_deg: float = 70.0) -> PinholeCamera:
        """Square pixels, principal point at the image centre, focal length from the horizontal FOV."""
        if not 10.0 <= hfov_deg <= 150.0:  # narrower than a real camera may be: the renderer's range
            raise ValueError(f"horizontal field of view {hfov_deg!r} deg is outside [10, 150]")
        return super().from_hfov(int(width_px), int(height_px), hfov_deg)

    def column_slopes(self) -> np.ndarray:
        """x/z of the ray through each pixel column's centre, float64 [W]."""
        return (np.arange(self.width_px) + 0.5 - self.cx_px) / self.fx_px

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points float [N, 3] (x right, y down, z forward, m) -> pixel coords float [N, 2]
        (u, v). Points need z > 0; no check (callers cull)."""
        p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        return np.stack([self.cx_px + self.fx_px * p[:, 0] / p[:, 2], self.cy_px + self.fy_px * p[:, 1] / p[:, 2]], 1)


@dataclass(frozen=True)
class CameraPose:
    """Where the camera is: ENU position of the optical centre and compass heading of the optical axis."""

    east_m: float
    north_m: float
    heading_deg: float
    height_m: float = 1.5  # above the road surface

    @property
    def forward_en(self) -> np.ndarray:
        """Unit optical axis in (east, north), float64 [2]."""
        h = math.radians(self.heading_deg)
        return np.array([math.sin(h), math.cos(h)])

    @property
    def right_en(self) -> np.ndarray:
        """Unit camera x axis (image right) in (east, north), float64 [2]."""
        h = math.radians(self.heading_deg)
        return np.array([math.cos(h), -math.sin(h)])

    def world_to_camera(self, east_m, north_m, up_m) -> np.ndarray:
        """ENU points (arrays of one shape, m) -> camera-frame points float64 [..., 3] (x right, y down,
        z forward)."""
        de = np.asarray(east_m, dtype=np.float64) - self.east_m
        dn = np.asarray(north_m, dtype=np.float64) - self.north_m
        f, r = self.forward_en, self.right_en
        x = de * r[0] + dn * r[1]
        z = de * f[0] + dn * f[1]
        y = self.height_m - np.asarray(up_m, dtype=np.float64)
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1)

    def project(self, camera: PinholeCamera, east_m, north_m, up_m) -> tuple[np.ndarray, np.ndarray]:
        """ENU points -> (pixel coords float64 [N, 2], depth z float64 [N]); z <= 0 means behind the camera."""
        p = self.world_to_camera(east_m, north_m, up_m).reshape(-1, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = camera.project(p)
        return uv, p[:, 2]
