"""Self-adaptation of the depth network to a user's rig from unlabelled bursts (`dfocus adapt`).

No ground truth is needed: the array's own views supervise each other. Each source view, warped to
the reference through the network's depth, should look like the reference. The error per pixel is
0.85 x (1 - SSIM) / 2 + 0.15 x L1 on per-image normalised RGB, so exposure and gain differences
between the cameras do not count. Per pixel only the best source counts: a pixel one camera cannot
see (an occlusion) is judged by another, and pixels no source sees are left out. Photometry says
nothing on textureless surfaces, so two terms hold the rest in place: an edge-aware smoothness of the
inverse depth, and an anchor to the starting network's estimate weighted by its own confidence.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

from dfocus_capture.burst import Burst
from dfocus_depth.estimator import MAX_SOURCES, WEIGHTS, load_model, pick_device
from dfocus_depth.geometry import DepthRange, default_range, prepare_views
from dfocus_depth.inputs import network_inputs
from dfocus_depth.model import DepthNet, normalise_images, sweep_grid

SSIM_WEIGHT = 0.85


class AdaptError(ValueError):
    """Nothing to adapt on, or inputs that cannot be read as bursts."""


@dataclass
class AdaptConfig:
    steps: int = 300
    lr: float = 1e-4
    max_width: int = 320
    smoothness: float = 0.02
    anchor: float = 0.05
    threads: int = 2
    seed: int = 0
    device: str = "auto"
    log_every: int = 25


def _ssim_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 over 3x3 windows, averaged over channels: [N,1,h,w]."""
    mu_x, mu_y = F.avg_pool2d(x, 3, 1, 1), F.avg_pool2d(y, 3, 1, 1)
    var_x = F.avg_pool2d(x * x, 3, 1, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, 3, 1, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, 3, 1, 1) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1).mean(dim=1, keepdim=True)


