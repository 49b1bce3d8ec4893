"""Occlusion handling from one cost volume: a left-right style consistency check for calibrated
plane sweeps, and the background fill of the pixels that fail it.

Why: a reference pixel that no source sees (occluded, or outside every source frame, as the strip
at the reference's border that a camera beside it never sees) still gets a best plane, and often
a confident one, because the planes at which it is hidden are not testable. The source view itself
knows better: its pixel at that plane has a different best match. Hirschmueller's check does this
for rectified pairs from one volume (the source's costs are the reference's costs re-indexed);
here the re-indexing is the sweep's own projection, so it holds for any calibrated array.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Score resolution of the best-plane search (scores are path costs of order 1).
_KEY_SCALE = 2.0**24


def consistent(score: Tensor, grid: Tensor, inside: Tensor, tolerance: int = 1) -> Tensor:
    """Reference pixels whose best plane is also the best plane of the source pixel it projects to,
    in at least one source: [B,1,h,w] bool.

    score [B,D,h,w] (higher is better, comparable across pixels); grid [B*S,D*h,w,2] the sweep's
    grid_sample coordinates into each source (same h x w); inside [B,S,D,h,w].
    """
    B, D, h, w = score.shape
    S = inside.shape[1]
    n = h * w
    g = grid.reshape(B, S, D, n, 2)
    col = g[..., 0].mul(w * 0.5).add_(w * 0.5 - 0.5).round_().clamp_(0, w - 1)
    row = g[..., 1].mul(h * 0.5).add_(h * 0.5 - 0.5).round_().clamp_(0, h - 1)
    # The source pixel each (plane, reference pixel) lands on; outside a source: a spare slot n.
    target = row.mul_(w).add_(col).masked_fill_(~inside.reshape(B, S, D, n), float(n)).long()
    # One scatter finds each source pixel's best plane: the key orders by score, its remainder
    # modulo D is the plane.
    planes = torch.arange(D, device=score.device).view(1, D, 1)
    key = (score.reshape(B, D, n).double() * -_KEY_SCALE).round().long() * D + planes
    none = torch.iinfo(torch.int64).max
    lowest = torch.full((B, S, n + 1), none, dtype=torch.long, device=score.device)
    lowest.scatter_reduce_(2, target.reshape(B, S, D * n), key.reshape(B, 1, D * n).expand(B, S, D * n),
                           reduce="amin")
    best = score.argmax(dim=1).reshape(B, 1, 1, n)
    hit = target.gather(2, best.expand(B, S, 1, n)).reshape(B, S, n)  # where each pixel lands at its best
    landed = lowest.gather(2, hit)
    agree = (landed.remainder(D) - best.reshape(B, 1, n)).abs() <= tolerance
    return (agree & (landed != none) & (hit < n)).any(dim=1).reshape(B, 1, h, w)


def settle(t: Tensor, score: Tensor, grid: Tensor, inside: Tensor) -> tuple[Tensor, Tensor]:
    """The sweep positions t [B,1,h,w] with the pixels the views cannot settle replaced by the
    background of their settled neighbours (`fill_background` along the epipolar direction), and
    the mask of the pixels kept. A pixel is kept when it passes `consistent` and either every plane
    is testable there, or the neighbours' answer is testable there too (it could have chosen it and
    did not); a pixel whose nearer planes no view sees (the border strip) cannot rule out what its
    neighbours found, so it takes their answer."""
    D = inside.shape[2]
    agree = consistent(score, grid, inside)
    testable = inside.any(dim=1)  # B,D,h,w: some source sees the plane there
    full = testable.all(dim=1, keepdim=True)
    candidate = fill_background(t, agree & full, epipolar_rows(grid, inside))
    plane = (candidate * (D - 1)).round().long().clamp(0, D - 1)
    keep = agree & (full | testable.gather(1, plane))
    return torch.where(keep, t, candidate), keep


def epipolar_rows(grid: Tensor, inside: Tensor) -> Tensor:
    """[B] bool: the sources' epipolar lines run mostly along rows (else columns), from how far the
    sweep moves their pixels between the first and the last plane."""
    B, S, D, h, w = inside.shape
    g = grid.reshape(B, S, D, h, w, 2)
    shift = (g[:, :, -1] - g[:, :, 0]).abs().mean(dim=(1, 2, 3))  # B,2 in normalised units
    return shift[:, 0] * w >= shift[:, 1] * h


def fill_background(value: Tensor, ok: Tensor, along_rows: Tensor) -> Tensor:
    """Replace the pixels where `ok` is False by the lower value (the farther, for inverse depth
    or sweep position) of the nearest `ok` pixels on either side, along rows or columns per batch
    item (the Middlebury convention for occlusions). value [B,1,h,w], ok [B,1,h,w] bool,
    along_rows [B] bool. Lines without any ok pixel keep their values."""
    rows = _fill_rows(value, ok)
    cols = _fill_rows(value.transpose(2, 3), ok.transpose(2, 3)).transpose(2, 3)
    return torch.where(along_rows.view(-1, 1, 1, 1), rows, cols)


def _fill_rows(value: Tensor, ok: Tensor) -> Tensor:
    w = value.shape[-1]
    idx = torch.arange(w, device=value.device).expand_as(value)
    none = torch.full_like(idx, -1)
    left = torch.where(ok, idx, none).cummax(dim=-1).values  # nearest ok index at or left of each pixel
    right = w - 1 - torch.where(ok.flip(-1), idx, none).cummax(dim=-1).values.flip(-1)  # w where none
    big = torch.finfo(value.dtype).max
    from_left = torch.where(left >= 0, value.gather(-1, left.clamp(min=0)), torch.full_like(value, big))
    from_right = torch.where(right < w, value.gather(-1, right.clamp(max=w - 1)), torch.full_like(value, big))
    filled = torch.minimum(from_left, from_right)
    return torch.where(ok | (filled == big), value, filled)
