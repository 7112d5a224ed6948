"""Time of day -> lighting: sun direction, surface gain and tint, sky colours, haze, lit windows.

A deliberately simple model (no shadows): everything lit is scaled by ``gain`` and tinted by
``tint_bgr``; facades are shaded by how squarely they face the sun; at night windows and lamps glow.
Colours are BGR (OpenCV order), 0-255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Sky colour keyframes (BGR) by sun elevation in degrees: (elevation, zenith, horizon).
_SKY_KEYS: tuple[tuple[float, tuple[int, int, int], tuple[int, int, int]], ...] = (
    (-12.0, (40, 22, 12), (70, 45, 35)),  # night: deep blue, faint city glow at the horizon
    (-3.0, (95, 55, 45), (90, 110, 190)),  # civil twilight: violet above, orange glow below
    (4.0, (170, 120, 90), (120, 170, 240)),  # sunrise / sunset
    (15.0, (215, 160, 110), (215, 205, 200)),  # low sun
    (45.0, (225, 165, 95), (235, 220, 205)),  # day
)


@dataclass(frozen=True)
class Lighting:
    """Lighting of one drive (constant through it)."""

    hour: float  # local solar-ish time, 0-24
    sun_elevation_deg: float  # negative: below the horizon
    sun_azimuth_deg: float  # compass, clockwise from north
    gain: float  # brightness multiplier of lit surfaces
    tint_bgr: tuple[float, float, float]  # colour multiplier of lit surfaces
    sky_zenith_bgr: tuple[int, int, int]
    sky_horizon_bgr: tuple[int, int, int]
    haze_bgr: tuple[int, int, int]  # colour distant things fade to
    haze_start_m: float  # haze begins at this distance
    haze_length_m: float  # e-folding distance of the haze beyond haze_start_m
    night: float  # 0 day .. 1 full night: how strongly windows and lamps glow
    directional: float  # 0 overcast/night .. 1 clear sun: strength of facade shading
    overcast: bool

    def face_gain(self, normal_heading_deg: np.ndarray) -> np.ndarray:
        """Shading of vertical surfaces whose outward normals point to ``normal_heading_deg`` (compass),
        float32 array of the same shape: 1 facing the sun, darker facing away."""
        cos_sun = np.cos(np.radians(np.asarray(normal_heading_deg, dtype=np.float64) - self.sun_azimuth_deg))
        return (1.0 + self.directional * (0.22 * cos_sun - 0.08)).astype(np.float32)


def _interp_sky(elevation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    els = np.array([k[0] for k in _SKY_KEYS])
    zen = np.array([k[1] for k in _SKY_KEYS], dtype=np.float64)
    hor = np.array([k[2] for k in _SKY_KEYS], dtype=np.float64)
    e = float(np.clip(elevation_deg, els[0], els[-1]))
    z = np.array([np.interp(e, els, zen[:, c]) for c in range(3)])
    h = np.array([np.interp(e, els, hor[:, c]) for c in range(3)])
    return z, h


def lighting_for(hour: float, *, overcast: bool = False) -> Lighting:
    """Lighting at local time ``hour`` (0-24) of a summer day in the city: sun up ~6:00, down ~20:00,
    highest (~75 deg) in the south at 13:00."""
    if not (math.isfinite(hour) and 0.0 <= hour <= 24.0):
        raise ValueError(f"time of day {hour!r} h is outside [0, 24]")
    day_frac = (hour - 6.0) / 14.0  # 0 at sunrise, 1 at sunset
    if 0.0 <= day_frac <= 1.0:
        elevation = 75.0 * math.sin(math.pi * day_frac)
    else:  # below the horizon, sinking at the rate it set (about 17 deg/h), down to -18 deg
        hours_out = 6.0 - hour if hour < 6.0 else hour - 20.0
        elevation = -min(18.0, 75.0 * math.pi / 14.0 * hours_out)
    azimuth = (90.0 + 180.0 * day_frac) % 360.0  # east at sunrise, south at 13:00, west at sunset
    sun_up = max(0.0, math.sin(math.radians(max(elevation, 0.0))))
    night = float(np.clip((2.0 - elevation) / 8.0, 0.0, 1.0))  # glow from shortly before sunset
    zenith, horizon = _interp_sky(elevation)
    gain = 0.30 + 0.70 * min(1.0, sun_up * 2.2 + 0.05) if elevation > -6.0 else 0.30
    # Low sun is warm (more red, less blue); night is cool and dark.
    warm = float(np.clip(1.0 - elevation / 20.0, 0.0, 1.0)) * (1.0 - night)
    tint = np.array([1.0 - 0.18 * warm, 1.0 - 0.05 * warm, 1.0 + 0.10 * warm])
    tint = tint * (1.0 - 0.25 * night) + np.array([1.08, 0.95, 0.85]) * 0.25 * night
    directional = float(np.clip(sun_up * 3.0, 0.0, 1.0))
    haze_start, haze_len = 50.0, 320.0
    if overcast:
        grey = 0.55 * zenith.mean() + 0.45 * 200.0 * (1.0 - night)
        zenith = np.full(3, grey * 0.9) + np.array([6.0, 2.0, 0.0])
        horizon = np.full(3, grey * 1.05) + np.array([4.0, 2.0, 0.0])
        gain *= 0.82
        tint = 0.5 * tint + 0.5
        directional *= 0.15
        haze_start, haze_len = 30.0, 180.0
    if night > 0.5:
        haze_len *= 0.6
    haze = 0.35 * zenith + 0.65 * horizon
    return Lighting(
        hour=float(hour),
        sun_elevation_deg=float(elevation),
        sun_azimuth_deg=float(azimuth),
        gain=float(gain),
        tint_bgr=tuple(float(t) for t in tint),
        sky_zenith_bgr=tuple(int(round(c)) for c in np.clip(zenith, 0, 255)),
        sky_horizon_bgr=tuple(int(round(c)) for c in np.clip(horizon, 0, 255)),
        haze_bgr=tuple(int(round(c)) for c in np.clip(haze, 0, 255)),
        haze_start_m=haze_start,
        haze_length_m=haze_len,
        night=night,
        directional=directional,
        overcast=bool(overcast),
    )


def haze_fraction(lighting: Lighting, depth_m: np.ndarray) -> np.ndarray:
    """How much of the haze colour replaces a surface at ``depth_m`` (float array), float32 in [0, 1)."""
    d = np.maximum(np.asarray(depth_m, dtype=np.float32) - lighting.haze_start_m, 0.0)
    return (1.0 - np.exp(-d / lighting.haze_length_m)).astype(np.float32)


def light_colors(lighting: Lighting, bgr: np.ndarray, glow: np.ndarray | None = None) -> np.ndarray:
    """Apply the drive's lighting to albedo colours.

    Args:
        bgr: uint8 [..., 3] albedo.
        glow: optional uint8 [...] emissive strength (0-255); emissive texels keep their own colour at
            night instead of darkening (lit windows, lamps).

    Returns:
        uint8 [..., 3] lit colours.
    """
    scale = (lighting.gain * np.asarray(lighting.tint_bgr, dtype=np.float32)).astype(np.float32)
    lit = bgr.astype(np.float32) * scale
    if glow is not None and lighting.night > 0.0:
        g = (glow.astype(np.float32) / 255.0 * lighting.night)[..., None]
        lit = lit * (1.0 - g) + bgr.astype(np.float32) * 1.05 * g
    return np.clip(lit, 0, 255).astype(np.uint8)
