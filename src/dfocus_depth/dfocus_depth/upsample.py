"""Joint bilateral upsampling: low-resolution maps to the full image, edges taken from the image.

Each full-resolution pixel blends the 3x3 low-resolution neighbours around it, weighted by
distance and by how close each neighbour's colour is to its own, so depth edges snap to image
edges instead of being smeared by bilinear interpolation.

For images wider than JOINT_MAX_WIDTH the joint step runs at that width and bilinear
interpolation does the rest: at 12 MP (4000x3000) the joint step alone took 3.7 s of a 5 s depth
map on this CPU; edges then sit to about 3 full-resolution pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

SIGMA_SPACE = 0.8  # low-resolution pixels
SIGMA_RANGE = 0.06  # RGB 0..1
JOINT_MAX_WIDTH = 1280


def upsample(maps: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray) -> np.ndarray:
    """maps [C,h,w] -> [C,H,W] at guide_hi's size: joint bilateral up to JOINT_MAX_WIDTH, then bilinear."""
    H, W = guide_hi.shape[:2]
    if W <= JOINT_MAX_WIDTH:
        return joint_bilateral_upsample(maps, guide_lo, guide_hi)
    w, h = JOINT_MAX_WIDTH, max(1, round(H * JOINT_MAX_WIDTH / W))
    mid = joint_bilateral_upsample(maps, guide_lo, cv2.resize(guide_hi, (w, h), interpolation=cv2.INTER_AREA))
    return np.stack([cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR) for m in mid]).astype(np.float32)


def joint_bilateral_upsample(maps: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray) -> np.ndarray:
    """maps [C,h,w] float32, guide_lo [h,w,3], guide_hi [H,W,3] (0..1) -> [C,H,W] float32."""
    C, h, w = maps.shape
    H, W = guide_hi.shape[:2]
    if (H, W) == (h, w):
        return maps.astype(np.float32)
    src = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    glo = torch.from_numpy(np.ascontiguousarray(guide_lo, dtype=np.float32)).permute(2, 0, 1)
    ghi = torch.from_numpy(np.ascontiguousarray(guide_hi, dtype=np.float32)).permute(2, 0, 1).contiguous()
    # low-resolution coordinates of full-resolution pixel centres
    yl = (torch.arange(H, dtype=torch.float32) + 0.5) * (h / H) - 0.5
    xl = (torch.arange(W, dtype=torch.float32) + 0.5) * (w / W) - 0.5
    yc, xc = torch.round(yl).long(), torch.round(xl).long()
    acc = torch.zeros(C, H, W)
    wsum = torch.zeros(H, W)
    for dx in (-1, 0, 1):
        xn = (xc + dx).clamp(0, w - 1)
        wx = torch.exp(-((xn.float() - xl) ** 2) / (2 * SIGMA_SPACE**2))
        # Columns first, at low-resolution height (small), then whole rows (contiguous copies).
        src_cols, glo_cols = src.index_select(2, xn), glo.index_select(2, xn)
        for dy in (-1, 0, 1):
            yn = (yc + dy).clamp(0, h - 1)
            wy = torch.exp(-((yn.float() - yl) ** 2) / (2 * SIGMA_SPACE**2))
            diff = (glo_cols.index_select(1, yn) - ghi).square_().sum(dim=0)
            wgt = diff.mul_(-1.0 / (2 * SIGMA_RANGE**2)).exp_().mul_(wy[:, None] * wx[None, :]).add_(1e-8)
            acc.addcmul_(src_cols.index_select(1, yn), wgt)
            wsum += wgt
    return (acc / wsum).numpy()