def photometric_error(ref: torch.Tensor, src: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                      inv_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel error of the best source warped through `inv_depth` [B,1,h,w], and the mask of
    pixels at least one source sees: ([B,1,h,w], [B,1,h,w] bool)."""
    B, S, _, h, w = src.shape
    grid, inside = sweep_grid(A, b, inv_depth)  # [B*S,h,w,2], [B,S,1,h,w]
    # Normalised before warping: per-image statistics, not of a warp half out of frame.
    nsrc = normalise_images(src.reshape(B * S, 3, h, w))
    warped = F.grid_sample(nsrc, grid, mode="bilinear", padding_mode="border", align_corners=False)
    nref = normalise_images(ref).repeat_interleave(S, dim=0)
    # Normalised images span a few units: scale to about 0..1 for the SSIM constants.
    err = SSIM_WEIGHT * _ssim_error(warped / 4 + 0.5, nref / 4 + 0.5) + (1 - SSIM_WEIGHT) * (
        (warped - nref).abs().mean(dim=1, keepdim=True) / 4)
    err = err.reshape(B, S, 1, h, w).masked_fill(~inside, 10.0)
    best = err.min(dim=1).values
    seen = inside.any(dim=1)
    return best, seen


def smoothness(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of the sweep position (mean-normalised), [B,1,h,w] input."""
    t = t / (t.mean(dim=(2, 3), keepdim=True) + 1e-3)
    gx, gy = (t[..., :, 1:] - t[..., :, :-1]).abs(), (t[..., 1:, :] - t[..., :-1, :]).abs()
    ix = (ref[..., :, 1:] - ref[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    iy = (ref[..., 1:, :] - ref[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    return (gx * torch.exp(-10 * ix)).mean() + (gy * torch.exp(-10 * iy)).mean()


def burst_inputs(bursts: Sequence[Burst], max_width: int, depth_range: DepthRange | None,
                 planes: int) -> list[dict[str, torch.Tensor]]:
    """Network inputs of each burst at the working width (every camera and shot as a view)."""
    out = []
    for burst in bursts:
        views = prepare_views(burst, max_width, MAX_SOURCES)
        rng = depth_range or default_range(views.ref_camera, views.src_cameras)
        out.append(network_inputs(views, rng, planes))
    return out


def _forward(net: DepthNet, ex: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(net(ex["ref"], ex["src"], ex["A"], ex["b"], ex["inv"], ex["coc"]))


@torch.no_grad()
def mean_photometric_error(net: DepthNet, examples: Sequence[dict[str, torch.Tensor]]) -> float:
    """The adaptation's own figure: mean best-source error over the pixels some source sees."""
    net.eval()
    errs = []
    for ex in examples:
        out = _forward(net, ex)
        err, seen = photometric_error(ex["ref"], ex["src"], ex["A"], ex["b"], out["inv_depth"])
        errs.append(float(err[seen].mean()))
    return float(np.mean(errs))


def adapt(bursts: Sequence[Burst], out: Path, log: Callable[[str], None], cfg: AdaptConfig | None = None,
          weights: Path = WEIGHTS, depth_range: DepthRange | None = None,
          stop: Callable[[], bool] = lambda: False,
          on_step: Callable[[int, float], None] = lambda step, loss: None) -> dict[str, object]:
    """Fine-tune the network at `weights` on `bursts`; write the weights to `out` and a JSON record
    beside them (config, inputs, photometric error before and after, loss curve). `stop` is polled
    each step (cancel): the weights reached so far are kept; `on_step(step, loss)` reports progress.
    Returns the record."""
    cfg = cfg or AdaptConfig()
    if not bursts:
        raise AdaptError("no bursts to adapt on")
    if cfg.steps < 1 or not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise AdaptError(f"steps must be >= 1 and lr > 0, got {cfg.steps} and {cfg.lr}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    net = load_model(weights, device)
    examples = [{k: v.to(device) for k, v in ex.items()}
                for ex in burst_inputs(bursts, cfg.max_width, depth_range, net.planes)]
    with torch.no_grad():
        net.eval()
        anchors = [(o["t"], o["confidence"]) for o in (_forward(net, ex) for ex in examples)]
    before = mean_photometric_error(net, examples)
    log(f"adapting on {len(examples)} bursts; photometric error before: {before:.4f}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    curve: list[dict[str, float]] = []
    running: list[float] = []
    start = time.perf_counter()
    steps_done = 0
    net.train()
    for step in range(1, cfg.steps + 1):
        if stop():
            log(f"stopped at step {step - 1}")
            break
        i = int(rng.integers(len(examples)))
        ex = examples[i]
        res = _forward(net, ex)
        err, seen = photometric_error(ex["ref"], ex["src"], ex["A"], ex["b"], res["inv_depth"])
        t0, conf0 = anchors[i]
        loss = (err * seen).sum() / seen.sum().clamp(min=1) + cfg.smoothness * smoothness(res["t"], ex["ref"]) \
            + cfg.anchor * (conf0 * (res["t"] - t0).abs()).mean() * (net.planes - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        steps_done = step
        running.append(float(loss.detach()))
        on_step(step, running[-1])
        if step % cfg.log_every == 0 or step == cfg.steps:
            curve.append({"step": step, "loss": float(np.mean(running)), "seconds": time.perf_counter() - start})
            running = []
            log(f"step={step} loss={curve[-1]['loss']:.4f}")
    after = mean_photometric_error(net, examples)
    log(f"photometric error after {steps_done} steps: {after:.4f} (before {before:.4f})")
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "planes": net.planes, "version": 2}, out)
    record: dict[str, object] = {
        "adapted_from": str(weights),
        "config": asdict(cfg),
        "bursts": len(examples),
        "steps_done": steps_done,
        "photometric_error_before": before,
        "photometric_error_after": after,
        "seconds": round(time.perf_counter() - start, 1),
        "curve": curve,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_bursts(path: Path, calibration: Path | None = None) -> list[Burst]:
    """The bursts in `path`: every dfocus_interfaces/FocusSequence of a rosbag2 folder (one with
    metadata.yaml), or a burst folder (`dfocus_capture.drivers.folder` layout; `calibration`
    overrides the folder's own). Raises AdaptError with the reason."""
    from dfocus_capture.bag import BagError, BagReader
    from dfocus_capture.burst import BurstError
    from dfocus_capture.calibration import CalibrationError
    from dfocus_capture.drivers.base import DriverError
    from dfocus_capture.drivers.folder import FolderCameraArray
    from dfocus_capture.ros_convert import ImageConversionError, burst_from_msg

    if not path.is_dir():
        raise AdaptError(f"{path} is neither a rosbag2 folder nor a burst folder")
    if (path / "metadata.yaml").is_file():
        try:
            from rclpy.serialization import deserialize_message

            from dfocus_capture.bag import message_class

            reader = BagReader(path)
            try:
                topics = [t.name for t in reader.topics().values() if t.msgtype.endswith("FocusSequence")]
                if not topics:
                    raise AdaptError(f"{path}: no dfocus_interfaces/msg/FocusSequence topic in the bag")
                cls = message_class("dfocus_interfaces/msg/FocusSequence")
                return [burst_from_msg(deserialize_message(m.data, cls)) for m in reader.messages(topics)]
            finally:
                reader.close()
        except (BagError, BurstError, CalibrationError, ImageConversionError) as exc:
            raise AdaptError(f"{path}: {exc}") from exc
    try:
        folder = FolderCameraArray(path, calibration)
        folder.open()
        try:
            return [folder.burst()]
        finally:
            folder.close()
    except DriverError as exc:
        raise AdaptError(str(exc)) from exc
