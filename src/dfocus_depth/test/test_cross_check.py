"""The two-way check on a rectified pair with exact geometry: a consistent pair passes untouched
(averaged), a fattened near object is rejected and the fill cuts it back to the background, pixels
the partner cannot see keep their own estimate."""

from __future__ import annotations

import numpy as np

from dfocus_capture.calibration import CameraModel
from dfocus_depth.background_fill import epipolar_along_rows, fill_unreliable
from dfocus_depth.cross_check import cross_check

W, H, F, BASE = 96, 40, 80.0, 0.1  # disparity = F * BASE * inverse depth = 8 px per m^-1
NEAR, FAR = 2.0, 0.5  # inverse depths (m^-1): 16 px and 4 px of disparity


def _camera(name: str, x: float) -> CameraModel:
    T = np.eye(4)
    T[0, 3] = x
    K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
    return CameraModel(name=name, width=W, height=H, K=K, D=np.zeros(5), T_ref_cam=T, focus_distance_m=1.0,
                       focal_length_mm=4.0, f_number=2.0, pixel_size_um=4.0 / F * 1e3)


LEFT, RIGHT = _camera("left", 0.0), _camera("right", BASE)


def _scene(near_from: int, near_to: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse depth seen by the left camera (a near box over columns near_from..near_to-1 on a
    far wall) and by the right one (the box 16 px further left, the wall 4 px)."""
    left = np.full((H, W), FAR, np.float32)
    left[:, near_from:near_to] = NEAR
    right = np.full((H, W), FAR, np.float32)
    right[:, near_from - 16:near_to - 16] = NEAR
    return left, right


def test_a_consistent_pair_is_kept() -> None:
    left, right = _scene(40, 60)
    out, failed = cross_check(left, right, LEFT, RIGHT)
    # The wall just left of the box is hidden from the right camera (columns 28..39): its true
    # value disagrees with the right view (which sees the box there) and is filled with the wall.
    assert not failed[:, 60:].any() and not failed[:, 4:28].any()
    assert np.allclose(out, left, atol=1e-5)


def test_a_fattened_near_object_is_cut_back_to_the_background() -> None:
    left, right = _scene(40, 60)
    fat = left.copy()
    fat[:, 34:40] = NEAR  # the left estimate spills 6 px over the wall
    fat[:, 60:63] = NEAR
    checked, failed = cross_check(fat, right, LEFT, RIGHT)
    assert failed[:, 34:40].all() and failed[:, 60:63].all()
    assert epipolar_along_rows(LEFT, RIGHT)
    out = fill_unreliable(checked, ~failed, along_rows=True)
    assert np.allclose(out[:, 34:40], FAR) and np.allclose(out[:, 60:63], FAR)
    assert np.allclose(out[:, 40:60], NEAR)


def test_pixels_the_partner_cannot_see_keep_their_estimate() -> None:
    left, right = _scene(40, 60)
    left[:, :4] = 1.3  # the wall's first 4 columns leave the right frame: nothing to check against
    out, failed = cross_check(left, right, LEFT, RIGHT)
    assert not failed[:, :4].any()
    assert np.allclose(out[:, :4], 1.3)
