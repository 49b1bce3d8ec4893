"""The depth evaluation's test-split scenes: a scene generator and thin-lens renderer of their own,
textured with photographs training never sees.

Training renders `dfocus_capture.sim` scenes (ray-cast textured polygons, mip-mapped procedural
and training-photograph tiles, a depth-layered defocus). A network that learned that look would be
flattered by more of it, so the test split is made differently on every count:

- scenes are stacks of planar layers (fronto-parallel or slanted) with an alpha shape each (convex
  slabs, ellipses, thin bars), textured with the reserved photographs of `TEST_PHOTOGRAPHS`;
  optionally a textureless patch and a reflective panel that mirrors a second photograph from a
  virtual plane behind it (so its texture moves between views unlike its surface);
- every camera sees every layer through the plane's homography (OpenCV `warpPerspective`), blurred
  by its own thin-lens circle of confusion (a disc, per pixel from the plane's depth in that
  camera), and composited back to front with premultiplied alpha;
- a sensor of its own: per-camera exposure, vignetting, Poisson-Gaussian noise, sRGB, 8 bits.

Ground truth is exact: the reference view's depth is the nearest layer whose alpha is >= 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from dfocus_capture.burst import Burst, BurstFrame
from dfocus_capture.calibration import ArrayCalibration, CameraModel

# scikit-image's bundled photographs that training never uses (`dataset.PHOTOGRAPHS` lists those it may).
TEST_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "immunohistochemistry", "retina", "hubble_deep_field")
FULL_WELL_E = 6000.0
READ_NOISE_E = 3.0


class LayeredSceneError(ValueError):
    """A layered scene that cannot be rendered (layers out of order, a plane behind the camera)."""


@dataclass(frozen=True)
class Plane:
    """Points X of the reference optical frame with normal . X = offset_m (offset_m > 0: the plane
    does not pass through the reference camera)."""

    normal: np.ndarray
    offset_m: float

    def depth(self, cam: CameraModel, world_from_cam: np.ndarray) -> np.ndarray:
        """HxW depth along `cam`'s optical axis of the plane seen through each pixel of `cam`
        (inf where the ray misses it), `world_from_cam` the camera's pose in the reference frame."""
        R, t = world_from_cam[:3, :3], world_from_cam[:3, 3]
        n_c = R.T @ self.normal  # the plane in the camera's frame: n_c . X_c = offset - n . t
        d_c = self.offset_m - float(self.normal @ t)
        u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
        rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
        with np.errstate(divide="ignore"):
            z = d_c / (rays @ n_c)
        return np.where(z > 0, z, np.inf)

    def homography(self, ref: CameraModel, cam: CameraModel, world_from_cam: np.ndarray) -> np.ndarray:
        """3x3 map from reference pixels to `cam`'s pixels for points on the plane."""
        cam_from_world = np.linalg.inv(world_from_cam)
        R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
        return np.asarray(cam.K @ (R + np.outer(t, self.normal) / self.offset_m) @ np.linalg.inv(ref.K))


@dataclass
class Layer:
    """One planar layer: premultiplied linear colour and alpha on the reference image grid widened
    by the scene's margin on every side (so cameras beside the reference see beyond its frame)."""

    plane: Plane
    colour: np.ndarray  # (H + 2m) x (W + 2m) x 3, linear, not premultiplied
    alpha: np.ndarray  # (H + 2m) x (W + 2m), 0..1
    mirrored: np.ndarray | None = None  # what a reflective layer mirrors, same grid, linear
    mirror_plane: Plane | None = None  # the virtual plane the mirrored image appears on
    reflectivity: float = 0.0


@dataclass
class LayeredScene:
    reference: CameraModel
    margin: int
    layers: list[Layer]  # back to front; their depth intervals do not overlap
    flat: np.ndarray  # HxW bool, the textureless patch in the reference view
    mirror: np.ndarray  # HxW bool, the reflective panel in the reference view


def _shift(margin: int) -> np.ndarray:
    return np.array([[1.0, 0, -margin], [0, 1.0, -margin], [0, 0, 1.0]])


def disc(diameter_px: float) -> np.ndarray:
    """A normalised disc kernel, each cell's coverage estimated on a 5x5 sub-grid; 1x1 below 1 px."""
    r = diameter_px / 2.0
    if r < 0.5:
        return np.ones((1, 1), np.float32)
    n = int(math.ceil(r))
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    c = np.arange(-n, n + 1, dtype=np.float64)
    xs = (c[:, None] + sub[None, :]).reshape(-1)
    inside = (xs[:, None] ** 2 + xs[None, :] ** 2 <= r * r).astype(np.float32)
    k = inside.reshape(2 * n + 1, 5, 2 * n + 1, 5).mean(axis=(1, 3))
    return np.asarray(k / k.sum(), np.float32)


