"""Benchmarks for `dfocus bench`: depth-map latency (5 views at 640x480, against StereoSGBM on the
same reference pair) as the depth node and as `dfocus depth` run it, peak memory for 8 views at
1280x960, and time and peak memory for 5 views at 12 MP (memory measured in a fresh process)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
import torch

from dfocus_capture.burst import Burst
from dfocus_capture.calibration import ArrayCalibration, load_calibration
from dfocus_capture.dds import find_config
from dfocus_depth.estimator import DepthEstimator
from dfocus_depth.stereo_baselines import sgbm

LATENCY_TARGET_MS = 300.0
MEMORY_TARGET_MB = 4096.0
# 12 MP input: depth at the working resolution, upsampled edge-aware (issue #16's budget).
TWELVE_MP = (4000, 3000)
TWELVE_MP_TARGET_S = 3.0
TWELVE_MP_MEMORY_TARGET_MB = 3072.0


def _array(width: int, height: int, cameras: int) -> ArrayCalibration:
    from dataclasses import replace

    path = find_config("camera_array.yaml")
    if path is None:
        raise FileNotFoundError("config/camera_array.yaml not found")
    cal = load_calibration(path).scaled(width, height)
    cams = list(cal.cameras)
    while len(cams) < cameras:  # more cameras further out along the diagonals
        k = len(cams)
        T = np.eye(4)
        T[:2, 3] = [0.03 * (1 if k % 2 else -1), 0.03 * (1 if k % 4 < 2 else -1)]
        cams.append(replace(cams[0], name=f"cam{k}", T_ref_cam=T))
    return replace(cal, cameras=tuple(cams[:cameras]))


def simulated_burst(width: int, height: int, cameras: int, seed: int = 7_000_000) -> Burst:
    from dfocus_capture.sim import simulate_burst

    return simulate_burst(_array(width, height, cameras), seed, num_shots=1, noise=True).burst


def upscaled_burst(width: int, height: int, cameras: int) -> Burst:
    """A 640x480 simulated burst resized to width x height: rendering 12 MP views would take minutes,
    and the time of a depth map does not depend on what the pixels show."""
    from dfocus_capture.burst import burst_from_images

    small = simulated_burst(640, 480, cameras)
    images = [cv2.resize(f.image, (width, height), interpolation=cv2.INTER_LINEAR) for f in small.frames]
    return burst_from_images(images, _array(width, height, cameras))


def node_estimator(device: str, fast: bool = False) -> DepthEstimator:
    """The depth node's defaults (DepthEstimator's own), or its fast setting: the parameters
    edge_median false and refine off."""
    if fast:
        return DepthEstimator(device=device, edge_median=False, refine="off")
    return DepthEstimator(device=device)


def _median_seconds(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency_rows(quick: bool, device: str) -> list[dict[str, object]]:
    """The depth node's defaults (DepthEstimator's own: working width 320, edge median, refinement),
    its fast setting, and the network as `dfocus depth` runs it."""
    burst = simulated_burst(640, 480, 5)
    repeats = 3 if quick else 10
    left, right = burst.reference.image, burst.frame(0, 2).image  # cam2: +30 mm along x
    base = _median_seconds(lambda: sgbm(left, right, 64), repeats)
    rows: list[dict[str, object]] = []
    configs = (("node defaults (working width 320, edge median, refine)", LATENCY_TARGET_MS,
                node_estimator(device)),
               ("node fast setting (edge_median false, refine off)", "", node_estimator(device, fast=True)),
               ("as dfocus depth runs it (working width 768, edge median, refine)", "",
                DepthEstimator(device=device, max_width=768)))
    for label, target, est in configs:
        est.estimate(burst)  # warm-up (allocator, kernels)
        ours = _median_seconds(lambda est=est: est.estimate(burst), repeats)
        rows.append({
            "name": f"depth CNN 5 views 640x480, {label} ({est.device}, {torch.get_num_threads()} threads)",
            "value": round(ours * 1e3, 1), "unit": "ms", "target": target,
            "baseline": round(base * 1e3, 1), "baseline_name": "StereoSGBM 640x480 pair",
            "ratio": round(ours / base, 2),
        })
    return rows


def peak_memory_mb(width: int, height: int, cameras: int, device: str, fast: bool = False,
                   upscaled: bool = False) -> float:
    """Peak resident memory (MB) of a fresh process that estimates one depth map with the node's
    defaults (or its `fast` setting), from a simulated or an `upscaled_burst`."""
    make = "upscaled_burst" if upscaled else "simulated_burst"
    code = (
        "import json\n"
        "from dfocus_capture.bench_timing import peak_rss_mb\n"
        f"from dfocus_depth.bench import node_estimator, {make}\n"
        f"b = {make}({width}, {height}, {cameras})\n"
        f"node_estimator({device!r}, {fast!r}).estimate(b)\n"
        "print(json.dumps(peak_rss_mb()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def run_benchmarks(quick: bool) -> list[dict[str, object]]:
    rows = latency_rows(quick, "cpu")
    if torch.cuda.is_available():
        rows += latency_rows(quick, "cuda")
    rows.append({
        "name": "depth CNN peak memory, 8 views 1280x960 (whole process, CPU)",
        "value": round(peak_memory_mb(1280, 960, 8, "cpu"), 0), "unit": "MB", "target": MEMORY_TARGET_MB,
        "ratio": None,
    })
    return rows + twelve_mp_rows()


def twelve_mp_rows() -> list[dict[str, object]]:
    """5 views at 4000x3000: the node's defaults (the refinement runs at 1280 px and upsamples its
    correction) and its fast setting."""
    burst = upscaled_burst(*TWELVE_MP, 5)
    rows: list[dict[str, object]] = []
    for label, fast in (("node defaults", False), ("node fast setting", True)):
        est = node_estimator("cpu", fast)
        seconds = _median_seconds(lambda est=est: est.estimate(burst), 2)
        rows.append({"name": f"depth CNN 5 views 4000x3000 (12 MP), {label} (cpu)", "value": round(seconds, 2),
                     "unit": "s", "target": TWELVE_MP_TARGET_S, "ratio": None})
        rows.append({"name": f"depth CNN peak memory, 5 views 4000x3000, {label} (whole process, CPU)",
                     "value": round(peak_memory_mb(*TWELVE_MP, 5, "cpu", fast, upscaled=True), 0), "unit": "MB",
                     "target": TWELVE_MP_MEMORY_TARGET_MB, "ratio": None})
    return rows
