"""Array poses at each exposure of a burst, from the actuator stage or from the IMU.

Frames: the array frame is the reference camera's optical frame (REP 103: x right, y down,
z forward); the IMU (`imu_link`) is mounted at its origin with the same axes. A shot's array
motion is `delta_k = A(t_0)^-1 A(t_k)`, the array pose at shot k in the array frame at shot 0, and
camera i's pose in the sequence's reference frame is `delta_k @ T_ref_cam_i`.

With actuators (array on a fixed mount) the motion is the stage translation between the shots.

Hand-held, the IMU (rows t_s, wx, wy, wz, ax, ay, az: body rates in rad/s and specific force in
m/s^2) is integrated over a window that starts before the burst: the samples before the first
exposure give the gyro bias and gravity (+ accelerometer bias) in the body frame. A hand holding
a camera trembles around a steady pose, so what is left after integration is removed as the
low-order drift a bias or initial-velocity error produces: a straight line in the angle, a
quadratic in the position, fitted over the whole window (the tremor itself averages out of a
fit over many of its cycles).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfocus_capture.calibration import ArrayCalibration
from dfocus_capture.hand_motion import exp_so3, log_so3


class PoseEstimationError(ValueError):
    """The data cannot give the poses (IMU gaps or too short a window, bad actuator data)."""


def translation(t_m: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[: len(t_m), 3] = t_m
    return T


def motion_from_actuators(positions_mm: np.ndarray) -> list[np.ndarray]:
    """delta_k for stage positions (num_shots, axes) in mm along the array's x, y (, z)."""
    pos = np.asarray(positions_mm, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[0] == 0 or not 1 <= pos.shape[1] <= 3:
        raise PoseEstimationError(f"actuator positions must be (shots, 1..3 axes), got shape {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise PoseEstimationError("actuator positions contain NaN or infinity")
    return [translation((p - pos[0]) * 1e-3) for p in pos]


def _detrend(values: np.ndarray, t: np.ndarray, order: int) -> np.ndarray:
    """values minus their least-squares polynomial of `order` in t (per column)."""
    tc = (t - t.mean()) / max(float(np.ptp(t)), 1e-9)
    basis = np.stack([tc**p for p in range(order + 1)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
    return np.asarray(values - basis @ coef, dtype=np.float64)


def motion_from_imu(imu: np.ndarray, times_s: Sequence[float], burst_start_s: float,
                    max_gap_s: float = 0.05) -> list[np.ndarray]:
    """delta_k at `times_s` (exposure times, the first one is shot 0) from IMU rows covering
    [window start, last exposure]; samples before `burst_start_s` are the pre-burst window."""
    data = np.asarray(imu, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 7:
        raise PoseEstimationError(f"IMU samples must be rows of 7 (t, gyro xyz, accel xyz), got {data.shape}")
    data = data[np.argsort(data[:, 0], kind="stable")]
    t = data[:, 0]
    times = np.asarray(times_s, dtype=np.float64)
    if len(times) == 0:
        raise PoseEstimationError("no exposure times given")
    pre = t < burst_start_s
    if pre.sum() < 20:
        raise PoseEstimationError(f"only {int(pre.sum())} IMU samples before the burst; need >= 20 to estimate biases")
    if t[-1] < times.max() or t[0] > times.min():
        raise PoseEstimationError(
            f"IMU samples cover {t[0]:.3f} .. {t[-1]:.3f} s, not the exposures {times.min():.3f} .. {times.max():.3f} s"
        )
    gaps = np.diff(t)
    if gaps.size and gaps.max() > max_gap_s:
        k = int(np.argmax(gaps))
        raise PoseEstimationError(f"IMU gap of {gaps[k] * 1e3:.0f} ms at t = {t[k]:.3f} s (samples were lost)")
    gyro = data[:, 1:4] - data[pre, 1:4].mean(axis=0)
    # A reading is the mean over the interval that ends at its stamp (the sensor's decimation
    # filter), so integration steps k-1 -> k use reading k.
    # Attitude: integrate the rate, then remove the linear drift a residual bias gives.
    R = np.empty((len(t), 3, 3))
    R[0] = np.eye(3)
    for k in range(1, len(t)):
        R[k] = R[k - 1] @ exp_so3(gyro[k] * (t[k] - t[k - 1]))
    phi = _detrend(np.array([log_so3(r) for r in R]), t, 1)
    R = np.array([exp_so3(p) for p in phi])
    # Position: specific force to the start frame, gravity (+ bias) from the pre-burst mean, then
    # double integration (trapezoid) and removal of the quadratic drift.
    f_world = np.einsum("nij,nj->ni", R, data[:, 4:7])
    acc = f_world - f_world[pre].mean(axis=0)
    dt = np.diff(t)[:, None]
    vel = np.concatenate([np.zeros((1, 3)), np.cumsum(acc[1:] * dt, axis=0)])
    pos = np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * (vel[1:] + vel[:-1]) * dt, axis=0)])
    pos = _detrend(pos, t, 2)
    # Poses at the exposure times (linear interpolation between 400 Hz samples).
    p_at = np.stack([np.interp(times, t, pos[:, i]) for i in range(3)], axis=1)
    phi_at = np.stack([np.interp(times, t, phi[:, i]) for i in range(3)], axis=1)
    A = []
    for p, ph in zip(p_at, phi_at, strict=True):
        T = np.eye(4)
        T[:3, :3] = exp_so3(ph)
        T[:3, 3] = p
        A.append(T)
    A0_inv = np.linalg.inv(A[0])
    return [A0_inv @ a for a in A]


def camera_poses(calibration: ArrayCalibration, motion: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """[shot][camera] pose of each camera in the sequence's reference frame (reference camera at shot 0)."""
    ref_inv = np.linalg.inv(calibration.reference.T_ref_cam)  # calibrations need not put the reference at identity
    return [[delta @ ref_inv @ cam.T_ref_cam for cam in calibration.cameras] for delta in motion]
