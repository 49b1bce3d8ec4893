"""Procedural textures with natural-image statistics (the depth network's training draws them):
a 1/f amplitude spectrum, scale-invariant dead leaves, both periodic; and the thin objects a
training scene may hold."""

from __future__ import annotations

import numpy as np
import pytest

from dfocus_capture.sim.scene import random_scene
from dfocus_capture.sim.textures import NATURAL_KINDS, dead_leaves, make_texture, pink_noise


def _radial_amplitude(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spec = np.abs(np.fft.fft2(img - img.mean()))
    fy, fx = np.meshgrid(np.fft.fftfreq(img.shape[0]), np.fft.fftfreq(img.shape[1]), indexing="ij")
    f = np.hypot(fx, fy)
    bands = np.geomspace(0.01, 0.3, 12)
    amp = [spec[(f >= a) & (f < b)].mean() for a, b in zip(bands[:-1], bands[1:], strict=True)]
    return np.sqrt(bands[:-1] * bands[1:]), np.asarray(amp)


@pytest.mark.parametrize("exponent", [0.8, 1.2])
def test_pink_noise_has_the_asked_spectral_slope(exponent: float) -> None:
    img = pink_noise(np.random.default_rng(0), 256, exponent)
    f, amp = _radial_amplitude(img)
    slope = np.polyfit(np.log(f), np.log(amp), 1)[0]
    assert abs(slope + exponent) < 0.25, slope


def test_dead_leaves_cover_the_tile_with_flat_discs_at_every_scale() -> None:
    img = dead_leaves(np.random.default_rng(1), 256)
    assert img.min() >= 0 and img.max() <= 1
    # Piecewise constant: most neighbours are equal, yet there are many distinct leaves.
    assert np.mean(np.diff(img, axis=1) == 0) > 0.8
    assert len(np.unique(img)) > 200
    # Near scale invariance: the spectrum falls off like a power law too.
    f, amp = _radial_amplitude(img)
    assert np.polyfit(np.log(f), np.log(amp), 1)[0] < -0.8


@pytest.mark.parametrize("kind", NATURAL_KINDS)
def test_natural_kinds_tile_seamlessly(kind: str) -> None:
    tile = make_texture(kind, np.random.default_rng(2), 128).astype(float)
    inner = np.abs(np.diff(tile, axis=1)).mean()
    seam = np.abs(tile[:, 0] - tile[:, -1]).mean()
    assert seam < 2.5 * inner


def test_thin_objects_are_added_only_when_asked() -> None:
    plain = random_scene(3)
    thin = random_scene(3, thin_objects=2)
    assert not [s for s in plain.surfaces if s.name.startswith("thin")]
    poles = [s for s in thin.surfaces if s.name.startswith("thin")]
    assert len(poles) == 2
    for pole in poles:
        half_u, half_v = np.abs(pole.polygon).max(axis=0)
        assert half_v < 0.05 * half_u  # long and narrow
