"""The one-volume consistency check, the background fill and the Middlebury-style baselines and
masks, on small cases whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import torch

from dfocus_depth.consistency import consistent, epipolar_rows, fill_background, settle
from dfocus_depth.evaluate import occluded
from dfocus_depth.stereo_baselines import fill_scanline


def _rectified(w: int, planes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """grid / inside of one row and one source to the right: plane k shifts pixel x to x - k."""
    x = torch.arange(w, dtype=torch.float32).view(1, w) - torch.arange(planes, dtype=torch.float32).view(planes, 1)
    grid = torch.stack([(x + 0.5) * 2 / w - 1, torch.zeros_like(x)], dim=-1)  # D, w, 2 (h = 1)
    inside = (x >= 0).view(1, 1, planes, 1, w)
    return grid.view(1, planes, w, 2), inside


def test_a_pixel_hidden_behind_a_nearer_surface_fails_the_check() -> None:
    w, D = 8, 4
    grid, inside = _rectified(w, D)
    best = torch.tensor([0, 0, 0, 0, 0, 3, 3, 3])  # background at plane 0, a near block at plane 3 from x = 5
    score = torch.full((1, D, 1, w), -1.0)
    score[0, best, 0, torch.arange(w)] = 0.0
    score[0, 0, 0, 2:5] = -0.5  # x = 2..4 are hidden in the source behind the block: weak matches
    ok = consistent(score, grid, inside)[0, 0, 0]
    # x = 2, 3, 4 land at plane 0 on source pixels 2, 3, 4, which the block (x = 5, 6, 7 at plane 3)
    # covers with better scores; every other pixel agrees with its source pixel.
    assert ok.tolist() == [True, True, False, False, False, True, True, True]


def _scores(best: list[int], planes: int) -> torch.Tensor:
    score = torch.full((1, planes, 1, len(best)), -1.0)
    score[0, torch.tensor(best), 0, torch.arange(len(best))] = 0.0
    return score


def test_border_pixels_take_their_neighbours_depth_only_where_they_cannot_test_it() -> None:
    w, D = 8, 4
    grid, inside = _rectified(w, D)  # x < 3 cannot test every plane: the border strip
    # A near surface (plane 3) everywhere; the strip, which cannot see plane 3, matched plane 0
    # weakly (the source pixels it lands on match the surface better).
    score = _scores([0, 0, 0, 3, 3, 3, 3, 3], D)
    score[0, 0, 0, :3] = -0.5
    t = score.argmax(dim=1, keepdim=True).float() / (D - 1)
    settled, kept = settle(t, score, grid, inside)
    assert settled.flatten().tolist() == [1.0] * w
    assert kept.flatten().tolist() == [False] * 3 + [True] * 5
    # Far pixels at x = 0, 1 beside a surface at plane 1: x = 1 could test plane 1 and did not
    # choose it, so it keeps its own; x = 0 cannot, so it takes its neighbours'.
    score = _scores([0, 0, 1, 1, 1, 1, 1, 1], D)
    t = score.argmax(dim=1, keepdim=True).float() / (D - 1)
    settled, kept = settle(t, score, grid, inside)
    assert (settled.flatten() * (D - 1)).round().tolist() == [1.0, 0.0] + [1.0] * 6
    assert kept.flatten().tolist() == [False] + [True] * 7


def test_background_fill_takes_the_farther_neighbour_along_the_epipolar_direction() -> None:
    value = torch.tensor([[5.0, 1.0, 9.0, 9.0, 3.0, 7.0, 8.0]]).view(1, 1, 1, 7)
    ok = torch.tensor([False, True, False, False, True, False, False]).view(1, 1, 1, 7)
    rows = fill_background(value, ok, torch.tensor([True]))
    assert rows.flatten().tolist() == [1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0]
    # Along columns each pixel is its own column here: no ok neighbour, the values stay.
    cols = fill_background(value, ok, torch.tensor([False]))
    assert torch.equal(cols, value)
    grid, inside = _rectified(7, 3)
    assert epipolar_rows(grid.view(1, 3, 7, 2), inside).tolist() == [True]


def test_scanline_fill_and_occlusion_mask_of_a_step_in_disparity() -> None:
    disp = np.full((2, 20), 2.0, np.float32)
    disp[:, 10:15] = 8.0  # a near block, at columns 2..6 of the right view
    occ = occluded(disp)
    expected = np.zeros(20, bool)
    expected[:2] = True  # left border strip (x < d)
    expected[4:9] = True  # background that lands on columns 2..6 (x - 2), behind the block
    assert occ[0].tolist() == expected.tolist()
    holes = disp.copy()
    holes[:, 5:10] = np.nan
    holes[1] = np.nan
    filled = fill_scanline(holes)
    assert np.allclose(filled[0], disp[0])  # background on both sides -> 2
    assert np.isnan(filled[1]).all()
