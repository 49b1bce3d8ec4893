"""The burst renderer (sim.shot_warp) against the exact thin-lens render at the same poses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as psnr

from dfocus_capture.calibration import CameraModel, load_calibration
from dfocus_capture.dds import find_config
from dfocus_capture.sim import ThinLensRenderer, random_scene
from dfocus_capture.sim.sensor import SensorNoise
from dfocus_capture.sim.shot_warp import ShotRenderer

CAL = load_calibration(find_config("camera_array.yaml"))  # type: ignore[arg-type]


def moved(cam: CameraModel, dx_mm: float, dy_mm: float, yaw_mrad: float = 0.0) -> CameraModel:
    """The camera shifted in the array plane (actuators) and turned about y (hand tremor)."""
    a = yaw_mrad * 1e-3
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:2, 3] = dx_mm * 1e-3, dy_mm * 1e-3
    return replace(cam, T_ref_cam=T @ cam.T_ref_cam)


@pytest.mark.parametrize("camera", [0, 1])  # focused at 1 m and at 0.4 m (the most blur behind)
def test_warped_shots_match_the_exact_render_at_full_resolution(camera: int) -> None:
    renderer = ThinLensRenderer(random_scene(1))
    shots = ShotRenderer(renderer)
    cam = CAL.cameras[camera]
    shots.linear(cam)  # keyframe at the calibrated pose
    keyframe_image = renderer.render(cam).image
    for dx, dy, yaw in ((0.5, 0.0, 0.0), (-0.35, 0.35, 0.0), (0.3, -0.2, 2.0)):
        pose = moved(cam, dx, dy, yaw)
        exact = renderer.render(pose).image
        warped = shots.render(pose, None, np.random.default_rng(0))
        err = np.abs(warped.astype(np.int16) - exact.astype(np.int16)).max(axis=2)
        # Measured on this scene: 39-47 dB, 0.2-1.9 % of pixels off by more than 10 codes (depth
        # edges, the mirror, and the exact renderer's own resampling at sub-pixel offsets).
        assert psnr(exact, warped, data_range=255) > 38.0
        assert np.mean(err > 10) < 0.03
        # The parallax matters: the unwarped keyframe is far off.
        assert psnr(exact, warped, data_range=255) > psnr(exact, keyframe_image, data_range=255) + 5.0
    assert shots.keyframes_made == 1


def test_keyframes_follow_focus_and_large_moves() -> None:
    shots = ShotRenderer(ThinLensRenderer(random_scene(2)))
    cam = CAL.cameras[2].scaled(320, 240)
    shots.linear(cam)
    shots.linear(moved(cam, 0.5, 0.5))
    assert shots.keyframes_made == 1
    shots.linear(moved(cam, 0.5, 0.5).with_focus(2.0))  # refocused: a new keyframe
    assert shots.keyframes_made == 2
    shots.linear(moved(cam, 20.0, 0.0).with_focus(2.0))  # beyond the margin: a new keyframe
    assert shots.keyframes_made == 3


def test_every_shot_has_its_own_sensor_noise() -> None:
    shots = ShotRenderer(ThinLensRenderer(random_scene(3)))
    cam = CAL.cameras[0].scaled(320, 240)
    noise = SensorNoise(vignetting=0.0)
    clean = shots.render(cam, None, np.random.default_rng(0)).astype(np.float32)
    a = shots.render(cam, noise, np.random.default_rng(1)).astype(np.float32) - clean
    b = shots.render(cam, noise, np.random.default_rng(2)).astype(np.float32) - clean
    assert 0.5 < a.std() < 5.0 and 0.5 < b.std() < 5.0  # a few code values of shot and read noise
    # Independent draws: the variances add (up to the rounding both share with the clean image).
    assert np.var(a - b) / (np.var(a) + np.var(b)) > 0.9
