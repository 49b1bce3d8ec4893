"""The multi-view depth network (PyTorch): learned features, a plane sweep in inverse depth over the
calibrated views, per-view visibility weights, a focus-consistency cue, semi-global and learned 2D
cost aggregation, then a fine sweep around the coarse estimate at working resolution and
image-guided refinement.

Shapes: B batch, S source views, D planes, h x w the working resolution (multiple of 8), the cost
volume at h/2 x w/2. Inverse depths are metres^-1; `t` is the position in the sweep (0..1).

Why this shape:
- Cosine similarity of L2-normalised features keeps the matching cost in [-1, 1] whatever the
  image statistics, which helps the step from rendered training data to real photographs.
- Each view votes on its own (one cost per view and plane); a per-pixel visibility weight, learned
  from the shape of that view's cost curve, lets views that are occluded or out of frame abstain.
- The focus cue is physical, not learned: per plane, the thin-lens blur each view should show
  (its circle of confusion at that depth) is correlated across views with the blur it does show
  (local Laplacian energy, warped to the reference). Views focused alike give no cue (zero).
- Semi-global aggregation (learned penalties, no other weights) gives the U-Net a smoothness prior
  that does not depend on what the training scenes look like; without it the U-Net alone turned
  real photographs into blobs (Middlebury EPE 4.5 px).
- The coarse estimate is a soft arg-max near the best plane only, and pixels the views cannot
  settle (occluded in every source, or untestable at some depths, as at the border a camera beside
  the reference never sees) take the background of their matched neighbours (`consistency`):
  on Middlebury the border strip alone (3 % of the pixels, 27 px off) carried 30 % of the error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor, nn

from dfocus_depth.consistency import settle
from dfocus_depth.semi_global import semi_global

NUM_PLANES = 32
FEAT = 8
FINE_FEAT = 8
FINE_STEPS = 3
# The coarse estimate is the soft arg-max within this many planes of the best one: over the whole
# sweep it would land between the peaks of a two-peaked distribution (real photographs).
LOCAL_WINDOW = 1
EPS = 1e-6


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation), nn.LeakyReLU(0.1, inplace=True))


class FeatureNet(nn.Module):
    """Per-view features at half the working resolution (coarse sweep) and at full resolution (fine
    sweep, and the reference's context for refinement)."""

    def __init__(self) -> None:
        super().__init__()
        self.full = nn.Sequential(_conv(3, 8), nn.Conv2d(8, FINE_FEAT, 3, 1, 1))
        self.down = nn.Sequential(_conv(FINE_FEAT, 16, stride=2), _conv(16, 16))
        self.match = nn.Conv2d(16, FEAT, 1)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """L2-normalised matching features at half resolution, and at full resolution."""
        full = self.full(img.contiguous(memory_format=torch.channels_last))
        half = self.down(F.leaky_relu(full, 0.1))
        return unit(self.match(half)), unit(full)


def unit(x: Tensor) -> Tensor:
    """L2-normalise over channels (cheaper than F.normalize's strided norm on CPU)."""
    return x * torch.rsqrt((x * x).sum(dim=1, keepdim=True) + EPS)


def normalise_images(img: Tensor) -> Tensor:
    """Per-image zero mean / unit contrast, so exposure and gain differences between views vanish."""
    std, mean = torch.std_mean(img, dim=(-3, -2, -1), keepdim=True)
    return (img - mean) / (std + 0.02)


def sharpness(img: Tensor) -> Tensor:
    """log local Laplacian energy relative to local brightness, at half resolution: [N,1,h/2,w/2]."""
    gray = img.mean(dim=1, keepdim=True)
    lap_k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=img.dtype, device=img.device)
    lap = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), lap_k.view(1, 1, 3, 3)).abs()
    energy = F.avg_pool2d(lap, 4, 2, 1, count_include_pad=False)
    level = F.avg_pool2d(gray, 4, 2, 1, count_include_pad=False)
    return torch.log(energy + 1e-3) - torch.log(level + 0.05)


