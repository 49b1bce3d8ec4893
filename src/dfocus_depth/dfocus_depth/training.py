"""Training of the depth network on simulator data, sized for a 2-core CPU (cuda when present).

Scenes are rendered once (every camera of a random 8-camera array, one or two shots) and reused:
each batch draws a camera count, a view subset, a depth range and per-view gain/gamma changes, so
a few hundred renders give many distinct array configurations.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)

from dfocus_depth.dataset import (
    MAX_THIN_OBJECTS,
    PHOTO_SHARE,
    PHOTOGRAPHS,
    TRAINING_KINDS,
    SimSample,
    random_subset,
    render_sample,
    training_photographs,
)
from dfocus_depth.estimator import WEIGHTS, pick_device
from dfocus_depth.geometry import (
    DEFAULT_MAX_DISPARITY_FRACTION,
    DepthRange,
    WorkingViews,
    default_range,
    prepare_views,
)
from dfocus_depth.inputs import disparity_scale, network_inputs
from dfocus_depth.model import NUM_PLANES, DepthNet

TRAIN_SEED_BASE = 0
VALIDATION_SEED_BASE = 900_000  # disjoint from training seeds; the test set uses another base
CONFIDENT_PX = 1.0  # a pixel is 'right' (confidence target 1) within this disparity error
# Camera counts per batch, 2..8; small arrays more often (cheaper steps, and the harder case).
CAMERA_COUNTS = np.arange(2, 9)
CAMERA_COUNT_WEIGHTS = np.array([3, 3, 3, 2, 1, 1, 1]) / 14


@dataclass
class TrainConfig:
    seed: int = 0
    scenes: int = 500
    steps: int = 4000
    batch: int = 3
    width: int = 160
    height: int = 120
    lr: float = 2e-3
    threads: int = 2
    device: str = "auto"
    validation_scenes: int = 6
    out: str = str(WEIGHTS)
    log_every: int = 50
    photo_textures: bool = True


def training_range(views: WorkingViews, gt: np.ndarray, rng: np.random.Generator) -> DepthRange:
    """Half the time the range inference uses by default, else one fitted loosely around the scene."""
    dr = default_range(views.ref_camera, views.src_cameras)
    # Never sweep beyond a 0.6-image disparity: closer pixels are clamped to the nearest plane.
    closest = dr.near_m * DEFAULT_MAX_DISPARITY_FRACTION / 0.6
    zmin, zmax = max(float(gt.min()), closest), float(gt.max())
    if rng.random() < 0.5:
        return DepthRange(min(dr.near_m, zmin * 0.95), math.inf)
    far = math.inf if rng.random() < 0.4 else max(zmax, zmin * 1.5) * rng.uniform(1.05, 2.0)
    return DepthRange(zmin * rng.uniform(0.6, 0.95), far)


def photometric_jitter(views: WorkingViews, rng: np.random.Generator) -> None:
    """Per-view gain and gamma: real cameras of an array never match exactly."""
    def jitter(img: np.ndarray) -> np.ndarray:
        return np.clip(img ** rng.uniform(0.8, 1.25) * rng.uniform(0.75, 1.25), 0, 1).astype(np.float32)

    views.reference = jitter(views.reference)
    views.sources = [jitter(s) for s in views.sources]


def make_example(sample: SimSample, num_cameras: int, rng: np.random.Generator, planes: int,
                 max_width: int) -> dict[str, torch.Tensor]:
    burst = random_subset(sample, num_cameras, rng)
    views = prepare_views(burst, max_width, max_sources=num_cameras - 1)
    photometric_jitter(views, rng)
    h, w = views.reference.shape[:2]
    dr = training_range(views, sample.gt_depth, rng)
    ex = network_inputs(views, dr, planes)
    gt = sample.gt_depth
    if gt.shape != (h, w):
        gt = F.interpolate(torch.from_numpy(gt)[None, None], size=(h, w), mode="nearest")[0, 0].numpy()
    t_gt = np.clip((1.0 / gt - dr.inv_min) / (dr.inv_max - dr.inv_min), 0.0, 1.0)
    ex["t_gt"] = torch.from_numpy(t_gt.astype(np.float32))[None, None]
    ex["px_per_t"] = torch.tensor([[disparity_scale(views) * (dr.inv_max - dr.inv_min)]], dtype=torch.float32)
    return ex


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([e[k] for e in examples]) for k in examples[0]}


def depth_loss(out: dict[str, torch.Tensor], t_gt: torch.Tensor, px_per_t: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy of the coarse plane distribution against the true plane (two-hot), L1 in plane
    units on the coarse and refined estimates (every sample weighs the same whatever its disparity
    range), and a confidence that predicts whether the refined estimate is within CONFIDENT_PX."""
    logits = out["logits"]
    D = logits.shape[1]
    pos = F.interpolate(t_gt, size=logits.shape[-2:], mode="bilinear", align_corners=False) * (D - 1)
    lo = pos.floor().clamp(0, D - 2)
    w_hi = (pos - lo).clamp(0, 1)
    logp = torch.log_softmax(logits, dim=1)
    ce = -(torch.gather(logp, 1, lo.long()) * (1 - w_hi) + torch.gather(logp, 1, lo.long() + 1) * w_hi).mean()
    err_c = (out["t_coarse"] - t_gt).abs() * (D - 1)
    err_r = (out["t"] - t_gt).abs() * (D - 1)
    err_px = (out["t"] - t_gt).abs() * px_per_t.view(-1, 1, 1, 1)
    right = (err_px.detach() < CONFIDENT_PX).float()
    conf = F.binary_cross_entropy_with_logits(out["confidence_logit"], right)
    return {"loss": 0.5 * ce + err_c.mean() + 2.0 * err_r.mean() + 0.3 * conf, "epe": err_px.mean(),
            "conf_bce": conf}


