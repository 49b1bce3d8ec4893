"""The photometric refinement on a five-view line rig rendered with exact sub-pixel disparities: an
estimate off by a few tenths of a pixel comes back to the truth (also with gain, offset and
vignetting differences between the views, and when one view sees something else); texture-free
areas keep their estimate; the move is bounded; bad inputs raise its own error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfocus_depth.eval_suite import pinhole_camera
from dfocus_depth.multiview_refine import MAX_MOVE_PX, RefineError, multiview_refine

W, H, F, STEP = 192, 96, 100.0, 0.01  # one view step: F * STEP = 1 px per m^-1 of inverse depth
OFFSETS = (-2, -1, 1, 2)
MARGIN = 32  # texture beyond both sides, so every view sees a full frame of it
REF = pinhole_camera("ref", W, H, F, 0.0, 1.0, 8.0)
CAMS = [pinhole_camera(f"v{o:+d}", W, H, F, o * STEP, 1.0, 8.0) for o in OFFSETS]
RANGE = (0.0, 20.0)


def _texture(seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((H, W + 2 * MARGIN, 3)).astype(np.float32), (0, 0), 1.5)


def _views(step_disparity: np.ndarray, texture: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The reference and the views at OFFSETS of a scene whose disparity per view step is given per
    pixel (constant along rows): a view o steps to the right sees the reference's pixel x at x - o d."""
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    views = [cv2.remap(texture, xs + MARGIN + o * step_disparity, ys, cv2.INTER_CUBIC) for o in OFFSETS]
    return texture[:, MARGIN:MARGIN + W].copy(), views


def _slanted() -> np.ndarray:
    """Disparity per view step 2.0 at the top to 4.0 at the bottom: sub-pixel almost everywhere."""
    return np.repeat(np.linspace(2.0, 4.0, H, dtype=np.float32)[:, None], W, axis=1)


def _inner(err: np.ndarray) -> np.ndarray:
    return err[12:-12, 20:-20]  # away from the borders the windows clip


def test_an_estimate_a_few_tenths_off_comes_back_to_the_truth() -> None:
    truth = _slanted()  # inverse depth = disparity per step (1 px per m^-1)
    ref, views = _views(truth, _texture())
    # A smooth error field, as the network's upsampled estimate has: up to 0.3 px per view step either way.
    start = truth + np.float32(0.3) * np.cos(np.arange(W, dtype=np.float32) / 25.0)[None, :]
    refined = multiview_refine(start, ref, REF, list(zip(views, CAMS, strict=True)), RANGE)
    before, after = _inner(np.abs(start - truth)), _inner(np.abs(refined - truth))
    assert np.median(before) > 0.15
    assert np.median(after) < 0.03 and np.percentile(after, 90) < 0.08, (np.median(after), np.percentile(after, 90))


def test_gain_offset_vignetting_and_an_occluded_view_do_not_bias_it() -> None:
    truth = _slanted()
    ref, views = _views(truth, _texture(seed=8))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    vignette = 1.0 - 0.4 * ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / (W / 2) ** 2
    views[0] = views[0] * 1.6 + 0.1
    views[1] = views[1] * 0.6 * vignette[:, :, None]
    views[3] = _texture(seed=99)[:, :W]  # this view sees something else entirely: it must abstain
    start = truth - np.float32(0.2)
    refined = multiview_refine(start, ref, REF, list(zip(views, CAMS, strict=True)), RANGE)
    after = _inner(np.abs(refined - truth))
    assert np.median(after) < 0.05, np.median(after)


def test_texture_free_areas_keep_their_estimate_and_the_move_is_bounded() -> None:
    truth = _slanted()
    flat = np.full((H, W + 2 * MARGIN, 3), 0.5, np.float32)
    ref, views = _views(truth, flat)
    start = truth + np.float32(0.4)
    refined = multiview_refine(start, ref, REF, list(zip(views, CAMS, strict=True)), RANGE)
    np.testing.assert_allclose(refined, start, atol=1e-3)
    # Far off (6 px at the widest view): it may move, but never beyond MAX_MOVE_PX of that view.
    ref, views = _views(truth, _texture())
    start = truth + np.float32(3.0)
    refined = multiview_refine(start, ref, REF, list(zip(views, CAMS, strict=True)), RANGE)
    widest = max(abs(o) for o in OFFSETS)  # pixels of disparity per m^-1 at the widest view
    assert np.abs(refined - start).max() * widest <= MAX_MOVE_PX + 1e-4


def test_bad_inputs_raise_its_error() -> None:
    truth = _slanted()
    ref, views = _views(truth, _texture())
    sources = list(zip(views, CAMS, strict=True))
    with pytest.raises(RefineError, match="must agree"):
        multiview_refine(truth[:, :-1], ref, REF, sources, RANGE)
    with pytest.raises(RefineError, match="no source"):
        multiview_refine(truth, ref, REF, [], RANGE)
    bad = truth.copy()
    bad[3, 3] = np.nan
    with pytest.raises(RefineError, match="finite"):
        multiview_refine(bad, ref, REF, sources, RANGE)
    with pytest.raises(RefineError, match="does not match its camera"):
        multiview_refine(truth, ref, REF, [(views[0][:, :-2], CAMS[0])], RANGE)
    with pytest.raises(RefineError, match="baseline"):
        multiview_refine(truth, ref, REF, [(ref, REF)], RANGE)
