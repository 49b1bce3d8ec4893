"""Motion of the camera array during a burst: micro-actuator shifts plus hand tremor.

`ArrayMotion.pose_at(t)` is the pose of the array frame (the calibration's reference frame) at time
t, expressed in the array frame at the first exposure (t = 0), so `pose_at(0)` is the identity.
The IMU simulation integrates the same motion from `angular_velocity_at` / `specific_force_at`.

- Actuators translate the whole array in its x-y plane (REP 103 optical frame: x right, y down):
  the stage holds `shift_mm[k]` during shot k's exposure and moves between shots along a
  minimum-jerk profile (smooth acceleration, as a settled piezo/VCM stage does).
- Hand tremor (hand_held): a slow postural sway (0.5-2 Hz) plus physiological tremor (8-12 Hz),
  about 0.1-1 mm of translation and a few mrad of rotation, a sum of seeded sinusoids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

GRAVITY_MPS2 = 9.80665
SHIFT_PATTERNS = ("circle", "line", "random", "none")
# Gravity in the array frame at t = 0: y points down in an optical frame held level.
GRAVITY_REF = np.array([0.0, GRAVITY_MPS2, 0.0])


class MotionError(ValueError):
    """Impossible motion parameters (unknown pattern, negative amplitude, bad timing)."""


def shift_pattern(pattern: str, num_shots: int, amplitude_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Actuator x, y positions (mm) per shot: 'circle' (evenly around a circle of radius
    amplitude), 'line' (-amplitude..+amplitude along x), 'random' (uniform in the disc), 'none'."""
    if pattern not in SHIFT_PATTERNS:
        raise MotionError(f"shift_pattern must be one of {list(SHIFT_PATTERNS)}, got {pattern!r}")
    if not (amplitude_mm >= 0 and math.isfinite(amplitude_mm)):
        raise MotionError(f"shift_amplitude_mm must be >= 0, got {amplitude_mm}")
    if num_shots < 1:
        raise MotionError(f"num_shots must be >= 1, got {num_shots}")
    k = np.arange(num_shots, dtype=np.float64)
    if pattern == "circle":
        a = 2 * np.pi * k / num_shots
        return np.stack([np.cos(a), np.sin(a)], axis=1) * amplitude_mm
    if pattern == "line":
        x = np.linspace(-1.0, 1.0, num_shots) if num_shots > 1 else np.zeros(1)
        return np.stack([x * amplitude_mm, np.zeros(num_shots)], axis=1)
    if pattern == "random":
        r = np.sqrt(rng.random(num_shots)) * amplitude_mm
        a = rng.uniform(0, 2 * np.pi, num_shots)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    return np.zeros((num_shots, 2))


@dataclass(frozen=True)
class Tremor:
    """Sum of sinusoids per axis: translation (m) and rotation vector (rad)."""

    freq_hz: np.ndarray  # (M,)
    trans_amp_m: np.ndarray  # (M, 3)
    rot_amp_rad: np.ndarray  # (M, 3)
    phase: np.ndarray  # (M, 6)

    @staticmethod
    def random(rng: np.random.Generator, scale: float = 1.0) -> Tremor:
        """Postural sway (2 components, 0.5-2 Hz, ~0.4 mm, ~1.5 mrad) and physiological tremor
        (3 components, 8-12 Hz, ~0.05 mm, ~0.15 mrad)."""
        f = np.concatenate([rng.uniform(0.5, 2.0, 2), rng.uniform(8.0, 12.0, 3)])
        t_amp = np.concatenate([rng.uniform(0.15e-3, 0.4e-3, (2, 3)), rng.uniform(0.02e-3, 0.06e-3, (3, 3))])
        r_amp = np.concatenate([rng.uniform(0.5e-3, 1.5e-3, (2, 3)), rng.uniform(0.05e-3, 0.15e-3, (3, 3))])
        return Tremor(f, t_amp * scale, r_amp * scale, rng.uniform(0, 2 * np.pi, (5, 6)))

    def _terms(self, t: float, deriv: int) -> tuple[np.ndarray, np.ndarray]:
        w = 2 * np.pi * self.freq_hz[:, None]
        arg = w * t + self.phase
        # d^n/dt^n sin(wt + p) = w^n sin(wt + p + n pi/2)
        s = w**deriv * np.sin(arg + deriv * np.pi / 2)
        trans = (self.trans_amp_m * (s[:, :3] - (np.sin(self.phase[:, :3]) if deriv == 0 else 0))).sum(axis=0)
        rot = (self.rot_amp_rad * (s[:, 3:] - (np.sin(self.phase[:, 3:]) if deriv == 0 else 0))).sum(axis=0)
        return trans, rot  # offsets relative to t = 0 for deriv 0

    def translation(self, t: float, deriv: int = 0) -> np.ndarray:
        return self._terms(t, deriv)[0]

    def rotation_vector(self, t: float, deriv: int = 0) -> np.ndarray:
        return self._terms(t, deriv)[1]


def _skew(w: np.ndarray) -> np.ndarray:
    return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


