"""All-in-focus fusion of a registered stack.

Each registered frame's blur at a reference pixel is known from physics: the thin-lens circle of
confusion of that frame's focus at the pixel's depth, widened where a nearer, more defocused surface
of that frame spills its blur over the pixel (the halo cue that a per-pixel focus measure misses at
depth edges). That expected blur is combined with the measured sharpness (local Laplacian energy,
which corrects depth errors on textured surfaces): frames within `share_px` of the sharpest expected
blur share the pixel (averaging equally sharp sources reduces noise instead of picking the noisiest),
the rest fade out smoothly. Weights follow the depth map, so transitions are edge-aligned; blending
happens in linear light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dfocus_refocus.registration import Registration
from dfocus_refocus.srgb import to_linear, to_srgb8

# Blur radii (px) at which the spill of defocused foreground over the background is tracked.
SPILL_RADII = (1, 2, 4, 8, 16, 32)


class FusionError(RuntimeError):
    """The stack cannot be fused (empty, mismatched shapes)."""


@dataclass(frozen=True)
class FusionParams:
    share_px: float = 1.0  # frames within this many px of CoC of the sharpest one share a pixel
    sharpness_gamma: float = 0.5  # exponent of the measured relative sharpness (0 = depth cue only)
    sharpness_sigma: float = 2.0  # px, window of the local Laplacian energy
    depth_tolerance: float = 0.03  # relative: nearer by more than this counts as a foreground spill


def expected_blur(reg: Registration, index: int) -> np.ndarray:
    """Blur diameter (reference px) of registered frame `index` at each reference pixel, including
    the spill of nearer defocused surfaces of that frame."""
    frame = reg.frames[index]
    cam = frame.camera
    z = reg.depth
    coc = cam.coc_px(z).astype(np.float32) * np.float32(reg.reference.fx / cam.fx)
    inv = (1.0 / np.maximum(z, 1e-3)).astype(np.float32)
    eff = coc.copy()
    h, w = z.shape
    for r in SPILL_RADII:
        spreading = coc >= 2 * r
        if not spreading.any():
            break
        # Nearest (max 1/z) spreading surface within radius r, computed at a resolution where the
        # disc is a few pixels wide (a max filter is cheap there and exact enough for a weight).
        step = max(1, r // 2)
        src = np.where(spreading, inv, 0).astype(np.float32)
        small = _block_max(src, step) if step > 1 else src
        k = 2 * max(1, round(r / step)) + 1
        near = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        near = cv2.resize(near, (w, h), interpolation=cv2.INTER_NEAREST) if step > 1 else near
        spilled = near > inv * (1 + FusionParams.depth_tolerance)
        eff = np.where(spilled, np.maximum(eff, 2.0 * r), eff)
    return np.asarray(eff, dtype=np.float32)


def _block_max(a: np.ndarray, step: int) -> np.ndarray:
    h, w = a.shape
    hh, ww = h // step, w // step
    if hh == 0 or ww == 0:
        return np.asarray(a.max(keepdims=True).reshape(1, 1), dtype=np.float32)
    return np.asarray(a[: hh * step, : ww * step].reshape(hh, step, ww, step).max(axis=(1, 3)), dtype=np.float32)


def local_sharpness(image_rgb8: np.ndarray, sigma: float) -> np.ndarray:
    gray = cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    energy = np.square(lap, dtype=np.float32)
    return np.asarray(cv2.GaussianBlur(energy, (0, 0), sigma), dtype=np.float32)


def fusion_weights(
    reg: Registration, params: FusionParams | None = None, progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """Normalized per-frame weights, N x H x W float32 (sum 1 per pixel)."""
    params = params or FusionParams()
    n = len(reg.frames)
    if n == 0:
        raise FusionError("no registered frame to fuse")
    h, w = reg.shape
    blur = np.empty((n, h, w), np.float32)
    sharp = np.empty((n, h, w), np.float32)
    for k, f in enumerate(reg.frames):
        if f.image.shape[:2] != (h, w) or f.valid.shape != (h, w):
            raise FusionError(f"registered frame {k} is {f.image.shape[:2]}, reference is {(h, w)}")
        blur[k] = np.where(f.valid, expected_blur(reg, k), np.inf)
        sharp[k] = np.where(f.valid, local_sharpness(f.image, params.sharpness_sigma), 0.0)
        if progress is not None:
            progress(0.8 * (k + 1) / n)
    best = blur.min(axis=0)
    excess = (blur - best[None]) / np.float32(params.share_px)
    weights = np.exp(-0.5 * excess * excess)
    if params.sharpness_gamma > 0:
        # Relative measured sharpness; the floor keeps flat, noisy areas from ranking by noise.
        rel = (sharp + 4.0) / (sharp.max(axis=0)[None] + 4.0)
        weights *= rel ** np.float32(params.sharpness_gamma)
    weights = np.where(np.isfinite(blur), weights, 0.0).astype(np.float32)
    total = weights.sum(axis=0)
    ref_k = next(i for i, f in enumerate(reg.frames) if f.valid.all())
    weights[ref_k] += np.where(total <= 1e-12, 1.0, 0.0).astype(np.float32)
    weights /= np.maximum(weights.sum(axis=0), 1e-12)[None]
    if progress is not None:
        progress(0.9)
    return weights


def fuse_all_in_focus(
    reg: Registration, params: FusionParams | None = None, progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """The all-in-focus image in the reference view, float32 linear RGB HxWx3."""
    weights = fusion_weights(reg, params, progress)
    out = np.zeros((*reg.shape, 3), np.float32)
    for k, f in enumerate(reg.frames):
        wk = weights[k]
        if wk.max() <= 0:
            continue
        out += to_linear(f.image) * wk[:, :, None]
    if progress is not None:
        progress(1.0)
    return out


def max_laplacian_pick(reg: Registration) -> np.ndarray:
    """The naive baseline: per pixel, the registered frame with the largest |Laplacian| (uint8)."""
    stack = np.stack([f.image for f in reg.frames])
    score = np.stack(
        [
            np.where(f.valid, np.abs(cv2.Laplacian(cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY), cv2.CV_32F)), -1.0)
            for f in reg.frames
        ]
    )
    pick = score.argmax(axis=0)
    return np.asarray(np.take_along_axis(stack, pick[None, :, :, None], axis=0)[0], dtype=np.uint8)


def all_in_focus_srgb(reg: Registration, params: FusionParams | None = None) -> np.ndarray:
    return to_srgb8(fuse_all_in_focus(reg, params))
