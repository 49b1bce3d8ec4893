"""Photometric refinement of a depth map against all the burst's views, at the images' resolution.

Why: the network settles which surface a pixel sees, but its inverse depth is only as fine as its
working resolution and its soft arg-max allow (a tenth to a third of a pixel). Where the camera
baselines are small (light-field-like rigs, or far layers of the array) that is a large share of the
disparity, and depth errors of several per cent follow. Gauss-Newton steps on the photometric error
of every source view, warped to the reference through its plane-sweep homography, recover that
precision without a new search: each step solves, per pixel, the least-squares inverse-depth update
of a window (inverse depth taken as constant over it) that follows the reference image's edges.

- Exposure, gain and vignetting differ between views: images are compared after a local
  normalisation (zero mean, unit contrast over a Gaussian window), as normalised cross-correlation
  does.
- Occlusion: a view whose windowed error at the estimate is well above the best view's abstains at
  that pixel (in an array some view usually sees what the reference sees).
- Safety: a step is kept only where it lowers the pixel's windowed error; the total move is bounded
  to a couple of pixels of the widest view's disparity, so the refinement never undoes the
  network's choice of surface. Textureless pixels (no gradient along the epipolar lines) keep their
  estimate: their normal equation has no curvature and the damping wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dfocus_capture.calibration import CameraModel
from dfocus_depth.geometry import projection_coefficients

# Chosen on the development split (`dfocus eval-depth --split dev`; 4 scenes per rig, the network at
# working width 768). Share of pixels > 5 % off in depth on the 5-camera array / BadPix0.07 on the
# light-field-style rig: no refinement 28.5 % / 28.7 %; window sigma 1.5 px, 4 iterations 32.3 / 25.4;
# sigma 3.5 27.6 / 12.7; sigma 5 with 2 iterations 23.4 / 12.0 (sigma 7: 22.3 / 12.7; 1 iteration
# 22.7 / 12.7; 3: 23.9 / 11.7); a 1 px pre-blur 27.6 -> 26.1 / 12.7 -> 11.9 at sigma 3.5; box
# windows 24.0-25.5 / 12.1-14.8; a guided filter of radius 8 (eps 1e-3 / 1e-2) 22.5 / 12.1-12.2.
PRE_BLUR_PX = 1.0  # evens out noise and part of the blur difference between views focused apart
NORMALISE_SIGMA_PX = 4.0  # the local-normalisation window
WINDOW_RADIUS_PX = 8  # the window a step is solved over: 17 x 17 pixels, edge-aware (_GuidedWindow)
GUIDE_EPS = 1e-2  # guided filter: windows whose grey-level variance (0..1) is below this average like a box
ITERATIONS = 2
MAX_STEP_PX = 0.5  # largest move per iteration, in pixels of the widest view's disparity
MAX_MOVE_PX = 2.0  # largest total move
ABSTAIN_RATIO = 3.0  # a view whose windowed error is above this times the best view's abstains
# Damping, in squared normalised intensity per squared pixel: where the window's gradients along the
# epipolar lines are weaker than this the step shrinks towards zero (flat, textureless windows).
DAMPING = 1e-3


class RefineError(ValueError):
    """Inputs the refinement cannot take (sizes that differ, non-finite depth, no baseline)."""


@dataclass(frozen=True)
class _Source:
    normalised: np.ndarray  # [h,w] locally normalised grey
    grad_x: np.ndarray
    grad_y: np.ndarray
    base: tuple[np.ndarray, np.ndarray, np.ndarray]  # the inverse-depth-free part of x ~ A x_ref + b inv
    b: np.ndarray  # float32 (3,)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2GRAY))


def local_normalise(grey: np.ndarray) -> np.ndarray:
    """Zero local mean and unit local contrast (the contrast floor keeps noise in flat regions small)."""
    grey = cv2.GaussianBlur(grey, (0, 0), PRE_BLUR_PX)
    mean = cv2.GaussianBlur(grey, (0, 0), NORMALISE_SIGMA_PX)
    centred = np.asarray(grey - mean, np.float32)
    var = cv2.GaussianBlur(centred * centred, (0, 0), NORMALISE_SIGMA_PX)
    return np.asarray(centred / np.sqrt(var + 1e-4), np.float32)


def _affine(row: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(np.float32(row[0]) * x + np.float32(row[1]) * y + np.float32(row[2]), np.float32)


class _GuidedWindow:
    """Window sums that follow the reference image's edges (a guided filter on its grey levels):
    a window straddling a depth edge mostly averages the side its centre is on, where a Gaussian
    window would mix the two surfaces' disparities."""

    def __init__(self, reference_grey: np.ndarray) -> None:
        self.guide = reference_grey
        self.mean = self._box(reference_grey)
        self.var = self._box(reference_grey * reference_grey) - self.mean * self.mean

    @staticmethod
    def _box(x: np.ndarray) -> np.ndarray:
        size = 2 * WINDOW_RADIUS_PX + 1
        return np.asarray(cv2.boxFilter(x, -1, (size, size), borderType=cv2.BORDER_REFLECT))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean_x = self._box(x)
        a = (self._box(self.guide * x) - self.mean * mean_x) / (self.var + np.float32(GUIDE_EPS))
        b = mean_x - a * self.mean
        return np.asarray(self._box(a) * self.guide + self._box(b), np.float32)


