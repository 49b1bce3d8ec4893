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

import bisect
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from dfocus_capture.hand_motion import HandTremor, log_so3_many

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


# actuators/state reaches a process some milliseconds after its stamp (more on a loaded machine).
# What needs the stage at a stamp (a simulated exposure's render, the sequencer's shot position)
# waits this long for the state after it; longer means the stage node has stopped.
STAGE_WAIT_S = 1.0


class ActuatorTrack:
    """The stage trajectory from its published positions: the velocity is piecewise linear through
    the mean velocities of the sample intervals (at their midpoints), held at the ends.
    Thread-safe: a subscription thread adds samples while another one evaluates the track."""

    def __init__(self, max_samples: int = 1024) -> None:
        self._t: list[float] = []
        self._p: list[np.ndarray] = []
        self.max_samples = max_samples
        self._lock = threading.Lock()
        self._added = threading.Condition(self._lock)

    def add(self, t: float, position_mm: np.ndarray) -> None:
        p = np.asarray(position_mm, dtype=np.float64).ravel()[:3]
        if not np.all(np.isfinite(p)):
            raise ImuModelError(f"stage position must be finite, got {p.tolist()}")
        p = np.pad(p, (0, 3 - p.size)) * 1e-3
        with self._lock:
            if self._t and t <= self._t[-1]:
                return  # stale or repeated state
            self._t.append(t)
            self._p.append(p)
            if len(self._t) > self.max_samples:
                del self._t[0], self._p[0]
            self._added.notify_all()

    def wait_past(self, t: float, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Wait until a sample at or after `t` has been added (the track then holds the motion up
        to `t`); False after `timeout_s`, or as soon as `stop` is set (checked every 50 ms, so a
        shutdown does not wait for a stage node that has already stopped)."""
        deadline = time.monotonic() + timeout_s
        with self._added:
            while not (self._t and self._t[-1] >= t):
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._added.wait(left if stop is None else min(left, 0.05))
            return True

    def _interval_velocity(self, k: int) -> tuple[float, np.ndarray]:
        """Midpoint time and mean velocity of the sample interval [t_k, t_k+1]."""
        t0, t1 = self._t[k], self._t[k + 1]
        return 0.5 * (t0 + t1), (self._p[k + 1] - self._p[k]) / (t1 - t0)

    def velocity_at(self, t: float) -> np.ndarray:
        """m/s in the array frame: linear between the midpoints of the sample intervals."""
        with self._lock:
            n = len(self._t)
            if n < 2:
                return np.zeros(3)
            k = min(max(bisect.bisect_right(self._t, t) - 1, 0), n - 2)  # the interval holding t
            m, v = self._interval_velocity(k)
            j = k + 1 if t >= m else k - 1  # the neighbouring interval on t's side of the midpoint
            if not 0 <= j <= n - 2:
                return v  # held beyond the first / last midpoint
            m2, v2 = self._interval_velocity(j)
        return np.asarray(v + (v2 - v) * (t - m) / (m2 - m), dtype=np.float64)

    def position_at(self, t: float) -> np.ndarray:
        """m, linear between samples, held before the first and after the last."""
        with self._lock:
            if not self._t:
                return np.zeros(3)
            k = bisect.bisect_right(self._t, t)
            if k == 0:
                return self._p[0].copy()
            if k == len(self._t):
                return self._p[-1].copy()
            t0, t1 = self._t[k - 1], self._t[k]
            p0, p1 = self._p[k - 1], self._p[k]
        return np.asarray(p0 + (p1 - p0) * (t - t0) / (t1 - t0), dtype=np.float64)

    @property
    def latest_t(self) -> float | None:
        with self._lock:
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

    def true_motion(self, ts: np.ndarray, period_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Body angular velocity (rad/s) and specific force (m/s^2), (n, 3) each, averaged over
        (t - period, t] as the sensor's decimation filter delivers them, without sensor errors.
        The averages are exact differences of attitude and velocity: integrating them loses nothing."""
        t1 = np.asarray(ts, dtype=np.float64)
        t0 = t1 - period_s
        stage0 = np.array([self.stage.velocity_at(t) for t in t0])
        stage1 = np.array([self.stage.velocity_at(t) for t in t1])
        if self.tremor is None:
            R1: np.ndarray = np.broadcast_to(np.eye(3), (len(t1), 3, 3))
            omega: np.ndarray = np.zeros((len(t1), 3))
            vel0, vel1 = stage0, stage1
        else:
            R0, R1 = self.tremor.rotations_at(t0), self.tremor.rotations_at(t1)
            omega = log_so3_many(np.einsum("nji,njk->nik", R0, R1)) / period_s
            # The stage moves the array in its own (tremor-rotated) frame.
            vel0 = self.tremor.velocity_at(t0) + np.einsum("nij,nj->ni", R0, stage0)
            vel1 = self.tremor.velocity_at(t1) + np.einsum("nij,nj->ni", R1, stage1)
        force = np.einsum("nji,nj->ni", R1, (vel1 - vel0) / period_s - self.gravity)
        return omega, force

    def samples(self, ts: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """Readings (gyro rad/s, accel m/s^2), (n, 3) each, at increasing times ts of a sensor
        sampling at rate_hz."""
        n = self.noise
        ts = np.asarray(ts, dtype=np.float64)
        prev = np.concatenate([[self._last_t if self._last_t is not None else ts[0]], ts[:-1]])
        step = np.sqrt(np.maximum(ts - prev, 0.0))[:, None]
        gyro_bias = self.gyro_bias + np.cumsum(self._rng.normal(0.0, n.gyro_bias_walk, (len(ts), 3)) * step, axis=0)
        accel_bias = self.accel_bias + np.cumsum(self._rng.normal(0.0, n.accel_bias_walk, (len(ts), 3)) * step,
                                                 axis=0)
        self.gyro_bias, self.accel_bias, self._last_t = gyro_bias[-1], accel_bias[-1], float(ts[-1])
        omega, force = self.true_motion(ts, 1.0 / rate_hz)
        # White noise density -> per-sample sigma over the sensor bandwidth (rate / 2): d * sqrt(rate).
        gyro = omega + gyro_bias + self._rng.normal(0.0, n.gyro_noise_density * math.sqrt(rate_hz), omega.shape)
        accel = force + accel_bias + self._rng.normal(0.0, n.accel_noise_density * math.sqrt(rate_hz), force.shape)
        return _adc(gyro, n.gyro_range, n.bits), _adc(accel, n.accel_range, n.bits)

    def sample(self, t: float, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """One reading (gyro, accel) at time t."""
        gyro, accel = self.samples(np.array([t]), rate_hz)
        return gyro[0], accel[0]


def _adc(value: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    lsb = 2 * full_scale / 2**bits
    return np.asarray(np.clip(np.round(value / lsb) * lsb, -full_scale, full_scale - lsb), dtype=np.float64)
