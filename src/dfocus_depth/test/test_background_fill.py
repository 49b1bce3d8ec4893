"""The background fill: unreliable pixels take the farther of their reliable neighbours along the
epipolar direction, reliable ones are untouched, and a map with nothing to fill comes back as is."""

from __future__ import annotations

import numpy as np

from dfocus_depth.background_fill import fill_unreliable, occlusion_sized

NEAR, WALL = 2.0, 0.5  # inverse depths, m^-1


def _scene() -> np.ndarray:
    inv = np.full((30, 60), WALL, np.float32)
    inv[:, 40:55] = NEAR  # a near box at the right
    return inv


def test_a_patch_guessed_too_near_takes_the_wall_around_it() -> None:
    truth = _scene()
    guess = truth.copy()
    guess[8:20, 10:25] = 1.4  # a textureless sheet on the wall, guessed halfway to the box
    out = fill_unreliable(guess, ~((guess > 1.0) & (guess < 1.9)), along_rows=True)
    np.testing.assert_allclose(out, truth, atol=1e-6)


def test_a_hole_between_two_depths_takes_the_farther() -> None:
    truth = _scene()
    reliable = np.ones(truth.shape, bool)
    reliable[:, 35:40] = False  # beside the box: the wall it occludes in one view
    out = fill_unreliable(np.where(reliable, truth, 3.0).astype(np.float32), reliable, along_rows=True)
    np.testing.assert_allclose(out[:, 35:40], WALL)
    np.testing.assert_array_equal(out[reliable], truth[reliable])


def test_columns_are_used_when_the_epipolar_lines_are_vertical() -> None:
    inv = np.full((40, 20), NEAR, np.float32)
    inv[:20] = WALL  # a far wall above a near floor
    reliable = np.ones(inv.shape, bool)
    reliable[20:23, 4:16] = False
    out = fill_unreliable(inv, reliable, along_rows=False)
    # From above (the wall, the farther), not from beside (the floor); the median softens the corners.
    np.testing.assert_allclose(out[20:23, 6:14], WALL)
    assert fill_unreliable(inv, reliable, along_rows=True)[21, 10] == NEAR


def test_nothing_to_fill_returns_the_map() -> None:
    inv = _scene()
    assert fill_unreliable(inv, np.ones(inv.shape, bool), along_rows=True) is inv


PX_PER_INV = 10.0  # disparity px per m^-1: the box's edge is a 15 px disparity jump


def test_only_runs_as_wide_as_the_depth_jump_count_as_occlusions() -> None:
    inv = _scene()
    failed = np.zeros(inv.shape, bool)
    failed[0:5, 25:40] = True  # 15 px beside the box: what the other camera cannot see
    failed[10:15, 3:35] = True  # 32 px inside the wall: a mismatch both views made, no occlusion
    failed[20:25, 0:30] = True  # reaching the border: the strip the other camera never sees
    fits = occlusion_sized(failed, inv, True, PX_PER_INV, margin_px=2.0)
    assert fits[0:5, 25:40].all() and fits[20:25, 0:30].all()
    assert not fits[10:15].any()
    assert not (fits & ~failed).any()
    # Columns: the same run along a vertical epipolar line.
    np.testing.assert_array_equal(occlusion_sized(failed.T, inv.T, False, PX_PER_INV, margin_px=2.0), fits.T)