class _Warp:
    """The sources seen from the reference at a given inverse-depth map."""

    def __init__(self, sources: list[_Source], ref: np.ndarray) -> None:
        self.sources, self.ref = sources, ref

    def residuals(self, inv: np.ndarray, with_jacobian: bool) -> list[tuple[np.ndarray, np.ndarray | None,
                                                                            np.ndarray]]:
        """Per source: residual, d residual / d inverse depth (or None), and the in-frame mask."""
        out = []
        for s in self.sources:
            z = s.base[2] + s.b[2] * inv
            z = np.where(z > 1e-6, z, np.nan).astype(np.float32)
            u = (s.base[0] + s.b[0] * inv) / z
            v = (s.base[1] + s.b[1] * inv) / z
            h, w = s.normalised.shape
            with np.errstate(invalid="ignore"):
                inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
            mu, mv = np.nan_to_num(u, nan=-1.0), np.nan_to_num(v, nan=-1.0)
            warped = cv2.remap(s.normalised, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            jac = None
            if with_jacobian:
                gx = cv2.remap(s.grad_x, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                gy = cv2.remap(s.grad_y, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                # x = (base0 + b0 inv) / z  =>  dx/dinv = (b0 - x b2) / z
                jac = np.nan_to_num(gx * (s.b[0] - u * s.b[2]) / z + gy * (s.b[1] - v * s.b[2]) / z)
            out.append((warped - self.ref, jac, inside))
        return out


def _view_weights(costs: list[np.ndarray], inside: list[np.ndarray]) -> list[np.ndarray]:
    """1 for the views that see the pixel about as well as the best one, else 0."""
    masked = [np.where(m, c, np.inf) for c, m in zip(costs, inside, strict=True)]
    best = np.minimum.reduce(masked)
    return [(c <= ABSTAIN_RATIO * best + 1e-3).astype(np.float32) for c in masked]


def _cost(residuals: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]],
          weights: list[np.ndarray], window: _GuidedWindow) -> np.ndarray:
    """Windowed mean squared residual over the views that take part (sums first: one window each)."""
    total = np.zeros_like(weights[0])
    count = np.zeros_like(weights[0])
    for (r, _, inside), wt in zip(residuals, weights, strict=True):
        w = wt * inside
        total += w * r * r
        count += w
    count = window(count)
    return np.where(count > 1e-3, window(total) / np.maximum(count, 1e-3), np.inf).astype(np.float32)


def multiview_refine(inv: np.ndarray, reference: np.ndarray, ref_camera: CameraModel,
                     sources: list[tuple[np.ndarray, CameraModel]], inv_range: tuple[float, float]) -> np.ndarray:
    """Inverse depth [h,w] of the reference camera, refined against the source views.

    reference: [h,w,3] RGB 0..1, undistorted, at ref_camera's resolution; sources: (image, camera)
    pairs likewise (any resolution; the camera must match its image). inv_range: the swept
    (inv_min, inv_max) the result is clipped to.
    """
    h, w = inv.shape
    if reference.shape[:2] != (h, w) or (ref_camera.width, ref_camera.height) != (w, h):
        raise RefineError(f"inverse depth {inv.shape}, reference {reference.shape[:2]} and camera "
                          f"{ref_camera.width}x{ref_camera.height} must agree")
    if not sources:
        raise RefineError("no source view to refine against")
    if not np.all(np.isfinite(inv)):
        raise RefineError("the inverse depth to refine must be finite")
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    prepared, reach = [], 0.0
    for image, cam in sources:
        if image.shape[:2] != (cam.height, cam.width):
            raise RefineError(f"source image {image.shape[:2]} does not match its camera {cam.width}x{cam.height}")
        A, b = projection_coefficients(ref_camera, cam)
        reach = max(reach, float(np.hypot(b[0], b[1])))
        n = local_normalise(_grey(image))
        prepared.append(_Source(
            normalised=n,
            grad_x=np.asarray(cv2.Sobel(n, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)),
            grad_y=np.asarray(cv2.Sobel(n, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)),
            base=(_affine(A[0], x, y), _affine(A[1], x, y), _affine(A[2], x, y)),
            b=b.astype(np.float32),
        ))
    if reach < 1e-9:
        raise RefineError("no source view has a baseline to the reference")
    del x, y
    grey = _grey(reference)
    warp = _Warp(prepared, local_normalise(grey))
    window = _GuidedWindow(grey)
    px = np.float32(1.0 / reach)  # inverse depth per pixel of the widest view's disparity
    start = inv.astype(np.float32)
    current = start.copy()
    res = warp.residuals(current, with_jacobian=True)
    weights = _view_weights([window(r * r) for r, _, _ in res], [m for _, _, m in res])
    cost = _cost(res, weights, window)
    for i in range(ITERATIONS):
        hess = np.zeros_like(current)
        grad = np.zeros_like(current)
        for (r, jac, inside), wt in zip(res, weights, strict=True):
            assert jac is not None
            mj = wt * inside * jac
            hess += mj * jac
            grad += mj * r
        # The guided window is not a positive filter: a curvature it pushes below zero is none.
        step = -window(grad) / (np.maximum(window(hess), 0.0) + np.float32(DAMPING / px**2))
        step = np.clip(step, -MAX_STEP_PX * px, MAX_STEP_PX * px)
        trial = np.clip(current + step, start - MAX_MOVE_PX * px, start + MAX_MOVE_PX * px)
        trial = np.clip(trial, inv_range[0], inv_range[1]).astype(np.float32)
        trial_res = warp.residuals(trial, with_jacobian=i + 1 < ITERATIONS)
        trial_cost = _cost(trial_res, weights, window)
        better = trial_cost < cost
        current = np.where(better, trial, current)
        cost = np.where(better, trial_cost, cost)
        if i + 1 < ITERATIONS:
            res = [(np.where(better, tr, r), np.where(better, tj, j), np.where(better, tm, m))  # type: ignore[arg-type]
                   for (r, j, m), (tr, tj, tm) in zip(res, trial_res, strict=True)]
    return current
