"""Wheel-speed and gyro errors for the synthetic city's ``odometry`` channel.

A real robot's odometry is not the truth: the wheel radius is off by a few per cent (a scale error that
stays for the whole drive), encoder ticks and gyro readings are quantised, both carry white noise, and a
MEMS gyro's bias wanders slowly (a random walk). A filter tuned on perfect odometry looks perfect and
fails on a robot, so `sim_data.drive.write_drive` passes the true speed and yaw rate through
`OdometryNoise` (the ``gps/fix`` channel keeps the truth).

Per record, with ``v`` the true forward speed (m/s) and ``w`` the true yaw rate (rad/s, REP-103):

    speed_mps      = quantise((1 + scale_error) * v + n_v,           speed_quantum_mps)     n_v ~ N(0, speed_white_std_mps^2)
    yaw_rate_radps = quantise(w + gyro_bias_radps(t) + n_w,          yaw_rate_quantum_radps) n_w ~ N(0, yaw_rate_white_std_radps^2)
    scale_error    ~ N(0, speed_scale_std^2)                  drawn once per drive
    gyro_bias(0)   ~ N(0, gyro_bias_std_radps^2);  gyro_bias(t + dt) = gyro_bias(t) + N(0, gyro_bias_walk_radps_per_sqrt_s^2 dt)

A wheel that does not turn gives no ticks: a stopped vehicle (``|v|`` < 1 cm/s) reads speed exactly 0.
The speed is never negative (the synthetic vehicle never reverses; encoders here give magnitude).

The standard deviations written on each record (``speed_std_mps``, ``yaw_rate_std_radps``) are the 1-sigma
of that record's total error under the model — scale error at that speed, white noise, quantisation
(uniform, q^2/12), and the gyro bias's spread so far — so a consumer that treats records as independent
is told the truth about their size. The scale and bias parts are correlated from record to record; a
filter that estimates them (localization.filter does) should use the white parts, `OdometryNoiseModel`'s
fields, as its measurement noise.

Deterministic: equal (model, seed) and equal inputs give equal outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

STOPPED_MPS = 0.01  # below this true speed the wheels do not turn: no encoder ticks, speed reads 0


@dataclass(frozen=True)
class OdometryNoiseModel:
    """The error model's parameters (units in the names; see the module docstring for the equations)."""

    speed_scale_std: float = 0.0  # 1-sigma of the per-drive wheel-speed scale error (0.02 = 2 %)
    speed_white_std_mps: float = 0.0  # white noise on each speed reading, m/s
    speed_quantum_mps: float = 0.0  # encoder resolution, m/s (0: none)
    yaw_rate_white_std_radps: float = 0.0  # white noise on each gyro reading, rad/s
    gyro_bias_std_radps: float = 0.0  # 1-sigma of the gyro bias at the start of the drive, rad/s
    gyro_bias_walk_radps_per_sqrt_s: float = 0.0  # bias random walk: its std grows by this * sqrt(t/s)
    yaw_rate_quantum_radps: float = 0.0  # gyro resolution, rad/s (0: none)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"odometry noise {name}={value!r} must be finite and >= 0")

    @property
    def is_exact(self) -> bool:
        return all(v == 0.0 for v in asdict(self).values())


# Presets. `typical`: a small robot or car with decent encoders and a consumer MEMS gyro (2 % wheel-radius
# error, bias ~0.2 deg/s wandering by ~0.03 deg/s per sqrt(s)). `poor`: worn or slipping wheels on a
# cheap platform (5 %), a noisy uncalibrated gyro.
ODOMETRY_NOISE_PRESETS: dict[str, OdometryNoiseModel] = {
    "none": OdometryNoiseModel(),
    "typical": OdometryNoiseModel(
        speed_scale_std=0.02, speed_white_std_mps=0.05, speed_quantum_mps=0.01,
        yaw_rate_white_std_radps=0.005, gyro_bias_std_radps=0.003, gyro_bias_walk_radps_per_sqrt_s=0.0005,
        yaw_rate_quantum_radps=0.001),
    "poor": OdometryNoiseModel(
        speed_scale_std=0.05, speed_white_std_mps=0.2, speed_quantum_mps=0.05,
        yaw_rate_white_std_radps=0.02, gyro_bias_std_radps=0.01, gyro_bias_walk_radps_per_sqrt_s=0.002,
        yaw_rate_quantum_radps=0.005),
}
DEFAULT_ODOMETRY_NOISE = "typical"