def half_resolution(A: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Projection coefficients for pixel centres at half resolution: x_half = x / 2 - 1/4."""
    M = torch.tensor([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]], dtype=A.dtype, device=A.device)
    Minv = torch.linalg.inv(M)
    return M @ A @ Minv, (M @ b.unsqueeze(-1)).squeeze(-1)


def sweep_grid(A: Tensor, b: Tensor, inv: Tensor) -> tuple[Tensor, Tensor]:
    """grid_sample coordinates [B*S, P*h, w, 2] and in-frame mask [B, S, P, h, w].

    A [B,S,3,3], b [B,S,3] at this resolution; inv [B,P,h,w] the inverse depth of each of P
    hypotheses at each reference pixel (planes: constant over the image).
    """
    B, S = A.shape[:2]
    P, h, w = inv.shape[1:]
    # Fold grid_sample's normalisation g = (u + 0.5) * 2 / size - 1 into the projection, so each
    # coordinate is one multiply-add and a division.
    N = torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]],
                     dtype=A.dtype, device=A.device)
    An, bn = N @ A, (N @ b.unsqueeze(-1)).squeeze(-1)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=A.dtype, device=A.device), torch.arange(w, dtype=A.dtype, device=A.device), indexing="ij"
    )
    pix = torch.stack([xs, ys, torch.ones_like(xs)], dim=0).reshape(3, h * w)
    rot = (An @ pix).unsqueeze(3)  # B,S,3,1,hw
    inv_f = inv.reshape(B, 1, P, h * w)
    z = torch.addcmul(rot[:, :, 2], bn[:, :, 2, None, None], inv_f)  # B,S,P,hw
    zs = z.clamp(min=EPS)
    gx, gy = (torch.addcmul(rot[:, :, k], bn[:, :, k, None, None], inv_f).div_(zs) for k in (0, 1))
    inside = (z > EPS) & (gx.abs() < 1) & (gy.abs() < 1)
    grid = torch.stack([gx.clamp_(-2, 2), gy.clamp_(-2, 2)], dim=-1)
    return grid.reshape(B * S, P * h, w, 2), inside.reshape(B, S, P, h, w)


class VisibilityNet(nn.Module):
    """Weight in 0..1 per source view and pixel from the shape of that view's cost curve."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(_conv(4, 8), nn.Conv2d(8, 1, 3, 1, 1))

    def forward(self, cost: Tensor, inside: Tensor) -> Tensor:
        # cost, inside: [N, D, h, w]
        D = cost.shape[1]
        seen = inside.sum(dim=1, keepdim=True, dtype=cost.dtype)
        frac = seen / D
        peak = cost.amax(dim=1, keepdim=True)
        mean = cost.sum(dim=1, keepdim=True) / (seen + 1)
        prob = torch.softmax(cost * 10, dim=1)
        entropy = -(prob * torch.log(prob + EPS)).sum(dim=1, keepdim=True) / math.log(D)
        x = torch.cat([peak, mean, entropy, frac], dim=1).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(self.net(x))


class Aggregator(nn.Module):
    """2D U-Net over planes-as-channels: matching cost, semi-global likelihood, focus cue, plane
    support, context -> logits."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.inp = nn.Sequential(_conv(4 * planes + 8, 32, k=1), _conv(32, 32))
        self.d1 = nn.Sequential(_conv(32, 48, stride=2), _conv(48, 48))
        self.d2 = nn.Sequential(_conv(48, 64, stride=2), _conv(64, 64))
        self.u1 = _conv(64 + 48, 48)
        self.u0 = _conv(48 + 32, 32)
        self.out = nn.Conv2d(32, planes, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x0 = self.inp(x.contiguous(memory_format=torch.channels_last))
        x1 = self.d1(x0)
        x2 = self.d2(x1)
        y1 = self.u1(torch.cat([F.interpolate(x2, size=x1.shape[-2:], mode="bilinear", align_corners=False), x1], 1))
        y0 = self.u0(torch.cat([F.interpolate(y1, size=x0.shape[-2:], mode="bilinear", align_corners=False), x0], 1))
        return self.out(y0)


class Refiner(nn.Module):
    """Image-guided residual on the sweep position and a confidence logit, at working resolution,
    from the upsampled coarse estimate, the reference image and a fine cost around the estimate."""

    def __init__(self) -> None:
        super().__init__()
        cin = 3 + 3 + 8 + FINE_STEPS + 2
        self.net = nn.Sequential(
            _conv(cin, 16), _conv(16, 16, dilation=2), _conv(16, 16, dilation=4), _conv(16, 12),
            nn.Conv2d(12, 2, 3, 1, 1),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x.contiguous(memory_format=torch.channels_last))
        return out[:, :1], out[:, 1:2]


class DepthNet(nn.Module):
    """Reference-view inverse depth and confidence from S >= 1 calibrated source views."""

    def __init__(self, planes: int = NUM_PLANES) -> None:
        super().__init__()
        self.planes = planes
        self.features = FeatureNet()
        self.visibility = VisibilityNet()
        self.aggregate = Aggregator(planes)
        self.refine = Refiner()
        self.fine_temperature = nn.Parameter(torch.tensor(8.0))
        # The U-Net predicts a correction to the matching cost itself (residual logits), so that
        # from the first step the estimate follows the views' agreement and training only has to
        # learn smoothing, occlusion and focus handling.
        self.cost_gain = nn.Parameter(torch.tensor(10.0))
        self.sgm_gain = nn.Parameter(torch.tensor(8.0))
        # Penalties through softplus (always positive): 0.05 and 0.5 cost units at the start.
        self.sgm_p1 = nn.Parameter(torch.tensor(-2.97))
        self.sgm_p2 = nn.Parameter(torch.tensor(-0.43))
        # Channels-last convolutions (weights here, inputs in each block) run 1.3-2.3x faster on
        # this CPU's oneDNN than the default layout.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (missing from the stubs)

    def forward(self, ref: Tensor, src: Tensor, A: Tensor, b: Tensor, inv: Tensor, coc: Tensor) -> dict[str, Tensor]:
        """ref [B,3,h,w], src [B,S,3,h,w] RGB 0..1; A [B,S,3,3], b [B,S,3] projection coefficients at
        h x w; inv [B,D] ascending plane inverse depths; coc [B,S+1,D] circle of confusion (pixels at
        h/2) of the reference then each source at each plane.

        Returns the coarse plane logits [B,D,h/2,w/2], t_coarse/t (sweep position 0..1, [B,1,h,w]),
        inv_depth [B,1,h,w] and confidence.
        """
        B, S, _, h, w = src.shape
        D = inv.shape[1]
        hh, hw = h // 2, w // 2
        imgs = torch.cat([ref.unsqueeze(1), src], dim=1).reshape(B * (S + 1), 3, h, w)
        feat, fine = self.features(normalise_images(imgs))
        feat = feat.reshape(B, S + 1, FEAT, hh, hw)
        fine = fine.reshape(B, S + 1, FINE_FEAT, h, w)
        sharp = sharpness(imgs).reshape(B, S + 1, 1, hh, hw)

        # Coarse sweep at half resolution over the D planes.
        Ah, bh = half_resolution(A, b)
        grid, inside = sweep_grid(Ah, bh, inv[:, :, None, None].expand(B, D, hh, hw))
        # One warp for the sources' features and sharpness (the cue masks out-of-frame samples).
        warped = warp(torch.cat([feat[:, 1:], sharp[:, 1:]], dim=2), grid, D)
        cost = correlate(warped[:, :, :FEAT], feat[:, 0], inside)  # B,S,D,hh,hw cosine similarity
        vis = self.visibility(cost.reshape(B * S, D, hh, hw), inside.reshape(B * S, D, hh, hw))
        vis = vis.reshape(B, S, 1, hh, hw)
        weight = vis * inside
        support = weight.sum(dim=1)
        agg = (cost * weight).sum(dim=1) / (support + 1e-3)

        focus = focus_consistency(sharp[:, 0], warped[:, :, FEAT], inside, coc)

        # Semi-global path costs of the (3x3 box-filtered) dissimilarity, relative to each pixel's best.
        dissimilarity = F.avg_pool2d(1.0 - agg, 3, 1, 1, count_include_pad=False)
        raw_path = semi_global(dissimilarity, F.softplus(self.sgm_p1), F.softplus(self.sgm_p2))
        path = raw_path - raw_path.amin(dim=1, keepdim=True)

        ctx = fine[:, 0]
        unet_in = torch.cat([agg, torch.exp(-path), focus, support / S, F.avg_pool2d(ctx, 2)], 1)
        logits = self.cost_gain * agg - self.sgm_gain * path + self.aggregate(unet_in)
        prob = torch.softmax(logits, dim=1)
        pos = torch.linspace(0, 1, D, dtype=ref.dtype, device=ref.device).view(1, D, 1, 1)
        best = logits.argmax(dim=1, keepdim=True)
        window = (torch.arange(D, device=ref.device).view(1, D, 1, 1) - best).abs() <= LOCAL_WINDOW
        t_half = (torch.softmax(logits.masked_fill(~window, -1e4), dim=1) * pos).sum(dim=1, keepdim=True)
        # Occluded pixels and those no view can test at every depth (the border strip a camera
        # beside the reference never sees) take the farther of their nearest matched neighbours.
        # The path costs, not the logits, are compared across pixels: they are not normalised.
        t_half, ok = settle(t_half, -raw_path, grid, inside)
        spread_half = torch.sqrt(((pos - t_half) ** 2 * prob).sum(dim=1, keepdim=True) + EPS) * (D - 1)
        peak_half = prob.max(dim=1, keepdim=True).values

        def up(x: Tensor) -> Tensor:
            return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

        t_coarse = up(t_half)
        # Fine sweep at working resolution: FINE_STEPS hypotheses around the coarse estimate.
        lo, hi = inv[:, :1, None, None], inv[:, -1:, None, None]
        step = 0.5 / (D - 1)
        offsets = (torch.arange(FINE_STEPS, dtype=ref.dtype, device=ref.device) - FINE_STEPS // 2) * step
        t_hyp = t_coarse.detach() + offsets.view(1, -1, 1, 1)  # B,K,h,w
        grid_f, inside_f = sweep_grid(A, b, lo + t_hyp * (hi - lo))
        fcost = correlate(warp(fine[:, 1:], grid_f, FINE_STEPS), fine[:, 0], inside_f)  # B,S,K,h,w
        fweight = up(vis.reshape(B, S, hh, hw)).unsqueeze(2) * inside_f
        fagg = (fcost * fweight).sum(dim=1) / (fweight.sum(dim=1) + 1e-3)
        fprob = torch.softmax(fagg * self.fine_temperature, dim=1)
        fine_t = (fprob * offsets.view(1, -1, 1, 1)).sum(dim=1, keepdim=True) / (step * FINE_STEPS)

        settled = up(ok.to(ref.dtype))
        x = torch.cat([t_coarse, up(peak_half), up(spread_half) / D, normalise_images(ref), ctx, fagg, fine_t,
                       settled], 1)
        delta, conf_logit = self.refine(x)
        # A filled pixel keeps its fill: no view sees it, so a fine cost around it measures nothing.
        t = (t_coarse + settled * step * FINE_STEPS * torch.tanh(delta)).clamp(0, 1)
        return {
            "logits": logits,
            "t_coarse": t_coarse,
            "t": t,
            "inv_depth": lo + t * (hi - lo),
            "confidence": torch.sigmoid(conf_logit),
            "confidence_logit": conf_logit,
        }


def warp(src: Tensor, grid: Tensor, planes: int) -> Tensor:
    """Each source's maps src [B,S,C,h',w'] sampled bilinearly at the sweep's grid [B*S,P*h,w,2]:
    [B,S,C,P,h,w], zero outside the frame."""
    B, S, C = src.shape[:3]
    # Channels-last input: the channels of one sample point are contiguous (a tenth faster here).
    x = src.reshape(B * S, C, *src.shape[-2:]).contiguous(memory_format=torch.channels_last)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(B, S, C, planes, grid.shape[1] // planes, grid.shape[2])


def correlate(warped: Tensor, ref_feat: Tensor, inside: Tensor) -> Tensor:
    """Cosine similarity of the reference features ref_feat [B,C,h,w] with the warped source
    features [B,S,C,P,h,w] (`warp`) -> [B,S,P,h,w], 0 outside."""
    ref = ref_feat[:, None, :, None]  # B,1,C,1,h,w
    cost = warped[:, :, 0] * ref[:, :, 0]
    for c in range(1, warped.shape[2]):  # channel by channel: far less memory traffic than a broadcast sum
        cost.addcmul_(warped[:, :, c], ref[:, :, c])
    return cost * inside


def focus_consistency(ref_sharp: Tensor, src_sharp: Tensor, inside: Tensor, coc: Tensor) -> Tensor:
    """Per plane, the correlation across views between observed sharpness and the sharpness the
    thin-lens model predicts at that depth (-log(1 + CoC)). [B,D,h,w] in -1..1; 0 when the views'
    blur cannot differ (all focused alike) or fewer than two views see the point.

    ref_sharp [B,1,h,w], src_sharp [B,S,D,h,w], inside [B,S,D,h,w], coc [B,S+1,D]. The reference
    always counts. Moments are taken relative to the reference's sharpness and to the views' mean
    prediction (a correlation ignores such shifts), which keeps the one-pass sums well conditioned.
    """
    m = inside.to(src_sharp.dtype)
    y = -torch.log1p(coc)
    y = y - y.mean(dim=1, keepdim=True)
    y_ref, y_src = y[:, 0, :, None, None], y[:, 1:, :, None, None]  # B,D,1,1 and B,S,D,1,1
    x = (src_sharp - ref_sharp.unsqueeze(1)).mul_(m)  # the reference's own x is 0
    n = m.sum(dim=1) + 1
    sx = x.sum(dim=1)
    sy = (m * y_src).sum(dim=1) + y_ref
    cov = (x * y_src).sum(dim=1) - sx * sy / n
    var_x = (x * x).sum(dim=1) - sx * sx / n
    var_y = (m * (y_src * y_src)).sum(dim=1) + y_ref * y_ref - sy * sy / n
    return cov / torch.sqrt(var_x.clamp(min=0) * var_y.clamp(min=0) + 1e-4)
