"""Census refinement of a stereo pair's depth at full resolution, in a narrow band around the
network's estimate.

Why: on real pairs the network matches less precisely than on the simulator it was trained on
(Middlebury Motorcycle: 6.5 % of the pixels both cameras see are > 1 px off, against 3.0 % for
StereoSGBM), and a working resolution below the image's loses precision again when upsampled.
Census costs over a 5x5 window (robust to gain and exposure differences) aggregated over 9x9
pixels, searched only a couple of working pixels either side of the network's estimate, recover
that precision without the gross mismatches a full search would bring back. A quadratic prior on
the move picks the step, so the estimate stays where the costs are flat (no texture) or
ambiguous; the sub-step comes from the costs alone (with the prior in it too, the result leaned
back towards the estimate by 12-14 % of the move on a test pattern).

Measured (`dfocus eval-depth`, bench/depth_eval.md): Motorcycle checked at working width 741 1.42
-> 1.36 px, at 384 1.87 -> 1.66 px. On the simulator's stereo pairs, where the network is already
sub-pixel (median error 0.1 px), it costs 3.56 -> 3.58 px, and on its 5-view bursts a refinement
against one view was worse (1.35 -> 1.45 px): the estimator runs it for two-camera bursts by
default. About 0.15 s at 741x500 and 4.0 s at 2964x2000 on this CPU. The band follows the estimate,
so the estimate's own pixel-to-pixel jitter stays; the upsampled network map is smooth.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfocus_capture.calibration import CameraModel
from dfocus_depth.geometry import projection_coefficients

# A 5x5 census (24 bits). On Motorcycle 7x7 (48 bits) scored 1.35 against 1.36 px at three times
# the cost; 7x7 sampled every other row and column (16 bits) 1.37 px.
TAPS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx)
WINDOW_RADIUS = 4  # 9x9 box over the per-pixel Hamming distances
SPAN_WORKING_PX = 2.0  # searched either side of the network's estimate, in working pixels
STEP_WORKING_PX = 0.5  # a parabola through the best step and its neighbours gives the sub-step
# Added cost (mean Hamming bits) per squared working pixel of move when picking the step. With the
# 7x7 census, on Motorcycle (741 px) 0 scored 1.36 px, 1-2 1.35, 4 1.36, 8 1.37; on the simulator's
# checked pairs a stronger prior moves less and costs less (0: 3.60, 2: 3.59, 8: 3.57 px).
PRIOR_BITS = 2.0


class CensusRefineError(ValueError):
    """Inputs the refinement cannot take (sizes that differ, non-finite depth, a zero baseline)."""


def census(gray: np.ndarray, taps: tuple[tuple[int, int], ...] = TAPS) -> np.ndarray:
    """[h,w] float -> [h,w] unsigned codes: bit i set where the neighbour at offset taps[i]
    (dy, dx) is darker than the centre."""
    if len(taps) > 64:
        raise CensusRefineError(f"{len(taps)} census taps do not fit in 64 bits")
    dtype = next(np.dtype(t) for t in (np.uint16, np.uint32, np.uint64) if len(taps) <= 8 * np.dtype(t).itemsize)
    r = max(max(abs(dy), abs(dx)) for dy, dx in taps)
    h, w = gray.shape
    padded = np.pad(gray, r, mode="edge")
    code = np.zeros((h, w), dtype)
    for bit, (dy, dx) in enumerate(taps):
        darker = padded[r + dy:r + dy + h, r + dx:r + dx + w] < gray
        code |= np.left_shift(darker.astype(dtype), dtype.type(bit))
    return code


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2GRAY))


def census_refine(inv: np.ndarray, reference: np.ndarray, ref_camera: CameraModel, partner: np.ndarray,
                  partner_camera: CameraModel, working_scale: float = 1.0) -> np.ndarray:
    """Inverse depth [h,w] of the reference camera, refined against the partner view.

    reference, partner: [h,w,3] RGB 0..1, undistorted, at the cameras' resolution. working_scale:
    image pixels per working pixel of the network (the search band and prior scale with it).
    Pixels whose estimate projects outside the partner's frame, and those whose best cost lies at
    the band's edge (the network was further off than the band: no minimum to trust), keep theirs.
    """
    h, w = inv.shape
    if reference.shape != (h, w, 3) or partner.shape[2:] != (3,) or not np.all(np.isfinite(inv)):
        raise CensusRefineError(f"inverse depth {inv.shape} must be finite and match the reference "
                                f"{reference.shape}; the partner {partner.shape} must be RGB")
    A, b = projection_coefficients(ref_camera, partner_camera)
    px_per_inv = float(np.hypot(b[0], b[1]))  # disparity per unit inverse depth (a rectified pair: f B)
    if px_per_inv < 1e-9:
        raise CensusRefineError("the partner camera has no baseline to the reference")
    step = STEP_WORKING_PX * working_scale
    offsets = np.arange(-SPAN_WORKING_PX, SPAN_WORKING_PX + 1e-6, STEP_WORKING_PX) * working_scale
    prior = PRIOR_BITS / working_scale**2
    # x_partner ~ A x + b inv: the inverse-depth-free part once, in float32 (0.001 px at 10k px).
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    base = [np.float32(A[r, 0]) * x + np.float32(A[r, 1]) * y + np.float32(A[r, 2]) for r in range(3)]
    del x, y
    bf = b.astype(np.float32)

    def partner_pixels(inv_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = base[2] + bf[2] * inv_at
        z = np.where(z > 1e-6, z, np.nan)  # behind the partner: no pixel
        return (base[0] + bf[0] * inv_at) / z, (base[1] + bf[1] * inv_at) / z

    ref_code = census(_gray(reference))
    partner_gray = _gray(partner)
    costs = np.empty((len(offsets), h, w), np.float32)
    best = np.zeros((h, w), np.intp)  # the step with the least cost + prior so far
    least = np.full((h, w), np.inf, np.float32)
    for i, off in enumerate(offsets):
        u, v = partner_pixels(inv + np.float32(off / px_per_inv))
        warped = cv2.remap(partner_gray, np.nan_to_num(u, nan=-1.0), np.nan_to_num(v, nan=-1.0),
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        bits = np.bitwise_count(ref_code ^ census(warped)).astype(np.float32)
        costs[i] = cv2.blur(bits, (2 * WINDOW_RADIUS + 1,) * 2, borderType=cv2.BORDER_REFLECT)
        with_prior = costs[i] + np.float32(prior * off * off)
        better = with_prior < least
        best[better], least[better] = i, with_prior[better]
    k = np.clip(best, 1, len(offsets) - 2)[None]
    before, at, after = (np.take_along_axis(costs, k + d, 0)[0] for d in (-1, 0, 1))
    del costs
    curvature = before - 2 * at + after
    sub = np.where(curvature > 1e-6, 0.5 * (before - after) / np.maximum(curvature, 1e-6), 0.0)
    move = offsets[k[0]] + np.clip(sub, -0.5, 0.5) * step
    u, v = partner_pixels(inv)
    ph, pw = partner.shape[:2]
    with np.errstate(invalid="ignore"):
        seen = (u >= 0) & (u <= pw - 1) & (v >= 0) & (v <= ph - 1)  # False where NaN
    inside = (best > 0) & (best < len(offsets) - 1) & seen
    return np.maximum(np.where(inside, inv + move / px_per_inv, inv), 0.0).astype(np.float32)
