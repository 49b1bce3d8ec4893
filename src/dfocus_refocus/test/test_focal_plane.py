"""Focal plane resolution and validation (pure, no rclpy)."""

import math
from pathlib import Path

import numpy as np
import pytest

from dfocus_capture.calibration import load_calibration
from dfocus_refocus.focal_plane import (
    FocalPlaneError,
    depth_of_field,
    resolve_focal_plane,
    signed_coc_px,
)

CAL = Path(__file__).resolve().parents[3] / "config" / "camera_array.yaml"


@pytest.fixture(scope="module")
def cam():
    return load_calibration(CAL).reference


def test_explicit_range(cam):
    r = resolve_focal_plane(cam, focus_m=1.0, near_m=0.8, far_m=1.5)
    assert (r.focus_m, r.near_m, r.far_m, r.hard) == (1.0, 0.8, 1.5, True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"focus_m": 1.0, "near_m": 2.0, "far_m": 1.5}, "beyond far_m"),
        ({"focus_m": 1.0, "near_m": 0.5, "far_m": 0.8}, "must lie within"),
        ({"focus_m": -1.0}, "must not be negative"),
        ({"focus_m": float("nan")}, "finite"),
        ({"focus_m": 1.0, "near_m": 0.5}, "both be set"),
        ({"focus_m": 0.0}, "must be positive"),
        ({"focus_m": 0.004}, "focal length"),
        ({"focus_m": 1.0, "f_number": -2.0}, "f-number"),
    ],
)
def test_invalid_planes_raise_with_reason(cam, kwargs, message):
    with pytest.raises(FocalPlaneError, match=message):
        resolve_focal_plane(cam, **kwargs)


def test_depth_of_field_matches_thin_lens_coc(cam):
    near, far = depth_of_field(cam, 1.0, 1.8, coc_limit_px=2.0)
    assert near < 1.0 < far
    # At the limits the thin-lens CoC equals the acceptable CoC.
    assert cam.coc_px(near, focus_m=1.0, f_number=1.8) == pytest.approx(2.0, rel=1e-3)
    assert cam.coc_px(far, focus_m=1.0, f_number=1.8) == pytest.approx(2.0, rel=1e-3)
    r = resolve_focal_plane(cam, focus_m=1.0, f_number=8.0)
    r_wide = resolve_focal_plane(cam, focus_m=1.0, f_number=1.4)
    assert not r.hard and r.far_m - r.near_m > r_wide.far_m - r_wide.near_m  # stopping down deepens it
    assert math.isinf(depth_of_field(cam, 100.0, 16.0, 1.0)[1])  # past the hyperfocal distance


def test_mask_range_is_robust_to_outliers_and_nan(cam):
    depth = np.full((100, 100), 5.0, np.float32)
    depth[20:60, 20:60] = np.linspace(0.9, 1.1, 40, dtype=np.float32)[None, :]
    depth[30, 30] = np.nan
    mask = np.zeros((100, 100), np.uint8)
    mask[20:61, 20:60] = 255  # one row spills onto the 5 m background: 40 of 1640 pixels
    r = resolve_focal_plane(cam, focus_m=0.0, mask=mask, depth=depth)
    assert 0.9 <= r.near_m < 0.95 and 1.05 < r.far_m <= 1.1
    assert r.near_m <= r.focus_m <= r.far_m
    both = resolve_focal_plane(cam, focus_m=2.0, near_m=1.5, far_m=3.0, mask=mask, depth=depth)
    assert both.near_m == pytest.approx(r.near_m) and both.far_m == 3.0 and both.focus_m == 2.0


def test_mask_errors(cam):
    depth = np.ones((50, 60), np.float32)
    with pytest.raises(FocalPlaneError, match="empty"):
        resolve_focal_plane(cam, focus_m=0.0, mask=np.zeros((50, 60), np.uint8), depth=depth)
    with pytest.raises(FocalPlaneError, match="60x50"):
        resolve_focal_plane(cam, focus_m=0.0, mask=np.ones((40, 60), np.uint8), depth=depth)
    with pytest.raises(FocalPlaneError, match="no valid depth"):
        resolve_focal_plane(cam, focus_m=0.0, mask=np.ones((50, 60), np.uint8), depth=depth * np.nan)


def test_signed_coc_is_thin_lens_and_zero_inside_range(cam):
    z = np.array([0.4, 0.8, 1.0, 1.5, 5.0], np.float32)
    exact = resolve_focal_plane(cam, focus_m=1.0, near_m=1.0, far_m=1.0)
    c = signed_coc_px(z, exact, cam, 1.8)
    np.testing.assert_allclose(np.abs(c), cam.coc_px(z, focus_m=1.0, f_number=1.8), rtol=1e-4, atol=1e-4)
    assert c[0] < 0 < c[-1]
    ranged = resolve_focal_plane(cam, focus_m=1.0, near_m=0.8, far_m=1.5)
    c2 = signed_coc_px(z, ranged, cam, 1.8, strength=2.0)
    assert c2[1] == c2[2] == c2[3] == 0
    expected = -2 * cam.coc_px(0.4, focus_m=1.0, f_number=1.8) + 2 * cam.coc_px(0.8, 1.0, 1.8)
    assert c2[0] == pytest.approx(expected, rel=1e-3)
