"""Motion of the camera array during a simulated burst: micro-actuator shifts plus hand tremor.

`ArrayMotion.pose_at(t)` is the pose of the array frame (the calibration's reference frame) at time
t, expressed in the array frame at the first exposure (t = 0): `pose_at(0)` is the identity.
An IMU simulation can integrate the same motion from `angular_velocity_at` / `specific_force_at`.

- The hand holds the device body; its motion is `hand_motion.HandTremor` (the model the IMU node
  simulates too), evaluated at t + `tremor_t0_s`.
- The actuator stage translates the cameras in the body's x-y plane (REP 103 optical frame:
  x right, y down): it holds `shift_mm[k]` during shot k's exposure and moves between shots along
  a minimum-jerk profile, settled before the next exposure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dfocus_capture.hand_motion import HandTremor

GRAVITY_MPS2 = 9.80665
# Gravity in the world frame of the hand tremor (body level at rest, y down).
GRAVITY_WORLD = np.array([0.0, GRAVITY_MPS2, 0.0])
_H_VEL = 1e-4  # central-difference steps (s) for velocities and accelerations
_H_ACC = 1e-3


class MotionError(ValueError):
    """Impossible motion parameters (bad timing)."""


def _min_jerk(tau: float) -> float:
    """0..1 minimum-jerk position profile at tau in [0, 1]."""
    tau = min(max(tau, 0.0), 1.0)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def _vee(S: np.ndarray) -> np.ndarray:
    return np.array([S[2, 1] - S[1, 2], S[0, 2] - S[2, 0], S[1, 0] - S[0, 1]]) / 2.0


@dataclass
class ArrayMotion:
    """Array pose over time. Shot k is exposed at `shot_times_s[k]` (centre of the exposure)."""

    shift_mm: np.ndarray  # (num_shots, 2) actuator x, y per shot
    shot_interval_s: float = 0.1
    move_time_s: float = 0.04  # stage move between shots; it then settles until the next exposure
    tremor: HandTremor | None = None
    tremor_t0_s: float = 0.0
    shot_times_s: np.ndarray = field(init=False)
    _origin_inv: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.shot_interval_s <= 0 or not (0 < self.move_time_s < self.shot_interval_s):
            raise MotionError(f"need 0 < move_time_s ({self.move_time_s}) < shot_interval_s ({self.shot_interval_s})")
        self.shift_mm = np.asarray(self.shift_mm, np.float64).reshape(-1, 2)
        if len(self.shift_mm) == 0 or not np.all(np.isfinite(self.shift_mm)):
            raise MotionError("shift_mm needs one finite x, y row per shot")
        self.shot_times_s = np.arange(len(self.shift_mm)) * self.shot_interval_s
        self._origin_inv = np.eye(4)
        self._origin_inv = np.linalg.inv(self.pose_at(0.0))

    @property
    def duration_s(self) -> float:
        return float(self.shot_times_s[-1])

    def stage_mm(self, t: float) -> np.ndarray:
        """Actuator x, y (mm) at time t."""
        n = len(self.shift_mm)
        k = int(np.clip(math.floor(t / self.shot_interval_s), 0, n - 1))
        if t < 0 or k + 1 >= n:
            return np.asarray(self.shift_mm[0 if t < 0 else k])
        # The move starts halfway into the gap, so each exposure sees a settled stage.
        t_move = self.shot_times_s[k] + 0.5 * (self.shot_interval_s - self.move_time_s)
        s = _min_jerk((t - t_move) / self.move_time_s)
        return np.asarray(self.shift_mm[k] + s * (self.shift_mm[k + 1] - self.shift_mm[k]))

    def _world_pose(self, t: float) -> np.ndarray:
        body = self.tremor.pose_at(t + self.tremor_t0_s) if self.tremor is not None else np.eye(4)
        stage = np.eye(4)
        stage[:2, 3] = self.stage_mm(t) * 1e-3
        return np.asarray(body @ stage)

    def pose_at(self, t: float) -> np.ndarray:
        """4x4 pose of the array frame at time t in the array frame at t = 0."""
        return np.asarray(self._origin_inv @ self._world_pose(t))

    def velocity_at(self, t: float) -> np.ndarray:
        """Linear velocity of the array origin (m/s), in the frame at t = 0."""
        return np.asarray((self.pose_at(t + _H_VEL)[:3, 3] - self.pose_at(t - _H_VEL)[:3, 3]) / (2 * _H_VEL))

    def acceleration_at(self, t: float) -> np.ndarray:
        """Linear acceleration of the array origin (m/s^2, no gravity), in the frame at t = 0."""
        p = [self.pose_at(t + d)[:3, 3] for d in (-_H_ACC, 0.0, _H_ACC)]
        return np.asarray((p[0] - 2 * p[1] + p[2]) / _H_ACC**2)

    def angular_velocity_at(self, t: float) -> np.ndarray:
        """Angular velocity (rad/s) in the array (body) frame: what an ideal gyroscope reads."""
        R = self.pose_at(t)[:3, :3]
        dR = (self.pose_at(t + _H_VEL)[:3, :3] - self.pose_at(t - _H_VEL)[:3, :3]) / (2 * _H_VEL)
        return _vee(R.T @ dR)

    def specific_force_at(self, t: float) -> np.ndarray:
        """What an ideal accelerometer at the array origin reads (m/s^2, body frame): R^T (a - g)."""
        g = self._origin_inv[:3, :3] @ GRAVITY_WORLD
        R = self.pose_at(t)[:3, :3]
        return np.asarray(R.T @ (self.acceleration_at(t) - g))

    def imu_samples(self, rate_hz: float = 400.0, t0: float | None = None, t1: float | None = None) -> np.ndarray:
        """Ideal IMU rows (t_s, wx, wy, wz, ax, ay, az) over [t0, t1] (default: the burst +-50 ms)."""
        start = -0.05 if t0 is None else t0
        end = self.duration_s + 0.05 if t1 is None else t1
        ts = np.arange(start, end + 1e-12, 1.0 / rate_hz)
        rows = [[t, *self.angular_velocity_at(float(t)), *self.specific_force_at(float(t))] for t in ts]
        return np.array(rows, np.float64).reshape(-1, 7)
