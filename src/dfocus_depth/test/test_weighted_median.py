"""The edge-aware weighted median: exact against a direct per-pixel computation, a depth edge
placed beside the image edge moves onto it, an isolated mismatch goes, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from dfocus_depth.weighted_median import CONFIDENCE_FLOOR, SIGMA, WeightedMedianError, weighted_median


def _direct(value: np.ndarray, guide: np.ndarray, radius: int, step: int,
            confidence: np.ndarray | None = None) -> np.ndarray:
    pad = radius * step
    vp = np.pad(value, pad, mode="edge")
    cp = np.pad(np.ones_like(value) if confidence is None else confidence + CONFIDENCE_FLOOR, pad, mode="edge")
    gp = np.pad(guide, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(value)
    for y in range(value.shape[0]):
        for x in range(value.shape[1]):
            samples, weights = [], []
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    yy, xx = y + pad + dy * step, x + pad + dx * step
                    samples.append(vp[yy, xx])
                    weights.append(np.exp(-np.abs(gp[yy, xx] - guide[y, x]).sum() / (3 * SIGMA)) * cp[yy, xx])
            order = np.argsort(samples, kind="stable")
            running = np.cumsum(np.asarray(weights)[order])
            out[y, x] = np.asarray(samples)[order][int((running < running[-1] / 2).sum())]
    return out


def test_it_is_the_exact_weighted_median() -> None:
    rng = np.random.default_rng(0)
    value = rng.random((18, 22)).astype(np.float32)
    guide = rng.random((18, 22, 3)).astype(np.float32)
    confidence = rng.random((18, 22)).astype(np.float32)
    np.testing.assert_array_equal(weighted_median(value, guide, radius=2, step=3), _direct(value, guide, 2, 3))
    np.testing.assert_array_equal(weighted_median(value, guide, radius=1, step=1), _direct(value, guide, 1, 1))
    np.testing.assert_allclose(weighted_median(value, guide, confidence),
                               _direct(value, guide, 2, 3, confidence), rtol=1e-6)


def test_a_depth_edge_moves_onto_the_image_edge_and_a_mismatch_goes() -> None:
    guide = np.full((40, 60, 3), 0.2, np.float32)
    guide[:, 30:] = (0.8, 0.6, 0.3)  # a bright object from column 30 on
    truth = np.where(np.arange(60) >= 30, 2.0, 0.5).astype(np.float32)[None, :].repeat(40, axis=0)
    estimate = truth.copy()
    estimate[:, 27:30] = 2.0  # the near object's depth spills 3 px over the background
    estimate[10, 10] = 1.7  # a lone mismatch on the background
    estimate[25, 45] = 0.6  # and one on the object
    np.testing.assert_array_equal(weighted_median(estimate, guide), truth)


def test_confident_samples_outvote_guesses() -> None:
    guide = np.full((30, 30, 3), 0.5, np.float32)  # one flat surface: colour cannot decide
    value = np.full((30, 30), 1.0, np.float32)
    value[:, ::2] = 3.0  # at even columns 15 of the 25 samples are guessed wrong ...
    confidence = np.where(value == 3.0, 0.0, 1.0).astype(np.float32)  # ... with no confidence
    assert np.all(weighted_median(value, guide)[:, 6:-6:2] == 3.0)  # (away from the padded border)
    np.testing.assert_array_equal(weighted_median(value, guide, confidence), np.ones((30, 30), np.float32))


def test_bad_input_is_refused() -> None:
    guide = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(WeightedMedianError, match="does not match"):
        weighted_median(np.zeros((8, 9), np.float32), guide)
    with pytest.raises(WeightedMedianError, match="finite and >= 0"):
        weighted_median(np.full((8, 8), np.nan, np.float32), guide)
    with pytest.raises(WeightedMedianError, match="finite and >= 0"):
        weighted_median(np.full((8, 8), -1.0, np.float32), guide)
    with pytest.raises(WeightedMedianError, match="samples"):
        weighted_median(np.zeros((8, 8), np.float32), guide, radius=8)
    with pytest.raises(WeightedMedianError, match="confidence"):
        weighted_median(np.zeros((8, 8), np.float32), guide, np.zeros((8, 7), np.float32))
