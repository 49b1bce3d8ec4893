"""The census refinement on a rectified pair rendered with exact sub-pixel disparities: a network
estimate off by a fraction of a pixel to a pixel and a half comes back to the truth (also with a
gain and offset between the cameras); texture-free areas, pixels the partner cannot see and
estimates further off than the band keep their value; bad inputs raise its own error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfocus_capture.calibration import parse_middlebury_calib
from dfocus_depth.census_refine import CensusRefineError, census, census_refine

W, H, F, BASE = 160, 64, 80.0, 0.1  # disparity = F * BASE * inverse depth = 8 px per m^-1
PX_PER_INV = F * BASE
MARGIN = 16  # texture beyond the right image's right edge, so every row has its match

_K = f"[{F} 0 {(W - 1) / 2}; 0 {F} {(H - 1) / 2}; 0 0 1]"
LEFT, RIGHT = parse_middlebury_calib(  # a rectified pair, as a Middlebury calib.txt gives it
    f"cam0={_K}\ncam1={_K}\nbaseline={BASE * 1e3}\nwidth={W}\nheight={H}\n").cameras


def _pair(disparity: np.ndarray, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Left and right RGB views of a textured plane: right(u) = left(u + d) along each row."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((H, W + MARGIN, 3)).astype(np.float32), (0, 0), 1.2)
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    left = texture[:, :W].copy()
    right = cv2.remap(texture, xs + disparity.astype(np.float32), ys, cv2.INTER_LINEAR)
    return left, right


def _slanted() -> np.ndarray:
    """True disparity: 6 px at the top to 9 px at the bottom, sub-pixel on most rows."""
    return np.repeat(np.linspace(6.0, 9.0, H, dtype=np.float32)[:, None], W, axis=1)


def _error_px(inv: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    return np.abs(inv * PX_PER_INV - disparity)[4:-4, 16:-8]  # away from the borders the windows clip


def test_census_codes_count_the_darker_neighbours() -> None:
    img = np.zeros((9, 9), np.float32)
    img[4, 4] = 1.0
    code = census(img)
    assert int(np.bitwise_count(code[4, 4])) == 24  # all 24 neighbours of the 5x5 window are darker
    assert int(np.bitwise_count(code[0, 0])) == 0  # nothing is darker than a dark pixel


@pytest.mark.parametrize("gain", [1.0, 0.6])
def test_an_estimate_off_by_up_to_one_and_a_half_pixels_comes_back(gain: float) -> None:
    truth = _slanted()
    left, right = _pair(truth)
    right = right * gain + (1 - gain) * 0.3  # another exposure: census compares orders, not levels
    x = np.arange(W)[None, :]
    off = np.where(x < W // 2, 0.8, -1.5) + 0.3 * np.sin(x / 7.0)  # smooth, as the upsampled network map is
    estimate = ((truth + off) / PX_PER_INV).astype(np.float32)
    refined = census_refine(estimate, left, LEFT, right, RIGHT)
    before, after = _error_px(estimate, truth), _error_px(refined, truth)
    assert before.mean() > 1.0
    assert after.mean() < 0.15 and np.median(after) < 0.1, (after.mean(), np.median(after))


def test_without_texture_the_estimate_stays() -> None:
    flat = np.full((H, W, 3), 0.5, np.float32)
    estimate = (_slanted() + 0.7) / PX_PER_INV
    refined = census_refine(estimate.astype(np.float32), flat, LEFT, flat, RIGHT)
    assert np.array_equal(refined, estimate.astype(np.float32))


def test_pixels_the_partner_cannot_see_keep_their_estimate() -> None:
    truth = _slanted()
    left, right = _pair(truth)
    estimate = ((truth + 0.8) / PX_PER_INV).astype(np.float32)
    refined = census_refine(estimate, left, LEFT, right, RIGHT)
    outside = np.arange(W)[None, :] - (truth + 0.8) < 0  # they land left of the right image
    assert outside.any()
    assert np.array_equal(refined[outside], estimate[outside])


def test_the_band_scales_with_the_working_resolution() -> None:
    truth = _slanted()
    left, right = _pair(truth)
    estimate = ((truth + 3.0) / PX_PER_INV).astype(np.float32)  # beyond 2 px, within 2 x 2 px
    beyond = census_refine(estimate, left, LEFT, right, RIGHT)
    assert np.median(_error_px(beyond, truth)) > 1.0  # out of reach: never pulled a match from outside
    refined = census_refine(estimate, left, LEFT, right, RIGHT, working_scale=2.0)
    assert np.median(_error_px(refined, truth)) < 0.15


def test_bad_inputs_raise_its_own_error() -> None:
    truth = _slanted()
    left, right = _pair(truth)
    estimate = (truth / PX_PER_INV).astype(np.float32)
    with pytest.raises(CensusRefineError, match="match the reference"):
        census_refine(estimate[:, :-1], left, LEFT, right, RIGHT)
    nan = estimate.copy()
    nan[3, 3] = np.nan
    with pytest.raises(CensusRefineError, match="finite"):
        census_refine(nan, left, LEFT, right, RIGHT)
    with pytest.raises(CensusRefineError, match="no baseline"):
        census_refine(estimate, left, LEFT, right, LEFT)
    with pytest.raises(CensusRefineError, match="64 bits"):
        census(left[:, :, 0], taps=tuple((dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)))
