"""Occlusion-aware thin-lens bokeh on an all-in-focus image, layered by depth.

The signed circle of confusion (negative in front of the sharp range, positive behind) is sliced
into layers at geometrically spaced blur diameters; each pixel belongs to its two nearest layers
with linear weights (no banding). Every layer is premultiplied by its coverage, blurred with a
disc (so highlights in linear light become discs) and composited with the "over" operator:
background layers far to near, then the sharp layer, then the foreground layers over everything.
So a defocused foreground spills over whatever is behind it, while background blur never crosses a
sharp foreground (it is composited underneath). Dividing by the accumulated coverage removes the
dark fringes of holes that occluders leave in a layer.

Speed: a layer of blur d is rendered at scale min(1, max_kernel_px / d), so every disc is at most
`max_kernel_px` wide where it is computed; the far-to-near (and camera-to-focus) compositing order
visits coarse layers first, so accumulators are only upsampled, never downsampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Coarsest blur grid: 1/8 resolution (finer grids always nest in it, discs there are cheap anyway).
MAX_OCTAVE = 3
# The refocus node's default widest full-resolution disc (parameter max_kernel_px): finer than
# BokehParams' default, which the speed benchmarks and the CLI use.
NODE_MAX_KERNEL_PX = 7.0


class BokehError(ValueError):
    """Inputs the renderer cannot use (shape mismatch, non-finite blur)."""


@dataclass(frozen=True)
class BokehParams:
    layer_ratio: float = 1.5  # blur diameter ratio of consecutive layers
    near_band_px: float = 2.0  # |CoC| up to this is gathered in place (occlusion errors < 1 px)
    max_kernel_px: float | None = 4.0  # None: every layer at full resolution (reference quality)

    @property
    def first_layer_px(self) -> float:
        return self.near_band_px * self.layer_ratio


@lru_cache(maxsize=256)
def disc_kernel(diameter: float) -> np.ndarray:
    """A normalized disc of `diameter` pixels with an anti-aliased rim."""
    r = max(diameter, 1e-3) / 2.0
    half = max(0, math.ceil(r - 0.5))
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    k = np.clip(r + 0.5 - np.hypot(x, y), 0.0, 1.0)
    k /= k.sum()
    return np.asarray(k, dtype=np.float32)


def blur_levels(max_abs_coc: float, params: BokehParams) -> list[float]:
    """Signed layer diameters, ascending: nearest-to-camera (most negative) .. farthest; 0 stands
    for the near band (|CoC| <= near_band_px)."""
    levels = [params.first_layer_px]
    while levels[-1] < max_abs_coc:
        levels.append(levels[-1] * params.layer_ratio)
    return [-v for v in reversed(levels)] + [0.0] + levels


def layer_position(coc: np.ndarray, levels: list[float], params: BokehParams) -> np.ndarray:
    """Fractional layer index per pixel; the whole near band maps to the zero layer's index."""
    zero = levels.index(0.0)
    band = params.near_band_px
    xp = levels[:zero] + [-band, band] + levels[zero + 1 :]
    fp = list(range(zero)) + [zero, zero] + list(range(zero + 1, len(levels)))
    return np.interp(coc, xp, np.asarray(fp, np.float32)).astype(np.float32)


def _octave(diameter: float, params: BokehParams) -> int:
    """Power-of-two downsampling exponent at which a disc of `diameter` is rendered (at most 1/8:
    coarser grids would not nest in common image sizes, and the discs there are cheap anyway)."""
    if params.max_kernel_px is None or diameter <= params.max_kernel_px:
        return 0
    return min(MAX_OCTAVE, math.ceil(math.log2(diameter / params.max_kernel_px)))


# Images are planar here (channels first: R, G, B, coverage): multiplying by a coverage map is then a
# broadcast over the leading axis, about twice as fast as over a short last axis.


def _per_plane(
    planes: np.ndarray, op: Callable[[np.ndarray, np.ndarray], object], shape: tuple[int, int]
) -> np.ndarray:
    out = np.empty((planes.shape[0], *shape), np.float32)
    for src, dst in zip(planes, out, strict=True):
        op(src, dst)
    return out


def _resize(planes: np.ndarray, h: int, w: int, interpolation: int) -> np.ndarray:
    return _per_plane(planes, lambda s, d: cv2.resize(s, (w, h), dst=d, interpolation=interpolation), (h, w))


