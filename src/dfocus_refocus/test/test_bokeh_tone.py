"""Bokeh occlusion handling, disc highlights and tone adjustments (pure, no rclpy)."""

import numpy as np
import pytest

from dfocus_refocus.bokeh import BokehError, BokehParams, _octave, blur_levels, render_bokeh
from dfocus_refocus.srgb import luminance, to_linear, to_srgb8
from dfocus_refocus.tone import ToneError, ToneParams, apply_tone

RED = np.array([0.8, 0.05, 0.05], np.float32)
BLUE = np.array([0.05, 0.05, 0.8], np.float32)


def _two_layer(fg_coc: float, bg_coc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A blue foreground square in front of a red background, with the signed CoC of each."""
    h, w = 120, 160
    img = np.empty((h, w, 3), np.float32)
    img[:] = RED
    fg = np.zeros((h, w), bool)
    fg[30:90, 40:100] = True
    img[fg] = BLUE
    coc = np.where(fg, -fg_coc, bg_coc).astype(np.float32)
    return img, coc, fg


@pytest.mark.parametrize("params", [BokehParams(), BokehParams(max_kernel_px=None)])
def test_background_blur_never_bleeds_over_sharp_foreground(params):
    img, coc, fg = _two_layer(fg_coc=0.0, bg_coc=24.0)
    out = render_bokeh(img, coc, params)
    # Every foreground pixel, including the ones on its edge, keeps its colour exactly.
    np.testing.assert_allclose(out[fg], img[fg], atol=1e-5)
    # The blurred background next to the edge stays red: no foreground colour dragged into it.
    ring = out[25:29, 40:100]
    assert ring[..., 2].max() < 0.1


@pytest.mark.parametrize("params", [BokehParams(), BokehParams(max_kernel_px=None)])
def test_blurred_foreground_spills_over_sharp_background(params):
    img, coc, fg = _two_layer(fg_coc=16.0, bg_coc=0.0)
    out = render_bokeh(img, coc, params)
    # Outside the square, within the blur radius, the foreground's blue spills over the background...
    assert out[27, 70, 2] > 0.2  # 3 px above the square's top edge
    assert out[27, 70, 2] > out[24, 70, 2] > out[20, 70, 2]  # fading with distance
    # ...but not beyond the radius of the wider of the two blur layers a 16 px CoC is interpolated
    # between; a layer rendered downsampled (the fast default) spreads by its upsampling kernel more.
    wider = next(d for d in blur_levels(16.0, params) if d >= 16.0)
    reach = wider / 2 + 1
    if params.max_kernel_px is not None:
        reach += 2 ** _octave(wider, params)
    top = 30 - int(np.ceil(reach))
    np.testing.assert_allclose(out[:top], img[:top], atol=1e-4)
    # Deep inside the square the foreground is unchanged (a uniform colour stays uniform).
    np.testing.assert_allclose(out[50:70, 60:80], img[50:70, 60:80], atol=1e-4)


def test_highlight_becomes_a_disc():
    img = np.full((101, 101, 3), 0.01, np.float32)
    img[50, 50] = 50.0  # a specular highlight far brighter than white (linear light)
    params = BokehParams(max_kernel_px=None)
    d = 21.0
    out = render_bokeh(img, np.full((101, 101), d, np.float32), params)
    profile = out[50, :, 0]
    narrower = max(v for v in blur_levels(d, params) if v <= d)
    inside = profile[50 - int(narrower / 2) + 1 : 50 + int(narrower / 2)]
    assert inside.min() > 0.8 * inside.max()  # flat top: a disc, not a Gaussian
    # Hard rim: nothing beyond the wider of the two layers that 21 px is interpolated between.
    wider = min(v for v in blur_levels(d, params) if v >= d)
    rim = int(np.ceil(wider / 2)) + 1
    assert profile[50 + rim] < 0.011 and profile[50 - rim] < 0.011
    assert out[..., 0].sum() == pytest.approx(img[..., 0].sum(), rel=1e-3)  # energy kept


def test_bokeh_rejects_bad_inputs():
    with pytest.raises(BokehError):
        render_bokeh(np.zeros((10, 10, 3), np.float32), np.zeros((10, 11), np.float32))
    with pytest.raises(BokehError, match="NaN"):
        render_bokeh(np.zeros((10, 10, 3), np.float32), np.full((10, 10), np.nan, np.float32))


def test_downsampled_layers_close_to_full_resolution_reference():
    rng = np.random.default_rng(3)
    img = rng.random((96, 128, 3)).astype(np.float32)
    coc = np.tile(np.linspace(-30, 30, 128, dtype=np.float32), (96, 1))
    fast = render_bokeh(img, coc)
    ref = render_bokeh(img, coc, BokehParams(max_kernel_px=None))
    assert np.abs(fast - ref).mean() < 0.02


def test_neutral_tone_is_identity():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 5, (40, 50)).astype(np.float32)
    assert np.array_equal(to_srgb8(apply_tone(to_linear(img), ToneParams(), depth)), img)


def test_tone_adjustments_do_what_they_say():
    rng = np.random.default_rng(2)
    lin = rng.uniform(0.05, 0.4, (30, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(apply_tone(lin, ToneParams(exposure_ev=1.0)), 2 * lin, rtol=1e-5)
    grey = apply_tone(lin, ToneParams(saturation=0.0))
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-6)
    np.testing.assert_allclose(luminance(grey), luminance(lin), rtol=1e-5)
    warm = apply_tone(lin, ToneParams(temperature=0.8))
    assert (warm[..., 0] / warm[..., 2]).mean() > 1.5 * (lin[..., 0] / lin[..., 2]).mean()
    flat = apply_tone(lin, ToneParams(contrast=0.5))
    assert luminance(flat).std() < luminance(lin).std()
    depth = np.where(np.arange(30)[:, None] < 15, 0.5, 4.0) * np.ones((30, 30))
    lit = apply_tone(lin, ToneParams(relight=0.5), depth.astype(np.float32))
    ratio = lit / lin
    assert ratio[:15].mean() == pytest.approx(1.5, rel=1e-3) and ratio[15:].mean() < 1.0
    with pytest.raises(ToneError, match="exposure_ev"):
        apply_tone(lin, ToneParams(exposure_ev=9.0))
