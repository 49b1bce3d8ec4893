"""Simulated bursts for the refocus tests: the simulator's thin-lens renderer, one view per
camera and shot, with the true depth and all-in-focus image of the reference view."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dfocus_capture.burst import Burst, BurstFrame
from dfocus_capture.calibration import ArrayCalibration, load_calibration

CAL = Path(__file__).resolve().parents[3] / "config" / "camera_array.yaml"


@dataclass
class SimCase:
    burst: Burst
    depth: np.ndarray  # true depth of the reference view
    all_in_focus: np.ndarray  # true pinhole image of the reference view
    calibration: ArrayCalibration
    renderer: object


def rotation(deg: float, axis: str) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]] if axis == "y" else [[1, 0, 0], [0, c, -s], [0, s, c]]
    return T


def make_case(seed: int, width: int = 320, shots: int = 1, noise: bool = True, stamp_ns: int = 0,
              sequence_id: int = 1, pinhole: bool = False) -> SimCase:
    """A burst of `shots` x the calibrated cameras; `pinhole` frames are the views' noise-free
    all-in-focus images (to measure registration alone)."""
    from dfocus_capture.sim import SensorNoise, ThinLensRenderer, random_scene

    cal = load_calibration(CAL).scaled(width, width * 3 // 4)
    renderer = ThinLensRenderer(random_scene(seed))
    rng = np.random.default_rng(seed)
    frames = []
    for shot in range(shots):
        for i, cam in enumerate(cal.cameras):
            T = cam.T_ref_cam.copy()
            if shot > 0:  # actuator shift of the whole array between shots
                T[:2, 3] += 0.0005 * np.array([math.cos(shot), math.sin(shot)])
            cam_shot = replace(cam, T_ref_cam=T)
            view = renderer.render(cam_shot, noise=SensorNoise() if noise else None, rng=rng)
            image = view.all_in_focus if pinhole else view.image
            frames.append(BurstFrame(i, shot, cam_shot, image, stamp_ns=stamp_ns))
    truth = renderer.render(cal.reference)
    burst = Burst(sequence_id, cal.reference_camera, shots, len(cal.cameras), frames, stamp_ns=stamp_ns)
    return SimCase(burst, truth.depth, truth.all_in_focus, cal, renderer)
