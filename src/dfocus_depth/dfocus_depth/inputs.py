"""Network inputs from working-resolution views: images, projection coefficients, planes, CoC tables.

Shared by inference and training so that both feed the network exactly the same quantities.
"""

from __future__ import annotations

import numpy as np
import torch

from dfocus_capture.calibration import CameraModel
from dfocus_depth.geometry import DepthRange, WorkingViews, baselines, inverse_depth_planes, projection_coefficients


def coc_table(cam: CameraModel, inv: np.ndarray) -> np.ndarray:
    """Thin-lens circle of confusion (pixels of `cam`) at each inverse depth; finite at 1/z = 0.

    c = A |z - s| / z * f / (s - f) = A |1 - s / z| f / (s - f), A = f / N.
    """
    f = cam.focal_length_mm * 1e-3
    s = cam.focus_distance_m
    c_m = (f / cam.f_number) * np.abs(1.0 - s * inv) * f / (s - f)
    return np.asarray(c_m / (cam.pixel_size_um * 1e-6), dtype=np.float64)


def network_inputs(views: WorkingViews, rng: DepthRange, planes: int) -> dict[str, torch.Tensor]:
    """Batch-of-one tensors for DepthNet.forward (float32, CPU)."""
    h, w = views.reference.shape[:2]
    inv = inverse_depth_planes(rng, planes)
    coeffs = [projection_coefficients(views.ref_camera, c) for c in views.src_cameras]
    A = np.stack([a for a, _ in coeffs])
    b = np.stack([bb for _, bb in coeffs])
    cams = [views.ref_camera, *views.src_cameras]
    coc = np.stack([coc_table(c.scaled(w // 2, h // 2), inv) for c in cams])

    def img(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

    return {
        "ref": img(views.reference)[None],
        "src": torch.stack([img(s) for s in views.sources])[None],
        "A": torch.from_numpy(A).float()[None],
        "b": torch.from_numpy(b).float()[None],
        "inv": torch.from_numpy(inv).float()[None],
        "coc": torch.from_numpy(coc).float()[None],
    }


def disparity_scale(views: WorkingViews) -> float:
    """Pixels of disparity per unit inverse depth for the widest baseline at working resolution."""
    return views.ref_camera.fx * max(baselines(views.ref_camera, views.src_cameras))
