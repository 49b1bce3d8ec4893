"""Sensor noise statistics, burst poses and focus, and the motion model the IMU integrates."""

from __future__ import annotations

import numpy as np
import pytest

from dfocus_capture.burst import FOCUS_BRACKET
from dfocus_capture.calibration import load_calibration
from dfocus_capture.dds import find_config
from dfocus_capture.shift_patterns import ShotPlanError
from dfocus_capture.sim import MotionError, ThinLensRenderer, make_motion, simulate_burst
from dfocus_capture.sim.scene import Scene, make_surface, rect_polygon
from dfocus_capture.sim.sensor import SensorError, SensorNoise, expose, sensor_gain, srgb_to_linear
from dfocus_capture.sim.textures import environment_map, flat_texture

CAL = load_calibration(find_config("camera_array.yaml")).scaled(160, 120)  # type: ignore[arg-type]


def test_poisson_gaussian_noise_has_the_predicted_mean_and_variance() -> None:
    noise = SensorNoise(full_well_e=4000.0, read_noise_e=4.0, vignetting=0.0)
    rng = np.random.default_rng(0)
    for level in (0.05, 0.2, 0.6):
        lin = np.full((200, 300, 3), level, np.float32)
        gain = sensor_gain("cam", 300, 200, 150.0, 100.0, noise)
        out = srgb_to_linear(expose(lin, noise, gain, rng).astype(np.float32) / 255.0)
        e = level * noise.electrons_at_white
        sigma = np.sqrt(e + noise.read_noise_e**2) / noise.electrons_at_white
        assert out.mean() == pytest.approx(level, rel=0.02)
        assert out.std() == pytest.approx(sigma, rel=0.15)
    with pytest.raises(SensorError):
        SensorNoise(gain=0.0)


def test_vignetting_darkens_the_corners_by_the_camera_strength() -> None:
    light = np.array([0.0, 0.0, -1.0])
    wall = make_surface("grey", np.array([0.0, 0.0, 2.0]), np.eye(3), rect_polygon(50, 50),
                        flat_texture(np.full(3, 0.5)), 0.01, light)
    r = ThinLensRenderer(Scene([wall], environment_map(np.random.default_rng(0)), light))
    noise = SensorNoise(full_well_e=1e9, read_noise_e=0.0, vignetting=0.3, vignetting_spread=0.0)
    img = srgb_to_linear(r.render(CAL.reference, noise=noise).image.astype(np.float32) / 255)
    centre, corner = img[58:62, 78:82].mean(), img[:2, :2].mean()
    assert corner / centre == pytest.approx(0.7, abs=0.03)


def test_burst_poses_follow_the_actuator_shifts_and_focus_brackets() -> None:
    sb = simulate_burst(CAL, 4, num_shots=3, shift_pattern="line", shift_amplitude_mm=0.6,
                        focus_mode=FOCUS_BRACKET, bracket_m=(0.3, 10.0), noise=False)
    b = sb.burst
    assert (b.num_shots, b.num_cameras, len(b.frames)) == (3, 5, 15)
    shifts = b.actuator_mm
    np.testing.assert_allclose(shifts[:, 0], [-0.6, 0.0, 0.6])
    for f in b.frames:
        calib = CAL.cameras[f.camera_index].T_ref_cam
        expected = calib.copy()
        expected[:2, 3] += (shifts[f.shot_index] - shifts[0]) * 1e-3
        np.testing.assert_allclose(f.camera.T_ref_cam, expected, atol=1e-9)
    focus = np.array([f.camera.focus_distance_m for f in b.frames])
    dioptres = np.sort(1 / focus)
    assert dioptres[0] == pytest.approx(0.1) and dioptres[-1] == pytest.approx(1 / 0.3)
    np.testing.assert_allclose(np.diff(dioptres), np.diff(dioptres)[0], rtol=1e-6)  # evenly in dioptres
    # The ground truth is the reference camera's pinhole view at shot 0.
    ref = b.reference
    assert sb.gt_depth.shape == ref.image.shape[:2]
    again = sb.renderer.render(ref.camera)
    np.testing.assert_array_equal(again.all_in_focus, sb.gt_all_in_focus)


def test_hand_held_motion_is_tremor_sized_and_consistent_with_its_derivatives() -> None:
    m = make_motion(5, 9, "none", 0.0, hand_held=True)
    poses = [m.pose_at(t) for t in m.shot_times_s]
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    trans_mm = np.array([np.linalg.norm(p[:3, 3]) * 1e3 for p in poses[1:]])
    angles = np.array([np.arccos(np.clip((np.trace(p[:3, :3]) - 1) / 2, -1, 1)) for p in poses[1:]])
    assert 0.02 < trans_mm.max() < 3.0 and 1e-4 < angles.max() < 0.02
    # Integrating the gyro and the accelerometer (minus gravity) reproduces the pose.
    dt = 1e-3
    ts = np.arange(0.0, 0.2, dt)
    R = np.eye(3)
    for t in ts[:-1]:
        w = m.angular_velocity_at(float(t) + dt / 2)
        a = np.linalg.norm(w) * dt
        K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) * dt
        R = R @ (np.eye(3) + np.sin(a) / max(a, 1e-15) * K + (1 - np.cos(a)) / max(a, 1e-15) ** 2 * K @ K)
    np.testing.assert_allclose(R, m.pose_at(float(ts[-1]))[:3, :3], atol=1e-6)
    still = make_motion(3, 0, "none", 0.0, hand_held=False)
    np.testing.assert_allclose(still.specific_force_at(0.05), [0.0, -9.80665, 0.0], atol=1e-6)


def test_bad_burst_requests_are_refused() -> None:
    with pytest.raises(MotionError):
        simulate_burst(CAL, 0, shift_pattern="zigzag")
    with pytest.raises(ShotPlanError):
        simulate_burst(CAL, 0, num_shots=0)
    with pytest.raises(ShotPlanError):
        simulate_burst(CAL, 0, focus_mode=7)


@pytest.mark.parametrize("near,far", [(float("nan"), 0.0), (0.0, float("inf")), (-0.5, 2.0)])
def test_bracket_limits_that_are_not_distances_are_refused(near: float, far: float) -> None:
    # A NaN near limit used to fall back to the calibration's range without a word.
    from dfocus_capture.shift_patterns import ShotPlanError, focus_plan

    with pytest.raises(ShotPlanError, match="bracket limits"):
        focus_plan(1, 3, [0.4, 1.0, 3.0], near, far)