def render_set(base: int, count: int, cfg: TrainConfig, photos: Sequence[np.ndarray], log: Callable[[str], None],
               what: str) -> list[SimSample]:
    samples: list[SimSample] = []
    start = time.perf_counter()
    seed = base + cfg.seed * 10_000
    while len(samples) < count:
        try:
            samples.append(render_sample(seed, cfg.width, cfg.height, photos))
        except ValueError as exc:  # a scene the simulator refuses to build: skip its seed
            log(f"{what}: seed {seed} skipped ({exc})")
        seed += 1
        if len(samples) % max(1, count // 10) == 0:
            log(f"{what}: rendered {len(samples)}/{count} scenes ({time.perf_counter() - start:.0f} s)")
    return samples


def _seed_span(samples: list[SimSample]) -> dict[str, object]:
    seeds = [s.seed for s in samples]
    return {"first": seeds[0], "last": seeds[-1],
            "skipped": sorted(set(range(seeds[0], seeds[-1] + 1)) - set(seeds))}


@torch.no_grad()
def validate(net: DepthNet, samples: list[SimSample], cfg: TrainConfig, device: torch.device) -> float:
    """Mean refined disparity error (widest baseline, px) on held-out scenes with 5 cameras."""
    net.eval()
    rng = np.random.default_rng(12345)
    errs = []
    for s in samples:
        ex = {k: v.to(device) for k, v in make_example(s, 5, rng, net.planes, cfg.width).items()}
        out = net(ex["ref"], ex["src"], ex["A"], ex["b"], ex["inv"], ex["coc"])
        errs.append(float(depth_loss(out, ex["t_gt"], ex["px_per_t"])["epe"]))
    net.train()
    return float(np.mean(errs))


def train(cfg: TrainConfig, log: Callable[[str], None], command: str = "") -> dict[str, object]:
    """Render, train, save weights + a JSON record next to them; returns the record."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    t0 = time.perf_counter()
    photos = training_photographs() if cfg.photo_textures else ()
    train_set = render_set(TRAIN_SEED_BASE, cfg.scenes, cfg, photos, log, "train")
    val_set = render_set(VALIDATION_SEED_BASE, cfg.validation_scenes, cfg, photos, log, "validation")
    render_s = time.perf_counter() - t0

    net = DepthNet(NUM_PLANES).to(device)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.08)
    curve: list[dict[str, float]] = []
    running: list[float] = []
    t1 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        cams = int(rng.choice(CAMERA_COUNTS, p=CAMERA_COUNT_WEIGHTS))
        batch = collate([
            make_example(train_set[int(rng.integers(len(train_set)))], cams, rng, net.planes, cfg.width)
            for _ in range(cfg.batch)
        ])
        batch = {k: v.to(device) for k, v in batch.items()}
        out = net(batch["ref"], batch["src"], batch["A"], batch["b"], batch["inv"], batch["coc"])
        losses = depth_loss(out, batch["t_gt"], batch["px_per_t"])
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        running.append(float(losses["epe"].detach()))
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, "train_epe_px": float(np.mean(running)), "seconds": time.perf_counter() - t1}
            if step % (cfg.log_every * 4) == 0 or step == cfg.steps:
                row["val_epe_px"] = validate(net, val_set, cfg, device)
            curve.append(row)
            running = []
            log(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    out_path = Path(cfg.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "planes": net.planes, "version": 2}, out_path)
    record: dict[str, object] = {
        "command": command,
        # The record sits beside the weights: their file name, not this machine's path to them.
        "config": {**asdict(cfg), "out": Path(cfg.out).name},
        "data": {
            "generator": ("dfocus_depth.dataset.render_sample: dfocus_capture.sim random_scene (kinds "
                          f"{', '.join(TRAINING_KINDS)}; photograph share {PHOTO_SHARE}; up to {MAX_THIN_OBJECTS} "
                          "thin objects) + ThinLensRenderer; baselines 4-80 mm; sensor gain 0.3-8; "
                          "per-camera exposure 0.8-1.25"),
            "train_seeds": _seed_span(train_set),
            "validation_seeds": _seed_span(val_set),
            "photographs": list(PHOTOGRAPHS) if cfg.photo_textures else [],
            "resolution": [cfg.width, cfg.height],
            "cameras_per_scene": 8,
        },
        "render_seconds": round(render_s, 1),
        "train_seconds": round(time.perf_counter() - t1, 1),
        "device": str(device),
        "torch": torch.__version__,
        "machine": platform.machine() + " " + platform.processor(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "curve": curve,
        "final_val_epe_px": curve[-1].get("val_epe_px"),
    }
    out_path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"saved {out_path} ({out_path.stat().st_size / 1e6:.2f} MB) and {out_path.with_suffix('.json').name}")
    return record
