"""Fast renders of the shots of a burst: each camera's thin-lens image warped from a keyframe.

Between the shots of a burst a camera keeps its focus and moves by the actuator shift and the hand
tremor, sub-millimetre translations and milliradian rotations. `ShotRenderer` renders the exact
thin-lens image of a camera once per focus setting (the keyframe: with a margin around the field
of view, and the inverse depth of what each defocused pixel shows, weighted like its colour), and
every later pose near it as a depth-dependent backward warp of that keyframe, exposed through the
sensor model with fresh noise. The point a target pixel x' sees at inverse depth w' is, in the
keyframe,

    x ~ K_key (R K^-1 x' + t w')        [R | t]: the target camera in the keyframe camera's frame,

with w' read from the keyframe at the same pixel (shifts are a few pixels; a fixed-point refinement
measured no better, since the errors at depth edges are dominated by uncovered background). So
every shot keeps its own pose, its depth-dependent parallax and its own noise. What the warp cannot know is measured
against the exact render in test_shot_warp: background uncovered at a depth edge is taken from
the keyframe's nearest pixels, and mirror reflections move with the mirror, not with the scene
they reflect. A pose whose warp would leave the margin, or a new focus, makes a new keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from dfocus_capture.calibration import CameraModel
from dfocus_capture.sim.render import ThinLensRenderer
from dfocus_capture.sim.sensor import SensorNoise, develop

MARGIN_PX = 24  # keyframe border beyond the field of view: bounds the warp (about 3 mm at 0.3 m)


@dataclass
class _Keyframe:
    key: tuple[object, ...]
    cam: CameraModel  # the padded camera at the keyframe pose
    linear: np.ndarray  # (H + 2m) x (W + 2m) x 3 float32 defocused linear radiance
    inv_depth: np.ndarray  # (H + 2m) x (W + 2m) float32, colour-weighted
    max_inv_depth: float


def _optics_key(cam: CameraModel) -> tuple[object, ...]:
    """Everything but the pose: a keyframe serves the camera while these stay the same."""
    return (cam.width, cam.height, *np.round(cam.K.ravel(), 9).tolist(), cam.focus_distance_m, cam.f_number,
            cam.focal_length_mm, cam.pixel_size_um)


def _pad(cam: CameraModel, margin: int) -> CameraModel:
    K = cam.K.copy()
    K[0, 2] += margin
    K[1, 2] += margin
    return replace(cam, width=cam.width + 2 * margin, height=cam.height + 2 * margin, K=K)


class ShotRenderer:
    """Renders a camera's image at any pose near its keyframe. Keeps one keyframe per camera
    name (about 20 MB at 1280x960). `render` may run on several threads at once (two threads
    missing the same keyframe both make it; the last one is kept)."""

    def __init__(self, renderer: ThinLensRenderer, margin_px: int = MARGIN_PX) -> None:
        self.renderer = renderer
        self.margin_px = margin_px
        self._keyframes: dict[str, _Keyframe] = {}
        self.keyframes_made = 0

    def _keyframe(self, cam: CameraModel) -> _Keyframe:
        padded = _pad(cam, self.margin_px)
        d = self.renderer.defocus(padded, with_inv_depth=True)
        inv_depth = np.ascontiguousarray(d.planes[3])
        self.keyframes_made += 1
        return _Keyframe(_optics_key(cam), padded, cv2.merge(list(d.planes[:3])), inv_depth,
                         float(d.pinhole.inv_depth.max()))

    def _maps(self, kf: _Keyframe, cam: CameraModel) -> tuple[np.ndarray, np.ndarray] | None:
        """Keyframe coordinates of every target pixel, or None when they leave the keyframe."""
        T = np.linalg.inv(kf.cam.T_ref_cam) @ cam.T_ref_cam
        A = kf.cam.K @ T[:3, :3] @ np.linalg.inv(cam.K)
        b = kf.cam.K @ T[:3, 3]
        w, h = cam.width, cam.height
        # The extreme displacements are at the image corners, for the nearest and farthest depths.
        corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64).T
        for w_corner in (0.0, kf.max_inv_depth):
            p = A @ corners + b[:, None] * w_corner
            if np.any(p[2] <= 0):
                return None
            x, y = p[0] / p[2], p[1] / p[2]
            if x.min() < 1 or y.min() < 1 or x.max() > kf.cam.width - 2 or y.max() > kf.cam.height - 2:
                return None
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)
        rows = 2 if abs(A[2, 0]) * w + abs(A[2, 1]) * h + abs(A[2, 2] - 1) + abs(b[2]) * kf.max_inv_depth < 1e-9 else 3
        planes = [(np.float32(A[i, 0]) * xs)[None, :] + (np.float32(A[i, 1]) * ys + np.float32(A[i, 2]))[:, None]
                  for i in range(rows)]
        m = self.margin_px
        inv_z = kf.inv_depth[m:m + h, m:m + w]
        if rows == 2:  # a shift in the image plane (the actuators alone): no perspective division
            return cv2.scaleAdd(inv_z, float(b[0]), planes[0]), cv2.scaleAdd(inv_z, float(b[1]), planes[1])
        den = cv2.scaleAdd(inv_z, float(b[2]), planes[2])
        return (cv2.divide(cv2.scaleAdd(inv_z, float(b[0]), planes[0]), den),
                cv2.divide(cv2.scaleAdd(inv_z, float(b[1]), planes[1]), den))

    def linear(self, cam: CameraModel) -> np.ndarray:
        """Noise-free defocused linear radiance (H x W x 3 float32) of the camera at its pose."""
        kf = self._keyframes.get(cam.name)
        maps = self._maps(kf, cam) if kf is not None and kf.key == _optics_key(cam) else None
        if kf is None or maps is None:
            kf = self._keyframe(cam)
            self._keyframes[cam.name] = kf
            maps = self._maps(kf, cam)
            assert maps is not None, "a camera's own keyframe covers it"
        return np.asarray(cv2.remap(kf.linear, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))

    def render(self, cam: CameraModel, noise: SensorNoise | None, rng: np.random.Generator) -> np.ndarray:
        """The camera's 8-bit sRGB image (H x W x 3) at its pose, with fresh sensor noise."""
        return develop(self.linear(cam), cam, noise, rng)