def odometry_noise_model(preset: str) -> OdometryNoiseModel:
    """The model of a preset name (``none``, ``typical``, ``poor``); ValueError naming the choices."""
    try:
        return ODOMETRY_NOISE_PRESETS[preset]
    except KeyError:
        raise ValueError(f"odometry noise preset {preset!r} is not one of {', '.join(ODOMETRY_NOISE_PRESETS)}") from None


@dataclass(frozen=True)
class OdometryReading:
    """One noisy odometry record: what the robot's wheels and gyro report, with honest 1-sigmas."""

    speed_mps: float
    yaw_rate_radps: float
    speed_std_mps: float
    yaw_rate_std_radps: float


def _quantise(value: float, quantum: float) -> float:
    return round(value / quantum) * quantum if quantum > 0.0 else value


class OdometryNoise:
    """Turns true (speed, yaw rate) samples, in stamp order, into noisy readings.

    >>> noise = OdometryNoise("typical", seed=7)
    >>> r = noise(stamp_ns, speed_mps=10.0, yaw_rate_radps=0.0)   # r.speed_mps ~ 10.0 * (1 + scale_error)
    """

    def __init__(self, model: OdometryNoiseModel | str = DEFAULT_ODOMETRY_NOISE, *, seed: int | list[int] = 0) -> None:
        self.model = odometry_noise_model(model) if isinstance(model, str) else model
        self._rng = np.random.default_rng(seed)
        m = self.model
        # Per-drive draws come first and in a fixed order, so a seed fixes them whatever the drive length.
        self.scale_error = float(self._rng.normal(0.0, m.speed_scale_std)) if m.speed_scale_std else 0.0
        self.gyro_bias_radps = float(self._rng.normal(0.0, m.gyro_bias_std_radps)) if m.gyro_bias_std_radps else 0.0
        self._start_ns: int | None = None
        self._last_ns: int | None = None

    def __call__(self, stamp_ns: int, *, speed_mps: float, yaw_rate_radps: float) -> OdometryReading:
        m = self.model
        if self._last_ns is not None and stamp_ns < self._last_ns:
            raise ValueError(f"odometry noise: stamp_ns={stamp_ns} goes back before {self._last_ns}")
        if self._start_ns is None:
            self._start_ns = stamp_ns
        if self._last_ns is not None and m.gyro_bias_walk_radps_per_sqrt_s > 0.0:
            dt_s = (stamp_ns - self._last_ns) * 1e-9
            self.gyro_bias_radps += float(self._rng.normal(0.0, m.gyro_bias_walk_radps_per_sqrt_s * math.sqrt(dt_s)))
        self._last_ns = stamp_ns
        n_v = float(self._rng.normal(0.0, m.speed_white_std_mps)) if m.speed_white_std_mps else 0.0
        n_w = float(self._rng.normal(0.0, m.yaw_rate_white_std_radps)) if m.yaw_rate_white_std_radps else 0.0
        if abs(speed_mps) < STOPPED_MPS:
            speed = 0.0
        else:
            speed = max(_quantise((1.0 + self.scale_error) * speed_mps + n_v, m.speed_quantum_mps), 0.0)
        yaw_rate = _quantise(yaw_rate_radps + self.gyro_bias_radps + n_w, m.yaw_rate_quantum_radps)
        elapsed_s = (stamp_ns - self._start_ns) * 1e-9
        speed_var = (m.speed_scale_std * speed_mps) ** 2 + m.speed_white_std_mps**2 + m.speed_quantum_mps**2 / 12.0
        yaw_var = (m.gyro_bias_std_radps**2 + m.gyro_bias_walk_radps_per_sqrt_s**2 * elapsed_s
                   + m.yaw_rate_white_std_radps**2 + m.yaw_rate_quantum_radps**2 / 12.0)
        # An exact model still reports a small positive std, so covariance-inverting consumers work.
        return OdometryReading(speed, yaw_rate, max(math.sqrt(speed_var), 1e-3), max(math.sqrt(yaw_var), 1e-4))