def rotation_from_vector(r: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation matrix of rotation vector r (rad)."""
    a = float(np.linalg.norm(r))
    K = _skew(r)
    if a < 1e-12:
        return np.asarray(np.eye(3) + K)
    return np.asarray(np.eye(3) + math.sin(a) / a * K + (1 - math.cos(a)) / a**2 * (K @ K))


def right_jacobian(r: np.ndarray) -> np.ndarray:
    """J_r(r): body angular velocity = J_r(r) @ dr/dt for R = exp([r]x)."""
    a = float(np.linalg.norm(r))
    K = _skew(r)
    if a < 1e-8:
        return np.asarray(np.eye(3) - 0.5 * K)
    return np.asarray(np.eye(3) - (1 - math.cos(a)) / a**2 * K + (a - math.sin(a)) / a**3 * (K @ K))


def _min_jerk(tau: float) -> tuple[float, float, float]:
    """Position, velocity, acceleration of the 0..1 minimum-jerk profile at tau in [0, 1]."""
    if tau <= 0:
        return 0.0, 0.0, 0.0
    if tau >= 1:
        return 1.0, 0.0, 0.0
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    ds = 30 * tau**2 - 60 * tau**3 + 30 * tau**4
    dds = 60 * tau - 180 * tau**2 + 120 * tau**3
    return s, ds, dds


@dataclass
class ArrayMotion:
    """Array pose over time. Shot k is exposed at `shot_times_s[k]` (centre of the exposure)."""

    shift_mm: np.ndarray  # (num_shots, 2) actuator x, y per shot
    shot_interval_s: float = 0.1
    move_time_s: float = 0.04  # actuator move between shots, then it settles until the next exposure
    tremor: Tremor | None = None
    shot_times_s: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.shot_interval_s <= 0 or not (0 < self.move_time_s < self.shot_interval_s):
            raise MotionError(f"need 0 < move_time_s ({self.move_time_s}) < shot_interval_s ({self.shot_interval_s})")
        self.shift_mm = np.asarray(self.shift_mm, np.float64).reshape(-1, 2)
        self.shot_times_s = np.arange(len(self.shift_mm)) * self.shot_interval_s

    @property
    def duration_s(self) -> float:
        return float(self.shot_times_s[-1])

    def _actuator(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage position, velocity, acceleration (m, in the array frame at t=0) relative to shot 0."""
        p = self.shift_mm * 1e-3
        n = len(p)
        k = int(np.clip(math.floor(t / self.shot_interval_s), 0, n - 1))
        start = p[k]
        if k + 1 >= n:
            pos, vel, acc = start, np.zeros(2), np.zeros(2)
        else:
            # The move starts halfway into the gap, so each exposure sees a settled stage.
            t_move = self.shot_times_s[k] + 0.5 * (self.shot_interval_s - self.move_time_s)
            s, ds, dds = _min_jerk((t - t_move) / self.move_time_s)
            delta = p[k + 1] - start
            pos = start + s * delta
            vel = ds / self.move_time_s * delta
            acc = dds / self.move_time_s**2 * delta
        z = np.zeros(1)
        return (np.concatenate([pos - p[0], z]), np.concatenate([vel, z]), np.concatenate([acc, z]))

    def _rot(self, t: float, deriv: int = 0) -> np.ndarray:
        return self.tremor.rotation_vector(t, deriv) if self.tremor is not None else np.zeros(3)

    def _trans(self, t: float, deriv: int) -> np.ndarray:
        return self.tremor.translation(t, deriv) if self.tremor is not None else np.zeros(3)

    def pose_at(self, t: float) -> np.ndarray:
        """4x4 pose of the array frame at time t in the array frame at t = 0."""
        T = np.eye(4)
        T[:3, :3] = rotation_from_vector(self._rot(t))
        T[:3, 3] = self._actuator(t)[0] + self._trans(t, 0)
        return T

    def velocity_at(self, t: float) -> np.ndarray:
        """Linear velocity of the array origin (m/s), in the frame at t = 0."""
        return np.asarray(self._actuator(t)[1] + self._trans(t, 1))

    def acceleration_at(self, t: float) -> np.ndarray:
        """Linear acceleration of the array origin (m/s^2, no gravity), in the frame at t = 0."""
        return np.asarray(self._actuator(t)[2] + self._trans(t, 2))

    def angular_velocity_at(self, t: float) -> np.ndarray:
        """Angular velocity (rad/s) in the array (body) frame: what an ideal gyroscope reads."""
        return np.asarray(right_jacobian(self._rot(t)) @ self._rot(t, 1))

    def specific_force_at(self, t: float) -> np.ndarray:
        """What an ideal accelerometer at the array origin reads (m/s^2, body frame): R^T (a - g),
        with the array held level at t = 0 (gravity along +y, down)."""
        R = rotation_from_vector(self._rot(t))
        return np.asarray(R.T @ (self.acceleration_at(t) - GRAVITY_REF))

    def imu_samples(self, rate_hz: float = 400.0, t0: float | None = None, t1: float | None = None) -> np.ndarray:
        """Ideal IMU rows (t_s, wx, wy, wz, ax, ay, az) over [t0, t1] (default: the burst +-50 ms)."""
        start = -0.05 if t0 is None else t0
        end = self.duration_s + 0.05 if t1 is None else t1
        ts = np.arange(start, end + 1e-12, 1.0 / rate_hz)
        rows = [[t, *self.angular_velocity_at(float(t)), *self.specific_force_at(float(t))] for t in ts]
        return np.array(rows, np.float64).reshape(-1, 7)
