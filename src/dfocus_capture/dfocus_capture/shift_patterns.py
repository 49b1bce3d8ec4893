"""Actuator shift patterns of a burst and the per-shot focus plan.

Shift targets are absolute stage positions (mm, array x right / y down) around the stage centre:
`circle` puts the shots evenly on a circle of radius `amplitude_mm` (the first one at +x), `line`
spreads them evenly along x over [-amplitude, +amplitude], `random` draws them uniformly in the
disc (seeded, so a burst can be repeated), `none` keeps the array at the centre.

Focus: FIXED keeps every camera at its calibrated distance; BRACKET sweeps all cameras together
from shot to shot, evenly in diopters (1/m) between the near and far limits, since depth of field
is roughly constant in diopters; each camera is offset by its own place in the array's sweep so
that shots x cameras sample the range densely.
"""

from __future__ import annotations

import math

import numpy as np

PATTERN_NONE, PATTERN_CIRCLE, PATTERN_LINE, PATTERN_RANDOM = 0, 1, 2, 3
PATTERN_NAMES = {PATTERN_NONE: "none", PATTERN_CIRCLE: "circle", PATTERN_LINE: "line", PATTERN_RANDOM: "random"}
MAX_SHOTS = 10


class ShotPlanError(ValueError):
    """A burst request cannot be planned (pattern, amplitude, shot count, focus limits)."""


def shift_targets(pattern: int, num_shots: int, amplitude_mm: float, seed: int = 0,
                  travel_mm: tuple[float, float] | None = None) -> np.ndarray:
    """(num_shots, 2) absolute x/y stage targets in mm."""
    if pattern not in PATTERN_NAMES:
        raise ShotPlanError(f"unknown shift pattern {pattern}; use one of {PATTERN_NAMES}")
    if not 1 <= num_shots <= MAX_SHOTS:
        raise ShotPlanError(f"num_shots must be 1..{MAX_SHOTS}, got {num_shots}")
    if not (math.isfinite(amplitude_mm) and amplitude_mm >= 0):
        raise ShotPlanError(f"shift amplitude must be a finite number >= 0 mm, got {amplitude_mm}")
    k = np.arange(num_shots, dtype=np.float64)
    if pattern == PATTERN_CIRCLE:
        angle = 2 * np.pi * k / num_shots
        out = amplitude_mm * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    elif pattern == PATTERN_LINE:
        x = np.linspace(-amplitude_mm, amplitude_mm, num_shots) if num_shots > 1 else np.zeros(1)
        out = np.stack([x, np.zeros(num_shots)], axis=1)
    elif pattern == PATTERN_RANDOM:
        rng = np.random.default_rng(seed)
        r = amplitude_mm * np.sqrt(rng.random(num_shots))
        angle = 2 * np.pi * rng.random(num_shots)
        out = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    else:
        out = np.zeros((num_shots, 2))
    if travel_mm is not None:
        lo, hi = travel_mm
        if out.size and (out.min() < lo or out.max() > hi):
            raise ShotPlanError(
                f"{PATTERN_NAMES[pattern]} pattern with amplitude {amplitude_mm} mm leaves the actuator travel "
                f"{lo} .. {hi} mm"
            )
    return out


def focus_plan(mode: int, num_shots: int, camera_focus_m: list[float], near_m: float = 0.0,
               far_m: float = 0.0) -> np.ndarray:
    """(num_shots, num_cameras) focus distances in metres.

    FIXED (0): each camera's own distance every shot. BRACKET (1): num_shots x cameras focus
    positions evenly in diopters over [near, far] (0 = the calibration's closest / farthest focus),
    interleaved so that each shot covers the whole range and each camera sweeps a band of it.
    """
    if mode not in (0, 1):
        raise ShotPlanError(f"unknown focus mode {mode}; use 0 (fixed) or 1 (bracket)")
    n = len(camera_focus_m)
    if n == 0:
        raise ShotPlanError("no cameras to plan focus for")
    if mode == 0:
        return np.tile(np.asarray(camera_focus_m, dtype=np.float64), (num_shots, 1))
    if not (math.isfinite(near_m) and math.isfinite(far_m) and near_m >= 0 and far_m >= 0):
        raise ShotPlanError(f"bracket limits must be 0 (the calibration's) or positive metres, got near {near_m}, "
                            f"far {far_m}")
    near = near_m if near_m > 0 else min(camera_focus_m)
    far = far_m if far_m > 0 else max(camera_focus_m)
    if not 0 < near < far:
        raise ShotPlanError(f"bracket limits must satisfy 0 < near < far, got near {near} m, far {far} m")
    # Cameras ordered from near to far focus own consecutive bands of the diopter range; shot k
    # takes the k-th step inside every band.
    total = num_shots * n
    diopters = np.linspace(1.0 / near, 1.0 / far, total) if total > 1 else np.array([2.0 / (near + far)])
    order = np.argsort(np.asarray(camera_focus_m))
    plan = np.empty((num_shots, n))
    for band, cam in enumerate(order):
        plan[:, cam] = 1.0 / diopters[band * num_shots:(band + 1) * num_shots]
    return plan
