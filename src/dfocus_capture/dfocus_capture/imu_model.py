"""Simulated 6-axis MEMS IMU rigidly mounted at the array origin (frame `imu_link`, axes of the
reference camera's optical frame: x right, y down, z forward).

It senses the motion the cameras see: the hand tremor (a seeded function of time shared with the
camera simulator, see hand_motion) plus the actuator stage shifting the array, reconstructed from
the stage positions the actuator node publishes. The sensor model follows a consumer MEMS part
(ICM-42688 / BMI088 class datasheet values): white noise given as a density, a turn-on bias per
power-up, a bias random walk, full-scale saturation and 16-bit quantisation. The accelerometer
measures specific force f = R^T (a - g): at rest it reads 1 g upward, which is -y with the camera
level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dfocus_capture.hand_motion import HandTremor, log_so3

GRAVITY_M_S2 = 9.80665


class ImuModelError(ValueError):
    """Invalid IMU parameters or stage samples."""


@dataclass(frozen=True)
class ImuNoiseConfig:
    gyro_noise_density: float = 5e-5  # rad/s/sqrt(Hz)   (2.8 mdps/sqrt(Hz))
    accel_noise_density: float = 7e-4  # m/s^2/sqrt(Hz)  (70 ug/sqrt(Hz))
    gyro_bias_sigma: float = 3e-3  # rad/s, turn-on bias spread per axis (~0.2 dps)
    accel_bias_sigma: float = 0.1  # m/s^2 (~10 mg)
    gyro_bias_walk: float = 1e-5  # rad/s^2/sqrt(Hz)
    accel_bias_walk: float = 1e-4  # m/s^3/sqrt(Hz)
    gyro_range: float = math.radians(250.0)  # rad/s full scale
    accel_range: float = 4 * GRAVITY_M_S2  # m/s^2 full scale
    bits: int = 16

    def __post_init__(self) -> None:
        for name in ("gyro_noise_density", "accel_noise_density", "gyro_bias_sigma", "accel_bias_sigma",
                     "gyro_bias_walk", "accel_bias_walk"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ImuModelError(f"{name} must be a finite number >= 0, got {v}")
        if not (self.gyro_range > 0 and self.accel_range > GRAVITY_M_S2):
            raise ImuModelError("gyro_range must be > 0 and accel_range above 1 g")
        if not 8 <= self.bits <= 32:
            raise ImuModelError(f"bits must be 8..32, got {self.bits}")


class ActuatorTrack:
    """The stage trajectory from its published positions: the velocity is piecewise linear through
    the mean velocities of the sample intervals (at their midpoints), held at the ends."""

    def __init__(self, max_samples: int = 4096) -> None:
        self._t: list[float] = []
        self._p: list[np.ndarray] = []
        self.max_samples = max_samples

    def add(self, t: float, position_mm: np.ndarray) -> None:
        p = np.asarray(position_mm, dtype=np.float64).ravel()[:3]
        if not np.all(np.isfinite(p)):
            raise ImuModelError(f"stage position must be finite, got {p.tolist()}")
        p = np.pad(p, (0, 3 - p.size))
        if self._t and t <= self._t[-1]:
            return  # stale or repeated state
        self._t.append(t)
        self._p.append(p * 1e-3)
        if len(self._t) > self.max_samples:
            del self._t[0], self._p[0]

    def velocity_at(self, t: float) -> np.ndarray:
        """m/s in the array frame: linear between the midpoints of the sample intervals."""
        if len(self._t) < 2:
            return np.zeros(3)
        t_arr, p_arr = np.asarray(self._t), np.asarray(self._p)
        mid = 0.5 * (t_arr[1:] + t_arr[:-1])
        vel = np.diff(p_arr, axis=0) / np.diff(t_arr)[:, None]
        return np.array([np.interp(t, mid, vel[:, i]) for i in range(3)])

    def position_at(self, t: float) -> np.ndarray:
        """m, linear between samples."""
        if not self._t:
            return np.zeros(3)
        p = np.array(self._p)
        return np.array([np.interp(t, self._t, p[:, i]) for i in range(3)])

    @property
    def latest_t(self) -> float | None:
        return self._t[-1] if self._t else None


class ImuSimulator:
    """IMU samples of the array motion: hand tremor (optional) plus the actuator stage."""

    def __init__(self, noise: ImuNoiseConfig, seed: int, tremor: HandTremor | None = None,
                 gravity_world: tuple[float, float, float] = (0.0, GRAVITY_M_S2, 0.0)) -> None:
        self.noise = noise
        self.tremor = tremor
        self.stage = ActuatorTrack()
        self.gravity = np.asarray(gravity_world, dtype=np.float64)
        # The sensor's noise and biases are its own: not the tremor's seed, only derived from it.
        self._rng = np.random.default_rng([seed, 0x1A0])
        self.gyro_bias = self._rng.normal(0.0, noise.gyro_bias_sigma, 3)
        self.accel_bias = self._rng.normal(0.0, noise.accel_bias_sigma, 3)
        self._last_t: float | None = None

    def true_motion(self, t: float, period_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Body angular velocity (rad/s) and specific force (m/s^2) averaged over (t - period, t],
        as the sensor's decimation filter delivers them, without sensor errors. Averages are exact
        differences of the attitude and velocity, so integrating the readings loses nothing."""
        t0 = t - period_s
        R: np.ndarray = np.eye(3)
        omega: np.ndarray = np.zeros(3)
        vel0, vel1 = self.stage.velocity_at(t0), self.stage.velocity_at(t)
        if self.tremor is not None:
            R0, R = self.tremor.pose_at(t0)[:3, :3], self.tremor.pose_at(t)[:3, :3]
            omega = log_so3(R0.T @ R) / period_s
            # The stage moves the array in its own (tremor-rotated) frame.
            vel0 = self.tremor.velocity_at(t0) + R0 @ vel0
            vel1 = self.tremor.velocity_at(t) + R @ vel1
        return omega, R.T @ ((vel1 - vel0) / period_s - self.gravity)

    def sample(self, t: float, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """One reading (gyro rad/s, accel m/s^2) at time t for a sensor sampling at rate_hz."""
        n = self.noise
        if self._last_t is not None and t > self._last_t:
            step = math.sqrt(t - self._last_t)
            self.gyro_bias = self.gyro_bias + self._rng.normal(0.0, n.gyro_bias_walk * step, 3)
            self.accel_bias = self.accel_bias + self._rng.normal(0.0, n.accel_bias_walk * step, 3)
        self._last_t = t
        omega, force = self.true_motion(t, 1.0 / rate_hz)
        # White noise density -> per-sample sigma over the sensor bandwidth (rate / 2) : d * sqrt(rate).
        gyro = omega + self.gyro_bias + self._rng.normal(0.0, n.gyro_noise_density * math.sqrt(rate_hz), 3)
        accel = force + self.accel_bias + self._rng.normal(0.0, n.accel_noise_density * math.sqrt(rate_hz), 3)
        return _adc(gyro, n.gyro_range, n.bits), _adc(accel, n.accel_range, n.bits)


def _adc(value: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    lsb = 2 * full_scale / 2**bits
    return np.asarray(np.clip(np.round(value / lsb) * lsb, -full_scale, full_scale - lsb), dtype=np.float64)
