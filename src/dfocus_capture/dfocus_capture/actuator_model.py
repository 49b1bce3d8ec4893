"""Simulated micro-actuator stage that shifts the whole camera array in its x/y plane.

A voice-coil/piezo sensor-shift stage as its controller sees it: every axis has travel limits; a
move commands a straight-line trapezoidal velocity profile (max speed, acceleration) and the stage
follows it as a damped second-order system (resonance, damping ratio): it lags while accelerating
and rings around the target afterwards. The controller reports the move done ("in position") once
the ringing envelope is under the position tolerance and has stayed there for `settle_time_s`; the
encoder reads the position with a finite resolution. A stuck axis (simulated fault) stays where it
is; the controller flags a following error once the commanded profile runs away from it, and the
move never settles.

Time is an argument everywhere (seconds on the caller's clock), so the model is deterministic and
the node, the IMU simulation and the tests can all evaluate the same trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class ActuatorError(ValueError):
    """A move request was refused (out of range, wrong number of axes, not finite)."""


@dataclass(frozen=True)
class StageConfig:
    axes: tuple[str, ...] = ("x", "y")
    min_mm: tuple[float, ...] = (-1.5, -1.5)
    max_mm: tuple[float, ...] = (1.5, 1.5)
    max_speed_mm_s: float = 20.0
    accel_mm_s2: float = 2000.0
    resonance_hz: float = 180.0
    damping_ratio: float = 0.1
    tolerance_mm: float = 0.001  # in position when the error stays within this
    settle_time_s: float = 0.005  # in-position window the error must stay within the tolerance
    encoder_resolution_mm: float = 0.0001
    following_error_mm: float = 0.02  # a stuck axis is flagged once the profile is this far ahead
    stuck_axis: str = ""  # simulated fault: this axis does not move

    def __post_init__(self) -> None:
        n = len(self.axes)
        if n == 0 or len(self.min_mm) != n or len(self.max_mm) != n:
            raise ActuatorError(f"axes {self.axes}, min_mm {self.min_mm}, max_mm {self.max_mm}: one entry per axis")
        if any(not lo < hi for lo, hi in zip(self.min_mm, self.max_mm, strict=True)):
            raise ActuatorError(f"every min_mm must be below its max_mm: {self.min_mm} / {self.max_mm}")
        for name in ("max_speed_mm_s", "accel_mm_s2", "tolerance_mm", "resonance_hz", "encoder_resolution_mm",
                     "following_error_mm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ActuatorError(f"{name} must be a positive number, got {v}")
        if not 0 < self.damping_ratio < 1:
            raise ActuatorError(f"damping_ratio must be in (0, 1) (an underdamped stage), got {self.damping_ratio}")
        if not self.settle_time_s >= 0:
            raise ActuatorError(f"settle_time_s must be >= 0, got {self.settle_time_s}")
        if self.stuck_axis and self.stuck_axis not in self.axes:
            raise ActuatorError(f"stuck_axis {self.stuck_axis!r} is not one of {list(self.axes)}")


@dataclass(frozen=True)
class StageState:
    position_mm: np.ndarray  # encoder reading
    target_mm: np.ndarray
    moving: bool  # profile running, or not yet in position
    fault: bool
    fault_message: str


@dataclass(frozen=True)
class _Move:
    start: np.ndarray
    target: np.ndarray
    t0: float
    direction: np.ndarray  # unit vector of the move (zero for a null move)
    length: float
    t_acc: float  # duration of the acceleration (and of the deceleration) phase
    t_total: float  # end of the commanded velocity profile
    v_peak: float
    phases: tuple[tuple[float, float, float], ...]  # (start, duration, commanded acceleration)


class StageModel:
    def __init__(self, config: StageConfig, t0: float = 0.0, start_mm: np.ndarray | None = None) -> None:
        self.config = config
        n = len(config.axes)
        pos = np.zeros(n) if start_mm is None else np.asarray(start_mm, dtype=np.float64)
        self._check_in_range(pos)
        self._stuck = config.axes.index(config.stuck_axis) if config.stuck_axis else -1
        self._w = 2 * math.pi * config.resonance_hz
        self._move = self._plan(pos, pos, t0)

    def resolve_target(self, target_mm: list[float] | np.ndarray, relative: bool) -> np.ndarray:
        """The absolute target of a request, or ActuatorError with the reason it is refused."""
        target: np.ndarray = np.asarray(target_mm, dtype=np.float64).ravel()
        n = len(self.config.axes)
        if target.size != n:
            raise ActuatorError(f"expected {n} targets (axes {', '.join(self.config.axes)}), got {target.size}")
        if not np.all(np.isfinite(target)):
            raise ActuatorError(f"targets must be finite numbers, got {target.tolist()}")
        if relative:
            target = self._move.target + target
        self._check_in_range(target)
        return target

    def _check_in_range(self, target: np.ndarray) -> None:
        for name, v, lo, hi in zip(self.config.axes, target, self.config.min_mm, self.config.max_mm, strict=True):
            if not lo <= v <= hi:
                raise ActuatorError(f"axis {name} target {v:.4f} mm is outside the travel {lo:.3f} .. {hi:.3f} mm")

    def command(self, target_mm: list[float] | np.ndarray, t: float, relative: bool = False) -> np.ndarray:
        """Start a move to the target at time t; returns the absolute target.

        A move replacing one in progress starts from where the stage is, at rest (the node refuses
        moves while busy, so this only happens when driving the model directly)."""
        target = self.resolve_target(target_mm, relative)
        self._move = self._plan(self.true_position(t), target, t)
        return target

    def _plan(self, start: np.ndarray, target: np.ndarray, t0: float) -> _Move:
        cfg = self.config
        delta = target - start
        length = float(np.linalg.norm(delta))
        vmax, acc = cfg.max_speed_mm_s, cfg.accel_mm_s2
        if length <= vmax * vmax / acc:  # triangular profile: never reaches max speed
            t_acc = math.sqrt(length / acc)
            v_peak, t_total = acc * t_acc, 2 * t_acc
        else:
            t_acc, v_peak = vmax / acc, vmax
            t_total = 2 * t_acc + (length - vmax * vmax / acc) / vmax
        t_cruise = t_total - 2 * t_acc
        phases = ((0.0, t_acc, acc), (t_acc, t_cruise, 0.0), (t_acc + t_cruise, t_acc, -acc), (t_total, math.inf, 0.0))
        direction = delta / length if length > 0 else np.zeros_like(delta)
        return _Move(start.copy(), target.copy(), t0, direction, length, t_acc, t_total, v_peak, phases)

    def _path_length(self, tau: float) -> float:
        """Commanded distance along the move after tau seconds of the velocity profile."""
        m, acc = self._move, self.config.accel_mm_s2
        if tau <= 0:
            return 0.0
        if tau >= m.t_total:
            return m.length
        if tau < m.t_acc:
            return 0.5 * acc * tau * tau
        if tau < m.t_total - m.t_acc:
            return 0.5 * acc * m.t_acc * m.t_acc + m.v_peak * (tau - m.t_acc)
        left = m.t_total - tau
        return m.length - 0.5 * acc * left * left

    def _evolve(self, e: float, v: float, acc: float, dt: float) -> tuple[float, float]:
        """Tracking error e = x - r and its rate after dt under a constant commanded acceleration:
        e'' + 2 zeta w e' + w^2 e = -acc (the stage's control loop as a damped oscillator)."""
        w, z = self._w, self.config.damping_ratio
        wd = w * math.sqrt(1 - z * z)
        p = -acc / (w * w)
        u0 = e - p
        b = (v + z * w * u0) / wd
        k, c, s = math.exp(-z * w * dt), math.cos(wd * dt), math.sin(wd * dt)
        u = k * (u0 * c + b * s)
        du = k * (-z * w * (u0 * c + b * s) + wd * (b * c - u0 * s))
        return u + p, du

    def _error(self, tau: float) -> tuple[float, float]:
        e = v = 0.0
        for start, duration, acc in self._move.phases:
            if tau <= start:
                break
            e, v = self._evolve(e, v, acc, min(tau, start + duration) - start)
        return e, v

    def commanded_position(self, t: float) -> np.ndarray:
        m = self._move
        return np.asarray(m.start + m.direction * self._path_length(t - m.t0), dtype=np.float64)

    def true_position(self, t: float) -> np.ndarray:
        m = self._move
        pos = m.start + m.direction * (self._path_length(t - m.t0) + self._error(t - m.t0)[0])
        if self._stuck >= 0:
            pos[self._stuck] = m.start[self._stuck]
        return np.asarray(pos, dtype=np.float64)

    def settled_at(self) -> float | None:
        """When the current move is reported in position; None if it never is (stuck axis)."""
        m = self._move
        if self._stuck >= 0 and abs(m.target[self._stuck] - m.start[self._stuck]) > self.config.tolerance_mm:
            return None
        # After the profile the error rings down inside the envelope R exp(-zeta w t).
        e, v = self._error(m.t_total)
        w, z = self._w, self.config.damping_ratio
        wd = w * math.sqrt(1 - z * z)
        envelope = math.hypot(e, (v + z * w * e) / wd)
        ring = math.log(envelope / self.config.tolerance_mm) / (z * w) if envelope > self.config.tolerance_mm else 0.0
        return m.t0 + m.t_total + ring + self.config.settle_time_s

    def fault(self, t: float) -> str:
        """The following-error message of a stuck axis, or '' when the stage follows its profile."""
        if self._stuck < 0:
            return ""
        m = self._move
        err = abs(self.commanded_position(t)[self._stuck] - m.start[self._stuck])
        if err <= self.config.following_error_mm:
            return ""
        name = self.config.axes[self._stuck]
        return (f"following error on axis {name}: stuck at {m.start[self._stuck]:.4f} mm while commanded to "
                f"{m.target[self._stuck]:.4f} mm")

    def measured(self, t: float) -> np.ndarray:
        res = self.config.encoder_resolution_mm
        return np.asarray(np.round(self.true_position(t) / res) * res, dtype=np.float64)

    def state(self, t: float) -> StageState:
        settled = self.settled_at()
        fault = self.fault(t)
        return StageState(
            position_mm=self.measured(t),
            target_mm=self._move.target.copy(),
            moving=settled is None or t < settled,
            fault=bool(fault),
            fault_message=fault,
        )

    @property
    def target(self) -> np.ndarray:
        return self._move.target.copy()
