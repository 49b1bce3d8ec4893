"""The depth range that must stay sharp: from a focus distance and limits, from the thin-lens depth
of field, or from a painted mask (robust percentiles of the depths under it), or both.

Blur outside the range grows with the distance to the range in dioptres (1/m), which is exactly how
the thin-lens circle of confusion grows with the distance to the focal plane; with near = far =
focus it is the plain thin-lens CoC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dfocus_capture.calibration import CameraModel

# Percentiles of the depths under a painted mask: a few stray pixels painted over the background
# (or depth outliers) must not stretch the sharp range.
MASK_PERCENTILES = (5.0, 95.0)


class FocalPlaneError(ValueError):
    """The requested focal plane is impossible (the message goes into the aborted action)."""


@dataclass(frozen=True)
class SharpRange:
    """What the renderer keeps sharp. `hard` ranges force zero blur between near and far; a range
    derived from the depth of field is soft (blur follows the thin-lens CoC of `focus_m`, which
    stays below the acceptable CoC between near and far by construction)."""

    focus_m: float
    near_m: float
    far_m: float
    hard: bool = True

    @property
    def blur_near_m(self) -> float:
        return self.near_m if self.hard else self.focus_m

    @property
    def blur_far_m(self) -> float:
        return self.far_m if self.hard else self.focus_m


def _finite_positive(value: float, what: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise FocalPlaneError(f"{what} must be a finite number, got {value}")
    if v < 0:
        raise FocalPlaneError(f"{what} must not be negative, got {v:g} m")
    return v


def depth_of_field(
    camera: CameraModel, focus_m: float, f_number: float, coc_limit_px: float
) -> tuple[float, float]:
    """Thin-lens near and far limits of acceptable sharpness (far may be inf past the hyperfocal)."""
    f = camera.focal_length_mm * 1e-3
    c = coc_limit_px * camera.pixel_size_um * 1e-6
    if focus_m <= f:
        raise FocalPlaneError(f"focus distance {focus_m:g} m must exceed the focal length {f * 1e3:g} mm")
    hyper = f * f / (f_number * c) + f
    near = focus_m * (hyper - f) / (hyper + focus_m - 2 * f)
    far = focus_m * (hyper - f) / (hyper - focus_m) if focus_m < hyper else math.inf
    return near, far


def mask_depth_range(mask: np.ndarray, depth: np.ndarray) -> tuple[float, float]:
    """Robust (percentile) depth range under the non-zero pixels of `mask`, ignoring NaN depths."""
    if mask.shape[:2] != depth.shape[:2]:
        raise FocalPlaneError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but the depth map is {depth.shape[1]}x{depth.shape[0]}"
        )
    sel = mask != 0
    if sel.ndim == 3:
        sel = sel.any(axis=2)
    if not sel.any():
        raise FocalPlaneError("the painted mask is empty")
    z = depth[sel]
    z = z[np.isfinite(z) & (z > 0)]
    if z.size == 0:
        raise FocalPlaneError("no valid depth under the painted mask")
    lo, hi = np.percentile(z, MASK_PERCENTILES)
    return float(lo), float(hi)


def resolve_focal_plane(
    camera: CameraModel,
    *,
    focus_m: float,
    near_m: float = 0.0,
    far_m: float = 0.0,
    f_number: float | None = None,
    mask: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    coc_limit_px: float = 1.0,
) -> SharpRange:
    """Validate a requested plane (FocalPlane message semantics) and turn it into a SharpRange.

    - near = far = 0: the thin-lens depth of field around focus_m at `f_number` (acceptable CoC
      `coc_limit_px` pixels of `camera`).
    - a mask (non-empty): the range covers the depths under it; with focus_m = 0 the focus is the
      dioptric middle of that range; explicit near/far widen it.
    """
    focus = _finite_positive(focus_m, "focus_distance_m")
    near = _finite_positive(near_m, "near_m")
    far = _finite_positive(far_m, "far_m")
    n_stop = camera.f_number if not f_number else float(f_number)
    if not (math.isfinite(n_stop) and n_stop > 0):
        raise FocalPlaneError(f"f-number must be positive, got {f_number}")
    if (near == 0) != (far == 0):
        raise FocalPlaneError(f"near_m and far_m must both be set or both be 0, got {near:g} and {far:g}")
    if near > far:
        raise FocalPlaneError(f"near_m {near:g} m is beyond far_m {far:g} m")
    f_m = camera.focal_length_mm * 1e-3
    has_mask = mask is not None and mask.size > 0
    if has_mask:
        if depth is None:
            raise FocalPlaneError("a painted mask needs a depth map")
        assert mask is not None
        lo, hi = mask_depth_range(mask, depth)
        if focus == 0:
            focus = 2.0 / (1.0 / lo + 1.0 / hi)
        lo, hi = min(lo, focus), max(hi, focus)
        if near > 0:
            lo, hi = min(lo, near), max(hi, far)
        if focus <= f_m:
            raise FocalPlaneError(f"focus distance {focus:g} m must exceed the focal length {f_m * 1e3:g} mm")
        return SharpRange(focus, lo, hi, hard=True)
    if focus == 0:
        raise FocalPlaneError("focus_distance_m must be positive (or paint a mask)")
    if focus <= f_m:
        raise FocalPlaneError(f"focus distance {focus:g} m must exceed the focal length {f_m * 1e3:g} mm")
    if near == 0:
        lo, hi = depth_of_field(camera, focus, n_stop, coc_limit_px)
        return SharpRange(focus, lo, hi, hard=False)
    if not near <= focus <= far:
        raise FocalPlaneError(f"focus {focus:g} m must lie within near {near:g} m .. far {far:g} m")
    return SharpRange(focus, near, far, hard=True)


def signed_coc_px(
    depth: np.ndarray, sharp: SharpRange, camera: CameraModel, f_number: float, strength: float = 1.0
) -> np.ndarray:
    """Signed blur diameter in pixels of `camera` per depth pixel: negative in front of the sharp
    range, positive behind it, 0 inside. Thin lens: c = A f s / (s - f) * |1/s - 1/z|, measured
    here from the nearer edge of the range (A = f / N)."""
    f = camera.focal_length_mm * 1e-3
    s = sharp.focus_m
    gain = (f / f_number) * f * s / (s - f) / (camera.pixel_size_um * 1e-6) * strength
    inv = 1.0 / np.maximum(depth.astype(np.float32, copy=False), np.float32(1e-3))
    inv_near = np.float32(1.0 / sharp.blur_near_m)
    inv_far = np.float32(0.0 if math.isinf(sharp.blur_far_m) else 1.0 / sharp.blur_far_m)
    front = np.maximum(inv - inv_near, 0.0)
    back = np.maximum(inv_far - inv, 0.0)
    return np.asarray((back - front) * np.float32(gain), dtype=np.float32)
