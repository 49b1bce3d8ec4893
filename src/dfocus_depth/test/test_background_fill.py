"""The background fill: unreliable pixels take the farther of their reliable neighbours along the
epipolar direction, reliable ones are untouched, and a map with nothing to fill comes back as is."""

from __future__ import annotations

import numpy as np

from dfocus_depth.background_fill import fill_unreliable

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
