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

from dfocus_refocus.registration import WORKERS, Registration, frame_workers, in_order
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
    resample_px: float = 1.0  # blur that resampling (warping) adds to every frame but the reference
    flat_radius_px: int = 6  # no structure above noise within this radius: blur is irrelevant, average
    equalize: bool = True  # match each frame's smooth gain (exposure, vignetting) to the reference
    consistency: float = 0.06  # relative low-pass difference to the reference at which a frame's weight falls
    max_excess: float = 3.0  # in units of share_px: the blur weight never falls below exp(-4.5)
    consistency_sigma_px: float = 4.0  # low-pass scale of that comparison (above most blur differences)


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
    """Max over each full step x step block (partial blocks at the right and bottom dropped)."""
    h, w = a.shape
    hh, ww = h // step, w // step
    if hh == 0 or ww == 0:
        return np.asarray(a.max(keepdims=True).reshape(1, 1), dtype=np.float32)
    # A dilation anchored at the block's corner, sampled once per block: several times faster than
    # numpy's reduction over a reshaped view, and the same values.
    d = cv2.dilate(a, np.ones((step, step), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(d[: hh * step : step, : ww * step : step], dtype=np.float32)


# Sum of squared taps of the 3x3 Laplacian below: its response to unit white noise has this variance.
_LAPLACIAN_NOISE_GAIN = 20.0


def noise_sigma(image_rgb8: np.ndarray) -> float:
    """Robust sensor-noise estimate in grey levels (Immerkaer's operator, median of its response so
    that texture does not inflate it)."""
    gray = cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(gray, -1, k)[1:-1, 1:-1]
    return float(np.median(np.abs(r)) / (0.6745 * 6.0))


def local_sharpness(image_rgb8: np.ndarray, sigma: float) -> np.ndarray:
    gray = cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=1)
    energy = np.square(lap, dtype=np.float32)
    return np.asarray(cv2.GaussianBlur(energy, (0, 0), sigma), dtype=np.float32)


def fusion_weights(
    reg: Registration, params: FusionParams | None = None, progress: Callable[[float], None] | None = None,
    workers: int = WORKERS,
) -> np.ndarray:
    """Normalized per-frame weights, N x H x W float32 (sum 1 per pixel); `workers` frames are
    measured at once (`registration.frame_workers`)."""
    params = params or FusionParams()
    n = len(reg.frames)
    if n == 0:
        raise FusionError("no registered frame to fuse")
    h, w = reg.shape
    for k, f in enumerate(reg.frames):
        if f.image.shape[:2] != (h, w) or f.valid.shape != (h, w):
            raise FusionError(f"registered frame {k} is {f.image.shape[:2]}, reference is {(h, w)}")
    blur = np.empty((n, h, w), np.float32)
    sharp = np.empty((n, h, w), np.float32)

    def measure(k: int) -> None:  # each call fills its own slices
        f = reg.frames[k]
        eff = expected_blur(reg, k)
        if f.warped:
            eff = np.sqrt(eff * eff + np.float32(params.resample_px**2))
        blur[k] = np.where(f.valid, eff, np.inf)
        sharp[k] = np.where(f.valid, local_sharpness(f.image, params.sharpness_sigma), 0.0)

    for k, _ in enumerate(in_order(measure, range(n), frame_workers(workers, h * w))):
        if progress is not None:
            progress(0.8 * (k + 1) / n)
    best = blur.min(axis=0)
    sharpest = sharp.max(axis=0)
    floor = np.float32(_LAPLACIAN_NOISE_GAIN * max(noise_sigma(reg.reference_frame.image), 0.5) ** 2)
    structure = _structure(sharpest, floor, params.flat_radius_px)
    ref_low = _low(reg.reference_frame.image, params) if params.consistency > 0 else None
    weights = np.empty_like(blur)

    def weigh(k: int) -> None:
        """Frame k's weight from its blur and sharpness: per frame rather than on whole stacks,
        so that the peak holds three stacks instead of eight (the same values either way)."""
        excess = (blur[k] - best) / np.float32(params.share_px)
        # Where nothing but noise lies within reach, blur changes nothing: let frames that cannot
        # spill from farther away share the pixel, which averages the noise down.
        excess *= np.where(blur[k] <= 2 * params.flat_radius_px, structure, 1.0)
        # Capped: a frame never becomes negligible for its blur alone, so a frame that disagrees
        # with the reference (consistency below) cannot outweigh it just by being predicted sharper.
        np.minimum(excess, np.float32(params.max_excess), out=excess)
        wk = np.exp(-0.5 * excess * excess)
        if params.sharpness_gamma > 0:
            # Relative measured sharpness; the noise floor keeps flat areas from ranking by noise.
            rel = (sharp[k] + floor) / (sharpest + floor)
            wk *= rel ** np.float32(params.sharpness_gamma)
        if ref_low is not None:
            wk *= _consistency(reg.frames[k].image, ref_low, params)
        weights[k] = np.where(np.isfinite(blur[k]), wk, 0.0)

    for _ in in_order(weigh, range(n), frame_workers(workers, h * w)):
        pass
    total = weights.sum(axis=0)
    ref_k = reg.frames.index(reg.reference_frame)
    weights[ref_k] += np.where(total <= 1e-12, 1.0, 0.0).astype(np.float32)
    weights /= np.maximum(weights.sum(axis=0), 1e-12)[None]
    if progress is not None:
        progress(0.9)
    return weights


def _low(image: np.ndarray, params: FusionParams) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.asarray(cv2.GaussianBlur(gray, (0, 0), params.consistency_sigma_px), dtype=np.float32)


def _consistency(image: np.ndarray, ref_low: np.ndarray, params: FusionParams) -> np.ndarray:
    """Factor that fades a frame where its low-passed luminance disagrees with the reference's
    (`ref_low`): view-dependent light (reflections, highlights) and residual misregistration are
    taken from the reference view rather than blended in as ghosts."""
    rel = (_low(image, params) - ref_low) / (ref_low + 8.0) / np.float32(params.consistency)
    return np.asarray(np.exp(-0.5 * rel * rel), dtype=np.float32)


def _structure(energy: np.ndarray, floor: np.float32, radius: int) -> np.ndarray:
    """0 where the neighbourhood holds only noise (Laplacian energy near the noise floor), 1 where it
    clearly holds structure."""
    near = cv2.dilate(energy, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    return np.asarray(np.clip((near - 2.0 * floor) / (4.0 * floor), 0.0, 1.0), dtype=np.float32)


def photometric_gain(frame_linear: np.ndarray, ref_linear: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Smooth per-channel gain of a registered frame relative to the reference (exposure,
    vignetting, lens colour), from heavily low-passed images over the pixels both see."""
    h, w = valid.shape
    scale = min(1.0, 64.0 / max(h, w))
    size = (max(4, round(w * scale)), max(4, round(h * scale)))
    m = cv2.merge([valid.astype(np.float32)] * 3)  # cv2.multiply: 3x faster than numpy's broadcast
    small = [cv2.resize(cv2.multiply(a, m), size, interpolation=cv2.INTER_AREA) for a in (frame_linear, ref_linear)]
    sigma = 0.08 * max(size)
    num, den = (cv2.GaussianBlur(a, (0, 0), sigma) for a in small)
    gain = np.clip(num / np.maximum(den, 1e-6), 0.5, 2.0)
    gain = np.where(den > 1e-4, gain, 1.0).astype(np.float32)
    return np.asarray(cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)


def fuse_all_in_focus(
    reg: Registration, params: FusionParams | None = None, progress: Callable[[float], None] | None = None,
    workers: int = WORKERS,
) -> np.ndarray:
    """The all-in-focus image in the reference view, float32 linear RGB HxWx3 (the same whatever
    `workers`)."""
    params = params or FusionParams()
    weights = fusion_weights(reg, params, progress, workers)
    out = np.zeros((*reg.shape, 3), np.float32)
    ref_linear = to_linear(reg.reference_frame.image)

    def contribution(k: int) -> np.ndarray | None:
        f, wk = reg.frames[k], weights[k]
        if wk.max() <= 0:
            return None
        linear = to_linear(f.image)
        if params.equalize and f.warped:
            linear /= photometric_gain(linear, ref_linear, f.valid)
        return np.asarray(cv2.multiply(linear, cv2.merge([wk] * 3), dst=linear))

    # Summed in frame order, whatever the threads' order: the same image on every run.
    for part in in_order(contribution, range(len(reg.frames)), frame_workers(workers, out.shape[0] * out.shape[1])):
        if part is not None:
            out += part
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
