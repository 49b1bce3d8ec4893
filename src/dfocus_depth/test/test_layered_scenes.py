"""The test split's own generator and renderer: views agree with the true disparity, defocus follows
each camera's focus, the sensor's noise follows its gain, and the calibration errors reach only
the calibration the estimator is told."""

from __future__ import annotations

import numpy as np
import pytest

from dfocus_capture.calibration import ArrayCalibration
from dfocus_depth.eval_suite import pinhole_camera, stereo_rig
from dfocus_depth.layered_scenes import (
    Capture,
    LayeredSceneError,
    _plane_at,
    disc,
    expose,
    layered_scene,
    reference_depth,
    render_burst,
    render_view,
)


def _photos() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    import cv2

    noise = cv2.GaussianBlur(rng.random((300, 400, 3)).astype(np.float32), (0, 0), 1.2)
    return ((noise * 255).astype(np.uint8),)


def _pair(focus_m: float = 1.0, f_number: float = 16.0, focal_mm: float = 6.0) -> ArrayCalibration:
    cams = tuple(pinhole_camera(name, 160, 120, 150.0, x, focus_m, f_number, focal_mm)
                 for name, x in (("left", 0.0), ("right", 0.05)))
    return ArrayCalibration(reference_camera="left", cameras=cams)


def test_the_right_view_is_the_left_view_shifted_by_the_true_disparity() -> None:
    cal = _pair()
    scene = layered_scene(cal, (2.0, 0.8), _photos(), seed=3)
    left, right = (render_view(scene, cam) for cam in cal.cameras)
    depth = reference_depth(scene)
    disp = 150.0 * 0.05 / depth
    assert set(np.round(np.unique(disp), 3)) <= {3.75, 9.375}  # the two layers' disparities
    ys, xs = np.mgrid[20:100, 30:140]
    sampled = right[ys, np.round(xs - disp[ys, xs]).astype(int)]
    # Exactly where the layers' disparities are integral or half-integral: compare away from edges.
    fronto = np.abs(np.diff(disp, axis=1, prepend=disp[:, :1]))[ys, xs] == 0
    err = np.abs(sampled - left[ys, xs]).mean(axis=-1)[fronto]
    shuffled = np.abs(right[ys, xs] - left[ys, xs]).mean(axis=-1)[fronto]
    assert np.median(err) < 0.25 * np.median(shuffled)


def test_a_layer_in_focus_is_sharper_than_one_out_of_focus() -> None:
    def sharpness(focus_m: float) -> float:
        cal = _pair(focus_m, 1.4, focal_mm=25.0)  # a 7 px circle of confusion at 0.3 m focus
        scene = layered_scene(cal, (1.0,), _photos(), seed=1)
        img = render_view(scene, cal.cameras[0]).mean(axis=-1)
        return float(np.var(np.diff(img, axis=1)))

    assert sharpness(1.0) > 3 * sharpness(0.3)


def test_slanted_background_depth_is_the_analytic_plane_depth() -> None:
    cal = _pair()
    plane = _plane_at(2.0, tilt_x=0.0, tilt_y=0.3)
    z = plane.depth(cal.cameras[0], np.eye(4))
    ref = cal.cameras[0]
    u = np.arange(ref.width)
    x_ray = (u - ref.cx) / ref.fx
    expected = plane.offset_m / (plane.normal[0] * x_ray + plane.normal[2])
    assert np.allclose(z[10], expected)
    assert abs(z[60, int(round(ref.cx))] - 2.0) < 0.01  # through (0, 0, 2) on the axis


def test_sensor_noise_grows_with_gain_and_exposure_scales_the_level() -> None:
    cam = _pair().cameras[0]
    flat = np.full((cam.height, cam.width, 3), 0.18, np.float32)
    rng = np.random.default_rng(0)
    low = expose(flat, cam, rng, gain=1.0, vignetting=0.0).astype(float)
    high = expose(flat, cam, rng, gain=16.0, vignetting=0.0).astype(float)
    bright = expose(flat, cam, rng, exposure=2.0, gain=1.0, vignetting=0.0).astype(float)
    assert high.std() > 2 * low.std()
    assert bright.mean() > low.mean() + 20


def test_calibration_errors_reach_only_the_sources_as_told() -> None:
    cal = stereo_rig(160, 120, 150.0, 0.05)
    scene = layered_scene(cal, (3.0, 1.0), _photos(), seed=2)
    burst, depth = render_burst(scene, cal, Capture(principal_point_error_px=0.5, rotation_error_deg=0.1), seed=2)
    assert np.array_equal(burst.frames[0].camera.K, cal.cameras[0].K)
    assert not np.array_equal(burst.frames[1].camera.K, cal.cameras[1].K)
    assert not np.array_equal(burst.frames[1].camera.T_ref_cam, cal.cameras[1].T_ref_cam)
    assert depth.shape == (120, 160) and np.isfinite(depth).all()


def test_disc_kernel_is_normalised_and_round() -> None:
    k = disc(7.0)
    assert abs(k.sum() - 1) < 1e-6 and k.shape == (9, 9)
    assert k[4, 4] > 0 and k[0, 0] == 0  # the corner lies outside the circle
    assert disc(0.5).shape == (1, 1)


def test_layers_out_of_order_are_refused() -> None:
    with pytest.raises(LayeredSceneError):
        layered_scene(_pair(), (0.8, 2.0), _photos(), seed=0)