def _filter(planes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return _per_plane(
        planes, lambda s, d: cv2.filter2D(s, -1, kernel, dst=d, borderType=cv2.BORDER_REFLECT), planes.shape[1:]
    )


def _layer_premultiplied(planes: np.ndarray, pos: np.ndarray, j: int) -> np.ndarray:
    """Layer j of an opaque planar RGBA image, premultiplied (coverage = hat function of the
    fractional layer index)."""
    a = np.abs(pos - np.float32(j))
    np.subtract(1.0, a, out=a)
    np.maximum(a, 0.0, out=a)
    return np.multiply(planes, a[None], dtype=np.float32)


def _near_band_planes(image: np.ndarray, coc: np.ndarray, band: float) -> np.ndarray:
    """Opaque planar RGBA of the in-focus layer: each pixel blended between sharp and a disc of
    `band` px by its own |CoC| (gathering at this size crosses an occlusion edge by under a pixel)."""
    h, w = coc.shape
    planes = np.empty((4, h, w), np.float32)
    planes[:3] = image.transpose(2, 0, 1)
    planes[3] = 1.0
    t = np.minimum(np.abs(coc), np.float32(band)) * np.float32(1.0 / band)
    if t.max() > 0:
        soft = _filter(planes[:3], disc_kernel(band))
        soft -= planes[:3]
        soft *= t[None]
        planes[:3] += soft
    return planes


def _span(lo: np.ndarray, hi: np.ndarray, j: int) -> tuple[int, int] | None:
    """Index range of rows (or columns) whose fractional layer index touches layer j."""
    idx = np.flatnonzero((lo < j + 1) & (hi > j - 1))
    return None if idx.size == 0 else (int(idx[0]), int(idx[-1]) + 1)


class _Accumulator:
    """A premultiplied planar RGBA image, kept at the coarsest octave visited so far (only ever refined)."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.octave = -1
        self.data: np.ndarray = np.zeros((4, 0, 0), np.float32)

    def at(self, octave: int) -> np.ndarray:
        if self.octave < 0:
            self.data = np.zeros((4, self.h >> octave, self.w >> octave), np.float32)
        while self.octave > octave:
            self.octave -= 1
            self.data = _resize(self.data, self.h >> self.octave, self.w >> self.octave, cv2.INTER_LINEAR)
        self.octave = octave
        return self.data


def render_bokeh(linear: np.ndarray, coc_signed: np.ndarray, params: BokehParams | None = None) -> np.ndarray:
    """Refocused float32 linear RGB (HxWx3) from an all-in-focus linear image and a signed CoC map (px)."""
    params = params or BokehParams()
    if linear.ndim != 3 or linear.shape[2] != 3 or coc_signed.shape != linear.shape[:2]:
        raise BokehError(f"image {linear.shape} and blur map {coc_signed.shape} do not match")
    coc = np.asarray(coc_signed, dtype=np.float32)
    if not np.isfinite(coc).all():
        raise BokehError("the blur map contains NaN or infinity")
    image = np.asarray(linear, dtype=np.float32)
    max_abs = float(np.abs(coc).max()) if coc.size else 0.0
    planes = _near_band_planes(image, coc, params.near_band_px)
    if max_abs <= params.near_band_px:
        return np.ascontiguousarray(planes[:3].transpose(1, 2, 0))
    levels = blur_levels(max_abs, params)
    zero = levels.index(0.0)
    # Pad to a multiple of the coarsest octave so that every octave's pixel grid nests exactly.
    h, w = coc.shape
    unit = 1 << _octave(abs(levels[0]), params)
    ph, pw = -h % unit, -w % unit
    pos = layer_position(coc, levels, params)
    if ph or pw:
        planes = np.pad(planes, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        pos = np.asarray(cv2.copyMakeBorder(pos, 0, ph, 0, pw, cv2.BORDER_REFLECT))
    H, W = pos.shape
    row_lo, row_hi, col_lo, col_hi = pos.min(axis=1), pos.max(axis=1), pos.min(axis=0), pos.max(axis=0)
    # Layers blurred by 4x the widest full-resolution disc or more are cut from a half-resolution copy:
    # a 2x2 block straddling a depth edge then mixes colours under a blur at least 8x its size.
    half: list[tuple[np.ndarray, np.ndarray]] = []

    def source(k: int) -> tuple[np.ndarray, np.ndarray, int]:
        if k < 2:
            return planes, pos, 0
        if not half:
            half.append((_resize(planes, H // 2, W // 2, cv2.INTER_AREA),
                         np.asarray(cv2.resize(pos, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST), np.float32)))
        return half[0][0], half[0][1], 1

    def composite(order: list[int], over: bool) -> np.ndarray | None:
        acc = _Accumulator(H, W)
        for j in order:
            rows, cols = _span(row_lo, row_hi, j), _span(col_lo, col_hi, j)
            if rows is None or cols is None:
                continue
            d = abs(levels[j])
            k = _octave(d, params)
            f = 1 << k
            m = math.ceil(d / (2 * f)) + 1  # blur reach in octave pixels
            y0, y1 = max(0, rows[0] // f - m), min(H // f, -(-rows[1] // f) + m)
            x0, x1 = max(0, cols[0] // f - m), min(W // f, -(-cols[1] // f) + m)
            src_planes, src_pos, s = source(k)
            g = f >> s  # octave pixel size in source pixels
            layer = _layer_premultiplied(
                src_planes[:, y0 * g : y1 * g, x0 * g : x1 * g], src_pos[y0 * g : y1 * g, x0 * g : x1 * g], j
            )
            if g > 1:
                layer = _resize(layer, y1 - y0, x1 - x0, cv2.INTER_AREA)
            blurred = _filter(layer, disc_kernel(d / f))
            roi = acc.at(k)[:, y0:y1, x0:x1]
            if over:  # the new (nearer) layer goes over the accumulated farther ones
                roi *= (1.0 - blurred[3])[None]
                roi += blurred
            else:  # the new (farther) layer goes under the accumulated nearer ones
                roi += (1.0 - roi[3])[None] * blurred
        return None if acc.octave < 0 else acc.at(0)

    back = composite(list(range(len(levels) - 1, zero, -1)), over=True)
    front = composite(list(range(zero)), over=False)
    result = _layer_premultiplied(planes, pos, zero)
    if back is not None:
        back *= (1.0 - result[3])[None]
        result += back
    if front is not None:
        result *= (1.0 - front[3])[None]
        result += front
    out = result[:3, :h, :w] / np.maximum(result[3, :h, :w], 1e-6)[None]
    return np.ascontiguousarray(out.transpose(1, 2, 0))