def _blur_by_coc(premul: np.ndarray, alpha: np.ndarray, coc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blur premultiplied colour and alpha by a per-pixel disc: the stack is blurred at CoC levels
    half a pixel apart (a geometric ladder past 8 px) and each pixel interpolates its two levels."""
    finite = coc[np.isfinite(coc)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    levels = [float(v) for v in np.arange(math.floor(lo * 2) / 2, min(hi, 8.0) + 0.5, 0.5)]
    while levels[-1] < hi:
        levels.append(levels[-1] * 1.15)
    stack = np.dstack([premul, alpha[..., None]])
    blurred = [cv2.filter2D(stack, -1, disc(lv), borderType=cv2.BORDER_CONSTANT) for lv in levels]
    lv = np.asarray(levels)
    c = np.clip(np.nan_to_num(coc, posinf=lv[-1]), lv[0], lv[-1])
    idx = np.clip(np.searchsorted(lv, c) - 1, 0, len(lv) - 2) if len(lv) > 1 else np.zeros(c.shape, int)
    out = blurred[0].copy()
    if len(lv) > 1:
        w = ((c - lv[idx]) / (lv[idx + 1] - lv[idx]))[..., None].astype(np.float32)
        for i in range(len(lv) - 1):
            sel = idx == i
            if sel.any():
                out[sel] = (1 - w[sel]) * blurred[i][sel] + w[sel] * blurred[i + 1][sel]
    return out[..., :3], out[..., 3]


def render_view(scene: LayeredScene, cam: CameraModel) -> np.ndarray:
    """Linear HxWx3 radiance seen by `cam` (its pose, focus and aperture), before the sensor."""
    acc = np.zeros((cam.height, cam.width, 3), np.float32)
    size = (cam.width, cam.height)
    for layer in scene.layers:
        H = layer.plane.homography(scene.reference, cam, cam.T_ref_cam) @ _shift(scene.margin)
        premul = cv2.warpPerspective(layer.colour * layer.alpha[..., None], H, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpPerspective(layer.alpha, H, size, flags=cv2.INTER_LINEAR)
        if layer.mirrored is not None and layer.mirror_plane is not None:
            Hm = layer.mirror_plane.homography(scene.reference, cam, cam.T_ref_cam) @ _shift(scene.margin)
            premul += layer.reflectivity * alpha[..., None] * cv2.warpPerspective(layer.mirrored, Hm, size)
        coc = cam.coc_px(layer.plane.depth(cam, cam.T_ref_cam))
        premul, alpha = _blur_by_coc(premul, alpha, coc)
        acc = premul + (1.0 - alpha[..., None]) * acc
    return acc


def expose(lin: np.ndarray, cam: CameraModel, rng: np.random.Generator, exposure: float = 1.0, gain: float = 1.0,
           vignetting: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """Linear radiance -> 8-bit sRGB: exposure, radial (cos^4-like) vignetting, Poisson-Gaussian
    noise at `gain` (ISO / base), clipping, sRGB encoding with an optional tone `gamma`."""
    yy, xx = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float32)
    r2 = ((xx - cam.cx) ** 2 + (yy - cam.cy) ** 2) / float((cam.width / 2) ** 2 + (cam.height / 2) ** 2)
    signal = lin * exposure * (1.0 - vignetting * r2)[..., None]
    electrons = np.clip(signal, 0, None) * (FULL_WELL_E / gain)
    electrons += rng.standard_normal(electrons.shape).astype(np.float32) * np.sqrt(electrons + READ_NOISE_E**2)
    x = np.clip(electrons / (FULL_WELL_E / gain), 0.0, 1.0) ** (1.0 / gamma)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def reference_depth(scene: LayeredScene) -> np.ndarray:
    """HxW metres: the nearest layer whose alpha is >= 0.5 in the reference view."""
    ref = scene.reference
    m = scene.margin
    depth = np.full((ref.height, ref.width), np.inf, np.float32)
    for layer in scene.layers:
        covered = layer.alpha[m : m + ref.height, m : m + ref.width] >= 0.5
        depth[covered] = layer.plane.depth(ref, np.eye(4))[covered]
    return depth


# Scene composition -------------------------------------------------------------------------------


def load_test_photographs() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(np.asarray(getattr(skimage.data, name)()) for name in TEST_PHOTOGRAPHS)


def _photo_layer_colour(photos: Sequence[np.ndarray], shape: tuple[int, int], rng: np.random.Generator,
                        zoom: float) -> np.ndarray:
    """A linear colour image of `shape` cut from a random photograph, magnified `zoom` times past
    the scale at which it would just cover the shape, flipped and colour-balanced at random."""
    photo = photos[int(rng.integers(len(photos)))]
    photo = np.repeat(photo[..., None], 3, axis=2) if photo.ndim == 2 else photo[..., :3]
    h, w = shape
    scale = max(h / photo.shape[0], w / photo.shape[1]) * zoom
    big = cv2.resize(photo, (max(w, round(photo.shape[1] * scale)), max(h, round(photo.shape[0] * scale))),
                     interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    y, x = int(rng.integers(big.shape[0] - h + 1)), int(rng.integers(big.shape[1] - w + 1))
    crop = big[y : y + h, x : x + w].astype(np.float32) / 255.0
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    lin = np.where(crop <= 0.04045, crop / 12.92, ((crop + 0.055) / 1.055) ** 2.4)
    return np.ascontiguousarray(lin * rng.uniform(0.6, 1.1, 3) * rng.uniform(0.4, 1.0), dtype=np.float32)


def _shape_alpha(kind: str, shape: tuple[int, int], margin: int, rng: np.random.Generator) -> np.ndarray:
    """An anti-aliased alpha mask on the widened grid: a convex slab, an ellipse or thin bars,
    placed inside the reference view."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    inner_w, inner_h = w - 2 * margin, h - 2 * margin
    cx, cy = margin + rng.uniform(0.2, 0.8) * inner_w, margin + rng.uniform(0.2, 0.8) * inner_h
    if kind == "slab":
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(0.12, 0.3) * min(inner_w, inner_h)
        pts = np.stack([cx + radius * rng.uniform(0.7, 1.3, n) * np.cos(angles),
                        cy + radius * rng.uniform(0.7, 1.3, n) * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    elif kind == "ellipse":
        axes = (int(rng.uniform(0.08, 0.25) * inner_w), int(rng.uniform(0.08, 0.25) * inner_h))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    elif kind == "bars":
        for _ in range(int(rng.integers(2, 5))):
            a = rng.uniform(0, np.pi)
            length = rng.uniform(0.4, 0.9) * max(inner_w, inner_h)
            x0, y0 = margin + rng.uniform(0, inner_w), margin + rng.uniform(0, inner_h)
            dx, dy = math.cos(a) * length / 2, math.sin(a) * length / 2
            thickness = max(1, int(round(rng.uniform(0.006, 0.015) * inner_w)))
            cv2.line(mask, (int(x0 - dx), int(y0 - dy)), (int(x0 + dx), int(y0 + dy)), 255, thickness, cv2.LINE_AA)
    else:
        raise LayeredSceneError(f"unknown layer shape {kind!r}: slab, ellipse or bars")
    return mask.astype(np.float32) / 255.0


def _plane_at(z: float, tilt_x: float = 0.0, tilt_y: float = 0.0) -> Plane:
    """A plane through (0, 0, z) whose normal is the optical axis tilted by the two angles (rad)."""
    n = np.array([math.sin(tilt_y), math.sin(tilt_x), math.cos(tilt_x) * math.cos(tilt_y)])
    n /= np.linalg.norm(n)
    return Plane(normal=n, offset_m=float(n[2] * z))


def _fov_margin(cal: ArrayCalibration) -> int:
    """Widened-grid margin (px) covering every camera's view of planes down to half the reference's
    focal length in disparity: the largest baseline times fx, plus slack."""
    ref = cal.reference
    reach = max(float(np.linalg.norm(c.T_ref_cam[:3, 3])) for c in cal.cameras)
    return int(min(ref.width, 0.5 * ref.fx * reach / 0.3 + 16))


def layered_scene(cal: ArrayCalibration, depths_m: Sequence[float], photos: Sequence[np.ndarray], seed: int,
                  slant: float = 0.0, shapes: Sequence[str] = ("slab", "ellipse"), bars: bool = False,
                  flat_patch: bool = False, mirror: bool = False) -> LayeredScene:
    """A background plane at depths_m[0] (covering everything) and one shaped layer per further
    depth, nearer first in the list order after it; `slant` (rad) tilts the background and every
    other layer at random up to that angle; `bars` adds a layer of thin bars in front, `flat_patch`
    a textureless patch and `mirror` a reflective panel (each at its own depth between the layers)."""
    if list(depths_m) != sorted(depths_m, reverse=True) or min(depths_m) <= 0:
        raise LayeredSceneError(f"layer depths must be positive and decreasing (background first): {depths_m}")
    rng = np.random.default_rng(seed)
    ref = cal.reference
    margin = _fov_margin(cal)
    shape = (ref.height + 2 * margin, ref.width + 2 * margin)

    def colour(zoom: float | None = None) -> np.ndarray:
        return _photo_layer_colour(photos, shape, rng, zoom if zoom is not None else rng.uniform(1.0, 2.5))

    def tilt() -> tuple[float, float]:
        return float(rng.uniform(-slant, slant)), float(rng.uniform(-slant, slant))

    layers = [Layer(_plane_at(depths_m[0], *tilt()), colour(), np.ones(shape, np.float32))]
    flat = np.zeros((ref.height, ref.width), bool)
    mirror_mask = np.zeros_like(flat)
    for i, z in enumerate(depths_m[1:]):
        tx, ty = tilt() if i % 2 == 0 else (0.0, 0.0)
        layers.append(Layer(_plane_at(z, tx, ty), colour(), _shape_alpha(str(rng.choice(list(shapes))), shape,
                                                                         margin, rng)))
    extras: list[tuple[float, str]] = []
    if flat_patch:
        extras.append((float(rng.uniform(0.6, 0.9)), "flat"))
    if mirror:
        extras.append((float(rng.uniform(0.3, 0.5)), "mirror"))
    for frac, kind in extras:
        # Between the background and the first shaped layer (or in front of the background).
        z = depths_m[0] * frac if len(depths_m) == 1 else depths_m[1] + frac * (depths_m[0] - depths_m[1])
        alpha = _shape_alpha("slab", shape, margin, rng)
        inner = alpha[margin : margin + ref.height, margin : margin + ref.width] >= 0.5
        if kind == "flat":
            c = np.ones(shape + (3,), np.float32) * rng.uniform(0.2, 0.6, 3).astype(np.float32)
            layer = Layer(_plane_at(z), c, alpha)
            flat |= inner
        else:
            layer = Layer(_plane_at(z, *tilt()), colour() * 0.3, alpha, mirrored=colour(), reflectivity=0.7,
                          mirror_plane=_plane_at(z * rng.uniform(1.8, 3.0)))
            mirror_mask |= inner
        layers.insert(1, layer)
    layers.sort(key=lambda lay: -lay.plane.offset_m / lay.plane.normal[2])
    if bars:
        z_front = min(depths_m) * 0.8
        layers.append(Layer(_plane_at(z_front), colour(), _shape_alpha("bars", shape, margin, rng)))
    return LayeredScene(reference=ref, margin=margin, layers=layers, flat=flat, mirror=mirror_mask)


@dataclass(frozen=True)
class Capture:
    """How the rig delivers the images: per-camera exposure and gain spread, noise, vignetting, tone
    curve differences, and an error in the calibration the estimator is given."""

    exposure_spread: float = 0.1  # each camera's exposure x U(1 - s, 1 + s)
    gain: float = 2.0
    vignetting: float = 0.3
    gamma_spread: float = 0.0  # each camera's tone gamma U(1 - s, 1 + s)
    principal_point_error_px: float = 0.0  # N(0, s) on each source camera's cx, cy as given
    rotation_error_deg: float = 0.0  # N(0, s) about each axis of each source camera as given


def render_burst(scene: LayeredScene, cal: ArrayCalibration, capture: Capture, seed: int) -> tuple[Burst, np.ndarray]:
    """One shot of every camera (the reference first) and the reference's true depth. The burst
    carries the calibration as the estimator is told it, perturbed by `capture`'s errors."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, cam in enumerate(cal.cameras):
        s = capture.exposure_spread
        image = expose(render_view(scene, cam), cam, rng, exposure=float(rng.uniform(1 - s, 1 + s)),
                       gain=capture.gain, vignetting=capture.vignetting,
                       gamma=float(rng.uniform(1 - capture.gamma_spread, 1 + capture.gamma_spread)))
        told = cam
        if i and (capture.principal_point_error_px or capture.rotation_error_deg):
            K = cam.K.copy()
            K[:2, 2] += rng.normal(0, capture.principal_point_error_px, 2)
            rx, ry, rz = np.radians(rng.normal(0, capture.rotation_error_deg, 3))
            R, _ = cv2.Rodrigues(np.array([rx, ry, rz]))
            T = cam.T_ref_cam.copy()
            T[:3, :3] = T[:3, :3] @ R
            told = replace(cam, K=K, T_ref_cam=T)
        frames.append(BurstFrame(camera_index=i, shot_index=0, camera=told, image=image))
    burst = Burst(sequence_id=seed, reference_camera=cal.reference_camera, num_shots=1, num_cameras=len(frames),
                  frames=frames)
    return burst, reference_depth(scene)
