"""Hand tremor of a hand-held camera array as a smooth, seeded function of absolute time.

Physiological tremor is a band-limited oscillation around a steady pose: most energy at 8-12 Hz
with a slower 2-6 Hz component, about 0.1-1 mm and a few mrad. It is modelled as a sum of
sinusoids per axis (translation x/y/z, rotation about x/y/z) with seeded frequencies, amplitudes
and phases, so every process that knows the seed (the camera simulator rendering the views, the
IMU simulator sensing the motion, a test checking the estimate) evaluates the same motion at the
same stamp, with exact derivatives for the IMU.

`pose_at(t)` is the array (reference camera optical frame) pose in the world frame: the array
frame at rest, REP 103 (x right, y down, z forward). Time is in seconds on the ROS clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class MotionError(ValueError):
    """Invalid tremor parameters."""


@dataclass(frozen=True)
class TremorConfig:
    translation_rms_mm: float = 0.3
    rotation_rms_mrad: float = 2.0
    components: int = 4  # sinusoids per axis
    band_hz: tuple[float, float] = (2.0, 12.0)

    def __post_init__(self) -> None:
        if not (self.translation_rms_mm >= 0 and self.rotation_rms_mrad >= 0):
            raise MotionError("tremor amplitudes must be >= 0")
        if self.components < 1:
            raise MotionError(f"components must be >= 1, got {self.components}")
        lo, hi = self.band_hz
        if not 0 < lo < hi:
            raise MotionError(f"band_hz must satisfy 0 < low < high, got {self.band_hz}")


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def exp_so3(phi: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector phi (rad)."""
    angle = float(np.linalg.norm(phi))
    K = skew(phi)
    if angle < 1e-8:
        return np.eye(3) + K
    return np.eye(3) + math.sin(angle) / angle * K + (1 - math.cos(angle)) / angle**2 * (K @ K)


def log_so3(R: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation matrix (angles below pi)."""
    angle = math.acos(min(1.0, max(-1.0, (float(np.trace(R)) - 1) / 2)))
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if angle < 1e-8:
        return w / 2
    return np.asarray(angle / (2 * math.sin(angle)) * w, dtype=np.float64)


def exp_so3_many(phi: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotation matrices of the rotation vectors phi (n, 3)."""
    angle = np.linalg.norm(phi, axis=1)[:, None, None]
    K = np.zeros((len(phi), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -phi[:, 2], phi[:, 1], -phi[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = phi[:, 2], -phi[:, 1], phi[:, 0]
    safe = np.where(angle < 1e-8, 1.0, angle)
    a = np.where(angle < 1e-8, 1.0, np.sin(safe) / safe)
    b = np.where(angle < 1e-8, 0.5, (1 - np.cos(safe)) / safe**2)
    return np.asarray(np.eye(3)[None] + a * K + b * (K @ K), dtype=np.float64)


def log_so3_many(R: np.ndarray) -> np.ndarray:
    """(n, 3) rotation vectors of (n, 3, 3) rotation matrices (angles below pi)."""
    cos = np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    w = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], axis=1)
    safe = np.where(angle < 1e-8, 1.0, angle)
    scale = np.where(angle < 1e-8, 0.5, safe / (2 * np.sin(safe)))
    return np.asarray(scale[:, None] * w, dtype=np.float64)


def right_jacobian(theta: np.ndarray) -> np.ndarray:
    """J_r of SO(3): body angular velocity = J_r(theta) @ d(theta)/dt for R = exp(theta)."""
    angle = float(np.linalg.norm(theta))
    K = skew(theta)
    if angle < 1e-6:
        return np.eye(3) - 0.5 * K
    return np.eye(3) - (1 - math.cos(angle)) / angle**2 * K + (angle - math.sin(angle)) / angle**3 * (K @ K)


class HandTremor:
    def __init__(self, seed: int, config: TremorConfig | None = None) -> None:
        self.config = config or TremorConfig()
        rng = np.random.default_rng(seed)
        n = self.config.components
        lo, hi = self.config.band_hz
        # Per axis (6: tx ty tz rx ry rz): frequencies log-uniform in the band, weights summing to
        # one in power, random phases.
        self._w = 2 * np.pi * np.exp(rng.uniform(math.log(lo), math.log(hi), (6, n)))
        weights = rng.uniform(0.3, 1.0, (6, n))
        weights /= np.sqrt((weights**2).sum(axis=1, keepdims=True))
        scale = np.array([self.config.translation_rms_mm * 1e-3] * 3 + [self.config.rotation_rms_mrad * 1e-3] * 3)
        # RMS of a sinusoid of amplitude a is a / sqrt(2).
        self._amp = weights * scale[:, None] * math.sqrt(2)
        self._phase = rng.uniform(0, 2 * np.pi, (6, n))

    def _terms(self, t: float | np.ndarray, derivative: int) -> np.ndarray:
        """The 6 axes (tx ty tz rx ry rz) or their time derivative at t: shape (6,), or (n, 6)."""
        ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
        arg = self._w[None] * ts[:, None, None] + self._phase[None]
        a = self._amp * self._w**derivative
        wave = (np.sin, np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x))[derivative](arg)
        out = np.asarray((a[None] * wave).sum(axis=2), dtype=np.float64)
        return out[0] if np.ndim(t) == 0 else out

    def pose_at(self, t: float) -> np.ndarray:
        """4x4 array pose in the world frame at time t (s)."""
        x = self._terms(t, 0)
        T = np.eye(4)
        T[:3, :3] = exp_so3(x[3:])
        T[:3, 3] = x[:3]
        return T

    def rotations_at(self, ts: np.ndarray) -> np.ndarray:
        """(n, 3, 3) array attitudes at the times ts."""
        return exp_so3_many(self._terms(np.asarray(ts, dtype=np.float64), 0)[:, 3:])

    def velocity_at(self, t: float | np.ndarray) -> np.ndarray:
        """World-frame linear velocity of the array origin, m/s: (3,) or (n, 3)."""
        return self._terms(t, 1)[..., :3]

    def acceleration_at(self, t: float) -> np.ndarray:
        """World-frame linear acceleration of the array origin (gravity not included), m/s^2."""
        return self._terms(t, 2)[:3]

    def angular_velocity_at(self, t: float) -> np.ndarray:
        """Body-frame (array frame) angular velocity, rad/s."""
        theta = self._terms(t, 0)[3:]
        return right_jacobian(theta) @ self._terms(t, 1)[3:]
