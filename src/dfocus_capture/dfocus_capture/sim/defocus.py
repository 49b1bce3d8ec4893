"""Occlusion-aware thin-lens defocus by depth layers.

The pinhole image is cut into layers of similar signed circle of confusion (negative in front of
the focal plane, positive behind). Back to front, each layer's premultiplied colour and coverage
are blurred with a disc of that layer's CoC and composited "over" what lies behind, so a blurred
foreground spills over the background while a sharp foreground edge stays sharp over a blurred
background. The result is normalised by the accumulated coverage (the background hidden behind
an object is unknown to a single pinhole view; normalising avoids dark halos at depth edges).
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

SHARP_COC_PX = 0.5  # |CoC| below this is rendered unblurred (smaller than a pixel)
LAYER_RATIO = 1.5  # consecutive layer boundaries grow by this factor in |CoC|
BLUR_AT_LOW_RES_PX = 5.0  # large discs are blurred on an image downscaled to about this diameter


class DefocusError(ValueError):
    """Image and CoC map do not match."""


@lru_cache(maxsize=256)
def disc_kernel(diameter_px: float) -> np.ndarray:
    """Normalised uniform disc of the given diameter, pixel coverage from 8x8 supersampling."""
    r = max(diameter_px, 0.0) / 2.0
    n = max(0, math.ceil(r - 0.5))
    size = 2 * n + 1
    sub = (np.arange(size * 8, dtype=np.float64) + 0.5) / 8.0 - (n + 0.5)
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= r * r
    k = inside.reshape(size, 8, size, 8).mean(axis=(1, 3))
    if k.sum() == 0:  # diameter below a pixel: all light stays in the centre pixel
        k[n, n] = 1.0
    k = (k / k.sum()).astype(np.float32)
    k.setflags(write=False)
    return k


def layer_index(coc_signed: np.ndarray, ratio: float = LAYER_RATIO) -> np.ndarray:
    """Layer number per pixel: 0 for |CoC| < SHARP_COC_PX, +-k for |CoC| in
    [SHARP * ratio^(k-1), SHARP * ratio^k), sign of the CoC (front < 0 < behind)."""
    mag = np.abs(coc_signed)
    with np.errstate(divide="ignore"):
        k = np.floor(np.log(np.maximum(mag, 1e-12) / SHARP_COC_PX) / math.log(ratio)).astype(np.int32) + 1
    k[mag < SHARP_COC_PX] = 0
    return np.asarray(np.where(coc_signed < 0, -k, k), np.int32)


def blur_disc(img: np.ndarray, diameter_px: float) -> np.ndarray:
    """Convolve a 2-D float32 plane with a disc. Large discs are applied to a downscaled copy with
    the disc shrunk so that the total blur (area down + disc + linear up) keeps the disc's
    variance; a defocused image has no detail above that scale to lose."""
    if diameter_px < 2 * SHARP_COC_PX:
        return img
    f = max(1, int(round(diameter_px / BLUR_AT_LOW_RES_PX)))
    if f == 1:
        return np.asarray(cv2.filter2D(img, -1, disc_kernel(round(diameter_px, 2)), borderType=cv2.BORDER_REFLECT))
    h, w = img.shape[:2]
    small_size = (max(1, math.ceil(w / f)), max(1, math.ceil(h / f)))
    small = cv2.resize(img, small_size, interpolation=cv2.INTER_AREA)
    # Variance of a disc of diameter d per axis: d^2 / 16; box f: f^2 / 12; linear upsampling: f^2 / 6.
    d_eff = math.sqrt(max(diameter_px**2 - 4.0 * f * f, 1.0)) / f
    small = cv2.filter2D(small, -1, disc_kernel(round(d_eff, 2)), borderType=cv2.BORDER_REFLECT)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def _layer_boxes(lay: np.ndarray, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_layers x H) and (n_layers x W) presence of each layer in each row / column, in two
    passes over the image instead of two per layer."""
    h, w = lay.shape
    rows = np.bincount((lay * h + np.arange(h, dtype=np.int32)[:, None]).ravel(), minlength=n_layers * h)
    cols = np.bincount((lay * w + np.arange(w, dtype=np.int32)[None, :]).ravel(), minlength=n_layers * w)
    return rows.reshape(n_layers, h) > 0, cols.reshape(n_layers, w) > 0


def thin_lens_defocus(planes: np.ndarray, coc_signed: np.ndarray, ratio: float = LAYER_RATIO) -> np.ndarray:
    """Defocus a linear-light pinhole image given as planes (C x H x W float32, planar so that
    every operation runs over whole rows) and each pixel's signed CoC diameter in pixels
    (negative = nearer than the focal plane). Returns C x H x W float32."""
    if planes.ndim != 3 or planes.shape[1:] != coc_signed.shape:
        raise DefocusError(f"image planes {planes.shape} and CoC map {coc_signed.shape} do not match")
    c, h, w = planes.shape
    idx = layer_index(coc_signed, ratio)
    lo = int(idx.min())
    lay = idx - lo
    flat = lay.ravel()
    counts = np.bincount(flat)
    sums = np.bincount(flat, weights=np.abs(coc_signed).ravel())
    row_has, col_has = _layer_boxes(lay, len(counts))
    acc = np.zeros((c + 1, h, w), np.float32)  # premultiplied colour planes + coverage
    for k in range(len(counts) - 1, -1, -1):  # far (large positive) to near (large negative)
        if counts[k] == 0:
            continue
        coc = float(sums[k] / counts[k])
        rows, cols = np.flatnonzero(row_has[k]), np.flatnonzero(col_has[k])
        pad = int(math.ceil(coc / 2)) + 2 * max(1, int(round(coc / BLUR_AT_LOW_RES_PX))) + 2
        y0, y1 = max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)
        x0, x1 = max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)
        alpha = (lay[y0:y1, x0:x1] == k).astype(np.float32)
        blurred_alpha = blur_disc(alpha, coc)
        transmit = 1.0 - blurred_alpha
        for ch in range(c):
            dst = acc[ch, y0:y1, x0:x1]
            cv2.multiply(dst, transmit, dst=dst)
            cv2.add(dst, blur_disc(cv2.multiply(planes[ch, y0:y1, x0:x1], alpha), coc), dst=dst)
        cov = acc[c, y0:y1, x0:x1]
        cv2.multiply(cov, transmit, dst=cov)
        cv2.add(cov, blurred_alpha, dst=cov)
    coverage = np.maximum(acc[c], np.float32(1e-6))
    for ch in range(c):
        cv2.divide(acc[ch], coverage, dst=acc[ch])
    return acc[:c]
